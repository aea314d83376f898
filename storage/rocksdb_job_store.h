// JobStore on the daemon's RocksDB, column family "jobs".
//
// Layout (n and s are big-endian uint64, so that byte order is numeric order):
//   "j" n        -> v1::Job               job "job-<n>"
//   "e" n s      -> v1::JobEvent          event s of job n
//   "r" <req-id> -> n                     request id index
//   "t" n        -> s, d                  events up to s thinned, d of them deleted
//   "m:next_job" -> n                     the next job number
// Listing jobs and replaying events are range scans.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "storage/database.h"
#include "storage/id_numbers.h"
#include "storage/job_store.h"

namespace ftd::storage {

class RocksDbJobStore final : public JobStore {
 public:
  struct Options {
    // A job's history keeps at most about this many events besides its
    // state changes (0: no bound). Past it, the oldest progress, evaluation,
    // freeze, cache and info events leave in chunks of an eighth of the
    // bound, in the write that appends the newest, and are counted
    // (EventPage::dropped); state changes and warnings and errors stay. The
    // job's record keeps its newest evaluations and every freeze that froze
    // something either way.
    int64_t max_events_per_job = 0;
    // How job ids are numbered (storage/id_numbers.h): opaque ones when
    // tenants share the daemon.
    IdScheme ids = IdScheme::kSequential;
    std::function<absl::Time()> now = [] { return absl::Now(); };
  };

  // `database` must outlive the store and have the "jobs" column family.
  static absl::StatusOr<std::unique_ptr<RocksDbJobStore>> Create(Database* database);
  static absl::StatusOr<std::unique_ptr<RocksDbJobStore>> Create(Database* database,
                                                                 Options options);

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

  // Jobs whose event numbers are held in memory (unfinished ones; ended
  // ones are forgotten as they end).
  size_t tracked_jobs();

  // "job-<n>" <-> n. ParseJobId returns 0 for anything else.
  static std::string JobId(uint64_t number);
  static uint64_t ParseJobId(const std::string& job_id);

 private:
  // What has left a job's history: events up to `thinned_through` were
  // looked at, and `dropped` of them deleted.
  struct Thinned {
    int64_t thinned_through = 1;  // the submission stays
    int64_t dropped = 0;
  };
  RocksDbJobStore(Database* database, uint64_t next_job, Options options);

  static absl::Status Migrate(Database* database, const Database::Session& session);
  absl::StatusOr<v1::Job> ReadJob(const Database::Session& session, uint64_t number);
  // The last event sequence of job `number` (0 when it has none).
  absl::StatusOr<int64_t> LastSequence(const Database::Session& session, uint64_t number)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<Thinned> ThinnedOf(const Database::Session& session, uint64_t number)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Adds to `batch` the deletions that bring job `number`'s history within
  // the bound once event `sequence` is appended; the new Thinned, or
  // nullopt when nothing needs to go.
  absl::StatusOr<std::optional<Thinned>> ThinLocked(const Database::Session& session,
                                                    uint64_t number, int64_t sequence,
                                                    rocksdb::WriteBatch* batch)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  Database* const database_;
  const Options options_;

  // Serialises writers: id allocation and event sequence numbers. Taken
  // before a database session, never after one.
  absl::Mutex mu_;
  uint64_t next_job_ ABSL_GUARDED_BY(mu_);
  IdNumbers numbers_ ABSL_GUARDED_BY(mu_);
  std::map<uint64_t, int64_t> last_sequence_ ABSL_GUARDED_BY(mu_);
  std::map<uint64_t, Thinned> thinned_ ABSL_GUARDED_BY(mu_);
};

}  // namespace ftd::storage
