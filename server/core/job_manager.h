// JobManager: the daemon's core. It validates and stores submitted jobs,
// recovers them after a restart (running ones resume from their checkpoint),
// queues them on the scheduler, runs them through the trainer, records every
// state change and event in the job store, and streams events to watchers.
// Its parts: the job record as events make it (job_projection.h), the
// activation cache's administration (cache_admin.h), and an observer the
// metrics implement (job_observer.h). The gRPC service is a thin layer over
// it.
//
// Thread-safe. Lock order: JobManager, then Scheduler, then EventHub; and
// JobManager, then FileManager.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "ftd/v1/ftd.pb.h"
#include "server/core/cache_admin.h"
#include "server/core/event_hub.h"
#include "server/core/file_manager.h"
#include "server/core/job_observer.h"
#include "server/core/job_projection.h"
#include "server/core/job_runner.h"
#include "server/core/job_spec_validator.h"
#include "server/core/output_reader.h"
#include "server/scheduler/scheduler.h"
#include "server/training/trainer.h"
#include "storage/activation_store.h"
#include "storage/job_store.h"

namespace ftd::core {

class JobManager final : private RunRecorder {
 public:
  struct Options {
    storage::JobStore* store = nullptr;    // not owned; outlives the manager
    training::Trainer* trainer = nullptr;  // not owned; called on job threads
    // Not owned; nullptr when the daemon runs without an activation cache.
    storage::ActivationStore* activation_store = nullptr;
    // Uploaded files, which specs may name by id; a job pins those it names
    // while unfinished. Not owned; nullptr: none.
    FileManager* files = nullptr;
    // Told about jobs as they move (the daemon's metrics). Not owned;
    // nullptr for none.
    JobObserver* observer = nullptr;
    // Where Prometheus scrapes them ("host:port", and the URL), for
    // ServerInfo.
    std::string metrics_address;
    std::string metrics_url;
    // The kernels the daemon runs, for ServerInfo.
    v1::ServerInfo::Kernels kernels;
    std::vector<scheduler::Device> devices;
    // Canonical folders that models and datasets must lie in (for admins,
    // and every tenant without tenant_data_roots), and each tenant's own.
    std::vector<std::string> data_roots;
    std::map<std::string, std::vector<std::string>> tenant_data_roots;
    // The daemon's data folder, canonical: paths inside are refused, but for
    // a job's outputs to its tenant (jobs_dir holds them).
    std::string data_dir;
    // Each job writes its artifacts to <jobs_dir>/<job id>/, its checkpoints
    // to <jobs_dir>/<job id>/checkpoints/.
    std::string jobs_dir;
    // Keep a job's checkpoints once it has ended (by default they are
    // deleted when its final state is recorded).
    bool keep_checkpoints = false;
    // A job the daemon stopped abnormally under this many times in a row,
    // with no new checkpoint in between, fails instead of running again
    // (0: never).
    int max_crashes = 3;
    // A queued job of higher priority that finds no free device makes a
    // running job of lower priority checkpoint and go back to the queue.
    bool preemption = false;
    // Jobs waiting in the queue at once; a submission beyond is refused with
    // RESOURCE_EXHAUSTED naming the limit (0: none).
    int max_queued_jobs = 10000;
    // Per tenant (0: no limit): jobs waiting at once (a submission beyond is
    // refused, RESOURCE_EXHAUSTED with reason TENANT_QUEUE_FULL), and jobs
    // running at once. Among jobs of one priority, the tenant running the
    // fewest goes first either way.
    int max_queued_jobs_per_tenant = 0;
    int max_running_jobs_per_tenant = 0;
    // The memory a CPU job may use (0: unknown): a submitted job whose
    // estimated need is larger than this, or than the memory of the CUDA
    // device it asks for (Device::memory_bytes), is refused
    // (INVALID_ARGUMENT naming batch_size).
    int64_t cpu_memory_bytes = 0;
    std::string version = "dev";
    // Live events one watch buffers before it reads from the store instead,
    // and the open watches allowed (event_hub.h).
    size_t max_buffered_events = 256;
    size_t max_watches = 1024;
    // ... of one tenant's, a user's (0: no limit).
    size_t max_watches_per_tenant = 256;
    // Downloads streaming at once (each hashes its files first and holds
    // them open); more are refused (0: no limit).
    int max_downloads = 16;
    // Progress events are recorded at most this often (the last step always).
    absl::Duration progress_event_interval = absl::Seconds(1);
    std::function<absl::Time()> now = [] { return absl::Now(); };
    // The worker daemons attached (a pool), for ServerInfo; null: none.
    std::function<std::vector<v1::Worker>()> workers;
  };

  // Recovers the store's unfinished jobs (queued jobs stay queued in their
  // order; running ones are queued again, with an event that says so, and
  // resume from their last checkpoint when they run). Jobs start running at
  // Start().
  static absl::StatusOr<std::unique_ptr<JobManager>> Create(Options options);

  // Starts running queued jobs (the daemon calls it once it serves, so that
  // no job runs in a daemon that then fails to start).
  void Start();

  // Shuts down if that has not happened.
  ~JobManager();
  JobManager(const JobManager&) = delete;
  JobManager& operator=(const JobManager&) = delete;

  // Errors: INVALID_ARGUMENT naming the field; ALREADY_EXISTS when the
  // request id belongs to a job with another spec; RESOURCE_EXHAUSTED when
  // max_queued_jobs wait already; UNAVAILABLE while shutting down or when
  // the store fails. `request_id` (at most 128 printable characters; empty:
  // none) makes a resubmission by the same tenant return the job it
  // created. The job is `caller`'s tenant's; the files it names must be
  // ones the caller sees.
  absl::StatusOr<v1::Job> Submit(v1::JobSpec spec, const std::string& request_id = "",
                                 const Caller& caller = {});
  // Errors: NOT_FOUND.
  absl::StatusOr<v1::Job> Get(const std::string& job_id);
  // The caller's tenant's jobs (an admin's: every tenant's).
  // Errors: INVALID_ARGUMENT for a bad page size or token.
  absl::StatusOr<v1::ListJobsResponse> List(const v1::ListJobsRequest& request,
                                            const Caller& caller = {});
  // Errors: NOT_FOUND; FAILED_PRECONDITION when the job has ended;
  // UNAVAILABLE (or RESOURCE_EXHAUSTED) when the cancel cannot be stored,
  // and then nothing changed.
  absl::StatusOr<v1::Job> Cancel(const std::string& job_id);
  // Deletes an ended job: its record and events (one synced write, the
  // point of no return), then its folder under jobs_dir and the cache
  // segments it read or wrote that no unfinished job uses. A folder left by a
  // crash in between is removed at the next start. A record that cannot be
  // read can be deleted too. Errors: NOT_FOUND; FAILED_PRECONDITION (reason
  // JOB_NOT_ENDED) while it is queued or running; the store's errors, and
  // then nothing changed.
  absl::StatusOr<v1::DeleteJobResponse> Delete(const std::string& job_id);
  // Errors: NOT_FOUND; INVALID_ARGUMENT for a bad page size or token.
  absl::StatusOr<v1::ListJobEventsResponse> ListEvents(const v1::ListJobEventsRequest& request);

  // The job's events after `after_sequence`: its history, then its live
  // events, then the end (OK once it has ended; UNAVAILABLE when the daemon
  // shuts down). `wake` is called, on the event hub's thread and outside
  // every lock, when the subscription may have more.
  // Errors: NOT_FOUND; RESOURCE_EXHAUSTED when max_watches are open.
  // A user's watch counts against its tenant's max_watches_per_tenant.
  absl::StatusOr<std::unique_ptr<EventSubscription>> Watch(const std::string& job_id,
                                                           int64_t after_sequence,
                                                           std::function<void()> wake,
                                                           const Caller& caller = {});

  v1::ServerInfo ServerInfo() const;

  // A worker daemon's devices join the pool, and leave it (server/pool/).
  void AddDevices(const std::vector<scheduler::Device>& devices);
  void RemoveWorker(const std::string& worker);

  // A succeeded job's output, to download: "model" (its model's folder;
  // the default) or "metrics" (metrics.json). Errors: INVALID_ARGUMENT for
  // another artifact; NOT_FOUND for an unknown job or an artifact it does
  // not have; FAILED_PRECONDITION until it has SUCCEEDED.
  absl::StatusOr<std::unique_ptr<OutputReader>> OpenOutput(const std::string& job_id,
                                                           const std::string& artifact);

  // The activation cache's size, cap and segments; with a job id, the job's
  // use and its segments. Errors: NOT_FOUND; UNAVAILABLE without a cache.
  absl::StatusOr<v1::CacheInfo> GetCache(const v1::GetCacheRequest& request);
  // Deletes the segments the job read or wrote, except those a running job
  // uses. Errors: NOT_FOUND; FAILED_PRECONDITION while the job runs;
  // UNAVAILABLE without a cache.
  absl::StatusOr<v1::ClearJobCacheResponse> ClearJobCache(const std::string& job_id);

  // Stops taking jobs, asks running jobs to checkpoint and stop at their
  // next step, waits, and leaves them queued for the next start; closes
  // every watch with UNAVAILABLE. Idempotent.
  void Shutdown();

 private:
  // Where a job was when the daemon last stopped while it ran (for the work
  // a resume loses).
  struct Interruption {
    absl::Time time;
    int64_t step = 0;
  };
  struct ActiveJob {
    v1::Job job;
    absl::Time last_progress_event = absl::InfinitePast();
    std::optional<Interruption> interrupted;
    uint64_t order = 0;  // its place in the queue among its priority (0: not yet queued)
    // Events the store refused since the last one it took: the first is
    // logged, the rest counted and told once a write lands again (a failing
    // disk is not flooded with a line a step).
    int64_t refused_events = 0;
    // Efficiency mode: the devices its running trainer asked to continue on
    // (0: none asked).
    int continue_on = 0;
  };

  explicit JobManager(Options options);

  // RunRecorder: a job's run (job_runner.h), on the scheduler's job thread.
  std::optional<Started> StartRun(const std::string& job_id,
                                  const std::vector<std::string>& devices) override;
  void EndRun(const std::string& job_id, const absl::StatusOr<v1::JobResult>& result,
              const scheduler::StopToken& stop) override;
  // Efficiency mode: the job's trainer asks to continue on fewer devices.
  bool ContinueOn(const std::string& job_id, int devices) override;
  void ReportProgress(const std::string& job_id, const v1::Progress& progress) override;
  void Emit(const std::string& job_id, v1::JobEvent event) override;
  void RecordFingerprint(const std::string& job_id, const std::string& role,
                         const std::string& sha256) override;
  void Resumed(const std::string& job_id, v1::Resume resume, const v1::JobResult& history,
               const v1::CacheUsage& cache) override;
  std::string CheckpointDir(const std::string& job_id) const override;
  // Removes the folders of jobs deleted before a crash could (the store's
  // marks).
  void RemoveOrphanedFoldersLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Removes the checkpoints of ended jobs that a stop left behind (unless
  // checkpoints are kept).
  void RemoveEndedJobsCheckpointsLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Removes a deleted job's folder and its mark; the bytes removed (0 when
  // the folder could not be removed: the mark stays for the next start).
  int64_t RemoveJobFolder(const std::string& job_id);

  // Adds `event` to the job's history and publishes it to its watchers; with
  // `persist_job` the job record is written in the same synced write.
  void AppendLocked(ActiveJob& active, v1::JobEvent event, bool persist_job)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Moves the job to `to` with an event, after `change` (if any) is made to
  // it, in one synced write; only once that is stored is the job changed in
  // memory, so on an error (the store's) the job is as it was. A final state
  // closes its watches and drops the job from active_ (so `active` dangles
  // afterwards).
  absl::Status TransitionLocked(ActiveJob& active, v1::JobState to, const std::string& reason,
                                const std::function<void(v1::Job&)>& change = nullptr)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void EnqueueLocked(ActiveJob& active) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A stored job whose record cannot be read: logged, said in its history,
  // and left alone.
  void QuarantineLocked(const std::string& job_id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Counts a job entering `to` (and leaving `from`) and publishes the counts.
  void CountLocked(v1::JobState from, v1::JobState to) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The job as clients see it (with its queue position).
  v1::Job ViewLocked(const v1::Job& job) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<v1::Job> GetLocked(const std::string& job_id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Options options_;
  JobObserver no_observer_;      // when Options has none
  JobObserver* const observer_;  // never null
  const CacheAdmin cache_admin_;
  std::unique_ptr<JobSpecValidator> validator_;
  std::unique_ptr<JobRunner> runner_;  // what the scheduler runs for a job
  std::unique_ptr<scheduler::Scheduler> scheduler_;
  // Downloads streaming now (shared with the readers that hold a place).
  const std::shared_ptr<std::atomic<int>> open_downloads_ = std::make_shared<std::atomic<int>>(0);
  EventHub events_;

  mutable absl::Mutex mu_;
  // Jobs not yet ended, by id.
  std::map<std::string, ActiveJob> active_ ABSL_GUARDED_BY(mu_);
  uint64_t next_order_ ABSL_GUARDED_BY(mu_) = 1;
  // Every stored job, by state (for the metrics).
  std::map<v1::JobState, int64_t> state_counts_ ABSL_GUARDED_BY(mu_);
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace ftd::core
