// The streams that are open (watches, uploads, downloads) and the
// credentials they were opened with. A stream checks its caller once, when
// it opens; this checks each again every reload interval of the tokens file,
// so that a stream opened with a token that is then revoked (its line
// removed, the whole file deleted) or with a client certificate that has
// since expired ends with UNAUTHENTICATED within that interval, as a new
// call with it would be refused. A token that now names another tenant or
// role ends its streams too.
//
// Thread-safe. Without authentication it holds nothing and runs no thread.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "server/core/caller.h"
#include "server/security/authenticator.h"

namespace ftd::api {

class OpenStreams {
 public:
  // A stream that can be ended from outside.
  class Stream {
   public:
    virtual ~Stream() = default;
    // Ends the stream with `status` (UNAUTHENTICATED) as soon as it can:
    // at once when nothing is in flight, else when its read or write
    // completes. Called at most once, from the registry's thread, never
    // after the stream's Registration is gone. Must not wait on the
    // registry (it holds its lock).
    virtual void Revoke(const absl::Status& status) = 0;
  };

  // Removes its stream from the registry when destroyed (in the stream's
  // OnDone, before it is deleted).
  class Registration {
   public:
    ~Registration();
    Registration(const Registration&) = delete;
    Registration& operator=(const Registration&) = delete;

   private:
    friend class OpenStreams;
    Registration(OpenStreams* streams, uint64_t id) : streams_(streams), id_(id) {}
    OpenStreams* const streams_;
    const uint64_t id_;
  };

  // `auth` (nullptr: callers are not authenticated, and nothing is
  // checked) must outlive this. Checks every `auth->reload_interval()`, or
  // every `interval` when that is set; every second at the most often.
  explicit OpenStreams(security::Authenticator* auth, absl::Duration interval = absl::ZeroDuration());
  ~OpenStreams();
  OpenStreams(const OpenStreams&) = delete;
  OpenStreams& operator=(const OpenStreams&) = delete;

  // Registers `stream`, opened by `caller` with `credential`; nullptr
  // without authentication.
  std::unique_ptr<Registration> Add(Stream* stream, security::CallCredential credential,
                                    core::Caller caller);

  // Checks every stream now (the thread's work; for tests).
  void CheckNow();

  // Streams registered (for tests).
  size_t size() const;

 private:
  struct Entry {
    Stream* stream;
    security::CallCredential credential;
    core::Caller caller;
  };
  void Remove(uint64_t id);

  security::Authenticator* const auth_;
  const absl::Duration interval_;
  mutable absl::Mutex mu_;
  std::map<uint64_t, Entry> streams_ ABSL_GUARDED_BY(mu_);
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
  absl::Notification stop_;
  std::thread thread_;
};

}  // namespace ftd::api
