// JobStore keeps jobs and their event histories durably.
//
// Job ids are "job-1", "job-2", ... in submission order, so that listing in
// id order is listing in submission order. Every method is thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "ftd/v1/ftd.pb.h"

namespace ftd::storage {

struct JobFilter {
  // Jobs in any of these states; every state when empty.
  std::vector<v1::JobState> states;
  // Jobs whose spec carries every one of these labels with these values.
  std::map<std::string, std::string> labels;
  // Newest first (else oldest first).
  bool newest_first = false;
  // Only this tenant's jobs (every tenant's when unset).
  std::optional<std::string> tenant;
};

struct JobPage {
  std::vector<v1::Job> jobs;
  // Ids of records in the page's range that cannot be read (corrupt on
  // disk): left out of `jobs`, so that one bad record does not hide the rest.
  std::vector<std::string> unreadable;
  // Empty when there are no more matching jobs.
  std::string next_page_token;
};

struct EventPage {
  std::vector<v1::JobEvent> events;
  std::string next_page_token;
  // Events the store's bound on a job's history has deleted (sequence
  // numbers are not reused: the page skips them).
  int64_t dropped = 0;
};

// The most bytes of job records one ListJobs page holds past its first job
// (gRPC's messages are 4 MiB at most; a long job's record is up to 64 KiB).
inline constexpr size_t kMaxJobPageBytes = size_t{3} << 20;

class JobStore {
 public:
  virtual ~JobStore() = default;

  // Gives `job` the next id, stores it with `first_event` (which becomes
  // event 1) and, when it has a request_id, indexes it by that id. The
  // write is synced before it returns: an acknowledged job survives a crash.
  // Returns the job with its id set.
  // Errors: UNAVAILABLE / DATA_LOSS / RESOURCE_EXHAUSTED from the storage.
  virtual absl::StatusOr<v1::Job> CreateJob(v1::Job job, v1::JobEvent first_event) = 0;

  // Errors: NOT_FOUND for an unknown or malformed id.
  virtual absl::StatusOr<v1::Job> GetJob(const std::string& job_id) = 0;

  // The job `tenant` created with this request id, or nullopt.
  virtual absl::StatusOr<std::optional<v1::Job>> FindByRequestId(const std::string& tenant,
                                                                 const std::string& request_id) = 0;

  // Replaces a stored job (synced). Errors: NOT_FOUND for an unknown id.
  virtual absl::Status UpdateJob(const v1::Job& job) = 0;

  // Removes the job, its events and its request id (which a later job may
  // then use), in one synced write that also marks it deleted until
  // ForgetDeleted (its folder is removed after: a crash in between leaves
  // the mark for the next start). A record that cannot be read is deleted
  // too. Errors: NOT_FOUND for an unknown job.
  virtual absl::Status DeleteJob(const std::string& job_id) = 0;
  // The jobs marked deleted, whose folders may still be on disk.
  virtual absl::StatusOr<std::vector<std::string>> DeletedJobs() = 0;
  virtual absl::Status ForgetDeleted(const std::string& job_id) = 0;

  // Appends an event to `event.job_id()`'s history, giving it the next
  // sequence number, and returns it. When `job` is not null the job is
  // replaced in the same atomic, synced write (state changes use this, so a
  // job's state and its history never disagree).
  // Errors: NOT_FOUND for an unknown job.
  virtual absl::StatusOr<v1::JobEvent> AppendEvent(v1::JobEvent event, const v1::Job* job) = 0;

  // Jobs in submission order (or its reverse, filter.newest_first),
  // starting after `page_token` (empty: from the first). page_size must be
  // positive; a page also ends before its records pass kMaxJobPageBytes
  // (it holds one job at least), so that it fits a gRPC message. Errors: INVALID_ARGUMENT for a
  // token this store did not produce, or that it produced for the other order.
  virtual absl::StatusOr<JobPage> ListJobs(const JobFilter& filter, int page_size,
                                           const std::string& page_token) = 0;

  // A job's events in order, after sequence `after_sequence` or after
  // `page_token` when that is given. Errors: NOT_FOUND for an unknown job,
  // INVALID_ARGUMENT for a bad token.
  virtual absl::StatusOr<EventPage> ListEvents(const std::string& job_id, int64_t after_sequence,
                                               int page_size, const std::string& page_token) = 0;

  // The job's newest event; nullopt when it has none.
  // Errors: NOT_FOUND for an unknown job.
  virtual absl::StatusOr<std::optional<v1::JobEvent>> LastEvent(const std::string& job_id) = 0;
};

}  // namespace ftd::storage
