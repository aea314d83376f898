// An in-memory JobStore for unit tests, with the RocksDB store's semantics
// (ids, sequences, page tokens) and injectable write failures: the job
// manager's tests need no database, and can show what a failed write does.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "storage/job_store.h"

namespace ftd::testing {

class FakeJobStore final : public storage::JobStore {
 public:
  // Every later write (CreateJob, UpdateJob, AppendEvent) fails with
  // `status` and stores nothing, until ok is set again.
  void FailWrites(absl::Status status);
  int64_t failed_writes() const;
  // The job's record becomes unreadable, as one damaged on disk: GetJob is
  // DATA_LOSS, ListJobs names it in `unreadable`.
  void CorruptJob(const std::string& job_id);
  // While held, ListJobs waits (as a long scan of a large store would),
  // after it has begun; ListingsUnderWay counts those waiting.
  void HoldListings(bool hold);
  int ListingsUnderWay() const;

  absl::StatusOr<v1::Job> CreateJob(v1::Job job, v1::JobEvent first_event) override;
  absl::StatusOr<v1::Job> GetJob(const std::string& job_id) override;
  absl::StatusOr<std::optional<v1::Job>> FindByRequestId(const std::string& tenant,
                                                         const std::string& request_id) override;
  absl::Status UpdateJob(const v1::Job& job) override;
  absl::StatusOr<v1::JobEvent> AppendEvent(v1::JobEvent event, const v1::Job* job) override;
  absl::StatusOr<storage::JobPage> ListJobs(const storage::JobFilter& filter, int page_size,
                                            const std::string& page_token) override;
  absl::StatusOr<storage::EventPage> ListEvents(const std::string& job_id, int64_t after_sequence,
                                                int page_size,
                                                const std::string& page_token) override;
  absl::StatusOr<std::optional<v1::JobEvent>> LastEvent(const std::string& job_id) override;
  absl::Status DeleteJob(const std::string& job_id) override;
  absl::StatusOr<std::vector<std::string>> DeletedJobs() override;
  absl::Status ForgetDeleted(const std::string& job_id) override;

 private:
  struct Record {
    v1::Job job;
    std::vector<v1::JobEvent> events;  // events[i] has sequence i + 1
    bool corrupt = false;
  };
  // The job's number in "job-N", or 0.
  static uint64_t Number(const std::string& job_id);
  absl::Status WriteAllowedLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  std::map<uint64_t, Record> jobs_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, uint64_t> request_ids_ ABSL_GUARDED_BY(mu_);
  std::set<std::string> deleted_ ABSL_GUARDED_BY(mu_);
  uint64_t next_ ABSL_GUARDED_BY(mu_) = 1;
  absl::Status fail_ ABSL_GUARDED_BY(mu_);
  int64_t failed_writes_ ABSL_GUARDED_BY(mu_) = 0;
  bool hold_listings_ ABSL_GUARDED_BY(mu_) = false;
  int listings_under_way_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace ftd::testing
