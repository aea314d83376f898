#include "server/api/open_streams.h"

#include <algorithm>
#include <vector>

#include "absl/strings/str_cat.h"
#include "server/core/error_details.h"

namespace ftd::api {

OpenStreams::Registration::~Registration() { streams_->Remove(id_); }

namespace {
// The shortest interval between checks: a tokens file re-read at every call
// (--tokens_reload_interval=0) must not make the thread spin.
constexpr absl::Duration kMinInterval = absl::Seconds(1);
}  // namespace

OpenStreams::OpenStreams(security::Authenticator* auth, absl::Duration interval)
    : auth_(auth),
      interval_(std::max(kMinInterval, interval > absl::ZeroDuration() || auth == nullptr
                                           ? interval
                                           : auth->reload_interval())) {
  if (auth_ == nullptr) return;
  thread_ = std::thread([this] {
    while (!stop_.WaitForNotificationWithTimeout(interval_)) CheckNow();
  });
}

OpenStreams::~OpenStreams() {
  stop_.Notify();
  if (thread_.joinable()) thread_.join();
}

std::unique_ptr<OpenStreams::Registration> OpenStreams::Add(Stream* stream,
                                                            security::CallCredential credential,
                                                            core::Caller caller) {
  if (auth_ == nullptr) return nullptr;
  absl::MutexLock lock(&mu_);
  const uint64_t id = next_id_++;
  streams_.emplace(id, Entry{stream, std::move(credential), std::move(caller)});
  return std::unique_ptr<Registration>(new Registration(this, id));
}

void OpenStreams::Remove(uint64_t id) {
  absl::MutexLock lock(&mu_);
  streams_.erase(id);
}

size_t OpenStreams::size() const {
  absl::MutexLock lock(&mu_);
  return streams_.size();
}

void OpenStreams::CheckNow() {
  if (auth_ == nullptr) return;
  // Under the lock throughout: a stream cannot be deleted while it is
  // being told (its Registration's removal waits), and Revoke only marks
  // the stream and starts its Finish (whose OnDone runs on another thread).
  absl::MutexLock lock(&mu_);
  const absl::Time now = auth_->Now();
  for (auto it = streams_.begin(); it != streams_.end();) {
    const Entry& entry = it->second;
    absl::StatusOr<core::Caller> caller =
        security::AuthenticateCredential(auth_, entry.credential, now);
    absl::Status ended;
    if (!caller.ok()) {
      ended = core::WithReason(
          absl::UnauthenticatedError(absl::StrCat(
              "the credentials this stream was opened with no longer hold: ",
              caller.status().message())),
          core::ReasonOf(caller.status()));
    } else if (caller->tenant != entry.caller.tenant || caller->admin != entry.caller.admin) {
      ended = core::WithReason(
          absl::UnauthenticatedError(
              "the token this stream was opened with now names another tenant or role"),
          "INVALID_TOKEN");
    }
    if (ended.ok()) {
      ++it;
      continue;
    }
    entry.stream->Revoke(ended);
    it = streams_.erase(it);
  }
}

}  // namespace ftd::api
