#include "tests/testing/fake_job_store.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "storage/rocksdb_job_store.h"

namespace ftd::testing {

void FakeJobStore::FailWrites(absl::Status status) {
  absl::MutexLock lock(&mu_);
  fail_ = std::move(status);
}

int64_t FakeJobStore::failed_writes() const {
  absl::MutexLock lock(&mu_);
  return failed_writes_;
}

void FakeJobStore::CorruptJob(const std::string& job_id) {
  absl::MutexLock lock(&mu_);
  auto it = jobs_.find(Number(job_id));
  if (it != jobs_.end()) it->second.corrupt = true;
}

// Ids parse as the real store's do ("job-3 " is no id).
uint64_t FakeJobStore::Number(const std::string& job_id) {
  return storage::RocksDbJobStore::ParseJobId(job_id);
}

absl::Status FakeJobStore::WriteAllowedLocked() {
  if (fail_.ok()) return absl::OkStatus();
  ++failed_writes_;
  return fail_;
}

absl::StatusOr<v1::Job> FakeJobStore::CreateJob(v1::Job job, v1::JobEvent first_event) {
  absl::MutexLock lock(&mu_);
  if (absl::Status s = WriteAllowedLocked(); !s.ok()) return s;
  const uint64_t number = next_++;
  job.set_id(absl::StrCat("job-", number));
  first_event.set_job_id(job.id());
  first_event.set_sequence(1);
  if (!job.request_id().empty()) request_ids_[job.tenant() + '\0' + job.request_id()] = number;
  jobs_[number] = Record{job, {first_event}};
  return job;
}

absl::StatusOr<v1::Job> FakeJobStore::GetJob(const std::string& job_id) {
  absl::MutexLock lock(&mu_);
  auto it = jobs_.find(Number(job_id));
  if (it == jobs_.end()) return absl::NotFoundError(absl::StrCat("no job \"", job_id, "\""));
  if (it->second.corrupt) {
    return absl::DataLossError(absl::StrCat("job store: the record of ", job_id, " is corrupt"));
  }
  return it->second.job;
}

absl::StatusOr<std::optional<v1::Job>> FakeJobStore::FindByRequestId(
    const std::string& tenant, const std::string& request_id) {
  absl::MutexLock lock(&mu_);
  auto it = request_ids_.find(tenant + '\0' + request_id);
  if (it == request_ids_.end()) return std::optional<v1::Job>();
  return std::optional<v1::Job>(jobs_.at(it->second).job);
}

absl::Status FakeJobStore::UpdateJob(const v1::Job& job) {
  absl::MutexLock lock(&mu_);
  auto it = jobs_.find(Number(job.id()));
  if (it == jobs_.end()) return absl::NotFoundError(absl::StrCat("no job \"", job.id(), "\""));
  if (absl::Status s = WriteAllowedLocked(); !s.ok()) return s;
  it->second.job = job;
  return absl::OkStatus();
}

absl::Status FakeJobStore::DeleteJob(const std::string& job_id) {
  absl::MutexLock lock(&mu_);
  auto it = jobs_.find(Number(job_id));
  if (it == jobs_.end()) return absl::NotFoundError(absl::StrCat("no job \"", job_id, "\""));
  if (absl::Status s = WriteAllowedLocked(); !s.ok()) return s;
  auto request = request_ids_.find(it->second.job.tenant() + '\0' + it->second.job.request_id());
  if (request != request_ids_.end() && request->second == it->first) request_ids_.erase(request);
  deleted_.insert(job_id);
  jobs_.erase(it);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> FakeJobStore::DeletedJobs() {
  absl::MutexLock lock(&mu_);
  return std::vector<std::string>(deleted_.begin(), deleted_.end());
}

absl::Status FakeJobStore::ForgetDeleted(const std::string& job_id) {
  absl::MutexLock lock(&mu_);
  if (absl::Status s = WriteAllowedLocked(); !s.ok()) return s;
  deleted_.erase(job_id);
  return absl::OkStatus();
}

absl::StatusOr<v1::JobEvent> FakeJobStore::AppendEvent(v1::JobEvent event, const v1::Job* job) {
  absl::MutexLock lock(&mu_);
  auto it = jobs_.find(Number(event.job_id()));
  if (it == jobs_.end()) {
    return absl::NotFoundError(absl::StrCat("no job \"", event.job_id(), "\""));
  }
  if (absl::Status s = WriteAllowedLocked(); !s.ok()) return s;
  event.set_sequence(static_cast<int64_t>(it->second.events.size()) + 1);
  it->second.events.push_back(event);
  if (job != nullptr) it->second.job = *job;
  return event;
}

void FakeJobStore::HoldListings(bool hold) {
  absl::MutexLock lock(&mu_);
  hold_listings_ = hold;
}

int FakeJobStore::ListingsUnderWay() const {
  absl::MutexLock lock(&mu_);
  return listings_under_way_;
}

absl::StatusOr<storage::JobPage> FakeJobStore::ListJobs(const storage::JobFilter& filter,
                                                        int page_size,
                                                        const std::string& page_token) {
  if (page_size <= 0) return absl::InvalidArgumentError("page_size must be positive");
  {
    absl::MutexLock lock(&mu_);
    ++listings_under_way_;
    mu_.Await(absl::Condition(
        +[](FakeJobStore* self)
             ABSL_EXCLUSIVE_LOCKS_REQUIRED(self->mu_) { return !self->hold_listings_; },
        this));
    --listings_under_way_;
  }
  // Tokens as the real store's: "aN" continues after job N, "dN" before it.
  uint64_t from = 0;
  const char order = filter.newest_first ? 'd' : 'a';
  if (!page_token.empty() &&
      (page_token[0] != order || !absl::SimpleAtoi(page_token.substr(1), &from))) {
    return absl::InvalidArgumentError(
        absl::StrCat("page_token: \"", page_token, "\" is not valid"));
  }
  absl::MutexLock lock(&mu_);
  std::vector<const Record*> ordered;
  for (const auto& [number, record] : jobs_) {
    if (from == 0 || (filter.newest_first ? number < from : number > from)) {
      ordered.push_back(&record);
    }
  }
  if (filter.newest_first) std::reverse(ordered.begin(), ordered.end());
  storage::JobPage page;
  for (const Record* record : ordered) {
    const v1::Job& job = record->job;
    if (record->corrupt) {
      page.unreadable.push_back(job.id());
      continue;
    }
    if (!filter.states.empty() &&
        std::find(filter.states.begin(), filter.states.end(), job.state()) == filter.states.end()) {
      continue;
    }
    bool labels = true;
    for (const auto& [key, value] : filter.labels) {
      auto label = job.spec().labels().find(key);
      if (label == job.spec().labels().end() || label->second != value) labels = false;
    }
    if (!labels) continue;
    if (filter.tenant.has_value() && job.tenant() != *filter.tenant) continue;
    if (static_cast<int>(page.jobs.size()) == page_size) {
      page.next_page_token = absl::StrCat(std::string(1, order), Number(page.jobs.back().id()));
      break;
    }
    page.jobs.push_back(job);
  }
  return page;
}

absl::StatusOr<storage::EventPage> FakeJobStore::ListEvents(const std::string& job_id,
                                                            int64_t after_sequence, int page_size,
                                                            const std::string& page_token) {
  if (page_size <= 0) return absl::InvalidArgumentError("page_size must be positive");
  int64_t after = std::max<int64_t>(after_sequence, 0);
  if (!page_token.empty() && !absl::SimpleAtoi(page_token, &after)) {
    return absl::InvalidArgumentError(
        absl::StrCat("page_token: \"", page_token, "\" is not valid"));
  }
  absl::MutexLock lock(&mu_);
  auto it = jobs_.find(Number(job_id));
  if (it == jobs_.end()) return absl::NotFoundError(absl::StrCat("no job \"", job_id, "\""));
  const std::vector<v1::JobEvent>& events = it->second.events;
  storage::EventPage page;
  for (size_t i = static_cast<size_t>(after); i < events.size(); ++i) {
    if (static_cast<int>(page.events.size()) == page_size) {
      page.next_page_token = absl::StrCat(page.events.back().sequence());
      break;
    }
    page.events.push_back(events[i]);
  }
  return page;
}

absl::StatusOr<std::optional<v1::JobEvent>> FakeJobStore::LastEvent(const std::string& job_id) {
  absl::MutexLock lock(&mu_);
  auto it = jobs_.find(Number(job_id));
  if (it == jobs_.end()) return absl::NotFoundError(absl::StrCat("no job \"", job_id, "\""));
  if (it->second.events.empty()) return std::optional<v1::JobEvent>();
  return std::optional<v1::JobEvent>(it->second.events.back());
}

}  // namespace ftd::testing
