// JobStore on the daemon's RocksDB, column family "jobs".
//
// Layout (n and s are big-endian uint64, so that byte order is numeric order):
//   "j" n        -> v1::Job               job "job-<n>"
//   "e" n s      -> v1::JobEvent          event s of job n
//   "r" <req-id> -> n                     request id index
//   "m:next_job" -> n                     the next job number
// Listing jobs and replaying events are range scans.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "storage/database.h"
#include "storage/job_store.h"

namespace ftd::storage {

class RocksDbJobStore final : public JobStore {
 public:
  // `database` must outlive the store and have the "jobs" column family.
  static absl::StatusOr<std::unique_ptr<RocksDbJobStore>> Create(Database* database);

  absl::StatusOr<v1::Job> CreateJob(v1::Job job, v1::JobEvent first_event) override;
  absl::StatusOr<v1::Job> GetJob(const std::string& job_id) override;
  absl::StatusOr<std::optional<v1::Job>> FindByRequestId(const std::string& tenant,
                                                         const std::string& request_id) override;
  absl::Status UpdateJob(const v1::Job& job) override;
  absl::Status DeleteJob(const std::string& job_id) override;
  absl::StatusOr<std::vector<std::string>> DeletedJobs() override;
  absl::Status ForgetDeleted(const std::string& job_id) override;
  absl::StatusOr<v1::JobEvent> AppendEvent(v1::JobEvent event, const v1::Job* job) override;
  absl::StatusOr<JobPage> ListJobs(const JobFilter& filter, int page_size,
                                   const std::string& page_token) override;
  absl::StatusOr<EventPage> ListEvents(const std::string& job_id, int64_t after_sequence,
                                       int page_size, const std::string& page_token) override;
  absl::StatusOr<std::optional<v1::JobEvent>> LastEvent(const std::string& job_id) override;

  // "job-<n>" <-> n. ParseJobId returns 0 for anything else.
  static std::string JobId(uint64_t number);
  static uint64_t ParseJobId(const std::string& job_id);

 private:
  RocksDbJobStore(Database* database, uint64_t next_job);

  static absl::Status Migrate(Database* database, rocksdb::ColumnFamilyHandle* cf);
  absl::StatusOr<v1::Job> ReadJob(uint64_t number);
  // The last event sequence of job `number` (0 when it has none).
  absl::StatusOr<int64_t> LastSequence(uint64_t number) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  Database* const database_;
  rocksdb::ColumnFamilyHandle* const cf_;

  // Serialises writers: id allocation and event sequence numbers.
  absl::Mutex mu_;
  uint64_t next_job_ ABSL_GUARDED_BY(mu_);
  std::map<uint64_t, int64_t> last_sequence_ ABSL_GUARDED_BY(mu_);
};

}  // namespace ftd::storage
