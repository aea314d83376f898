#include "server/core/job_manager.h"

#include <algorithm>
#include <filesystem>
#include <set>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/enum_names.h"
#include "common/fs_util.h"
#include "common/log.h"
#include "common/quote.h"
#include "common/status_macros.h"
#include "common/time_util.h"
#include "common/utf8.h"
#include "google/protobuf/util/message_differencer.h"
#include "server/core/error_details.h"
#include "server/core/job_runner.h"
#include "server/core/memory_estimate.h"

namespace ftd::core {
namespace {

constexpr int kDefaultJobsPageSize = 50;
constexpr int kDefaultEventsPageSize = 100;
constexpr int kMaxPageSize = 1000;

absl::Status ShuttingDown() {
  return WithReason(absl::UnavailableError("the daemon is shutting down"), "SHUTTING_DOWN");
}

absl::StatusOr<int> PageSize(int requested, int default_size) {
  if (requested < 0 || requested > kMaxPageSize) {
    return InvalidField("page_size",
                        absl::StrCat("must be between 0 and ", kMaxPageSize, ", got ", requested));
  }
  return requested == 0 ? default_size : requested;
}

}  // namespace

JobManager::JobManager(Options options)
    : options_(std::move(options)),
      observer_(options_.observer != nullptr ? options_.observer : &no_observer_),
      cache_admin_(options_.activation_store),
      events_(EventHub::Options{options_.store, options_.max_buffered_events, options_.max_watches,
                                options_.max_watches_per_tenant}) {}

absl::StatusOr<std::unique_ptr<JobManager>> JobManager::Create(Options options) {
  if (options.store == nullptr || options.trainer == nullptr) {
    return absl::InvalidArgumentError("JobManager needs a store and a trainer");
  }
  std::unique_ptr<JobManager> manager(new JobManager(std::move(options)));
  JobManager* self = manager.get();
  RunRecorder& recorder = *self;
  manager->runner_ = std::make_unique<JobRunner>(
      recorder, JobRunner::Options{self->options_.trainer, self->observer_, self->options_.jobs_dir,
                                   self->options_.now});
  manager->scheduler_ = std::make_unique<scheduler::Scheduler>(scheduler::Scheduler::Options{
      self->options_.devices,
      [self](const std::string& job_id, const std::vector<scheduler::Device>& devices,
             const scheduler::StopToken& stop) { self->runner_->Run(job_id, devices, stop); },
      self->options_.preemption, self->options_.max_running_jobs_per_tenant});
  // The validator asks the scheduler whether a device request can be met,
  // and how much memory a job on it may use.
  manager->validator_ = std::make_unique<JobSpecValidator>(JobSpecValidator::Options{
      self->options_.data_roots,
      [self](const v1::DeviceRequest& request, int devices) {
        return self->scheduler_->CheckRequest(request, devices);
      },
      [self](const v1::DeviceRequest& request, int devices) {
        return MemoryBudget(request, devices, self->options_.devices,
                            self->options_.cpu_memory_bytes);
      },
      self->options_.files, self->options_.tenant_data_roots, self->options_.data_dir,
      self->options_.jobs_dir,
      [self](const std::string& job_id) -> absl::StatusOr<std::string> {
        ASSIGN_OR_RETURN(v1::Job job, self->options_.store->GetJob(job_id));
        return job.tenant();
      }});

  absl::MutexLock lock(&manager->mu_);
  // Every job's state, for the observer (the metrics).
  if (manager->options_.observer != nullptr) {
    std::string token;
    do {
      ASSIGN_OR_RETURN(storage::JobPage page,
                       manager->options_.store->ListJobs(storage::JobFilter(), 500, token));
      for (const v1::Job& job : page.jobs) ++manager->state_counts_[job.state()];
      token = page.next_page_token;
    } while (!token.empty());
  }

  // Recovery: unfinished jobs, in submission order.
  storage::JobFilter unfinished;
  unfinished.states = {v1::JOB_STATE_QUEUED, v1::JOB_STATE_RUNNING, v1::JOB_STATE_CANCELLING};
  std::string token;
  do {
    ASSIGN_OR_RETURN(storage::JobPage page,
                     manager->options_.store->ListJobs(unfinished, 500, token));
    for (const std::string& id : page.unreadable) manager->QuarantineLocked(id);
    for (v1::Job& job : page.jobs) {
      const std::string id = job.id();
      if (manager->options_.files != nullptr) {
        // Its uploaded files stay while it is unfinished. One deleted by hand
        // fails the job when it starts, naming the file.
        if (absl::Status pinned = manager->options_.files->Pin(id, FileIdsOf(job.spec()));
            !pinned.ok()) {
          Log(LogLevel::kWarning, absl::StrCat(id, ": ", pinned.message()));
        }
      }
      ActiveJob& active = manager->active_[id];
      active.job = std::move(job);
      if (active.job.state() == v1::JOB_STATE_RUNNING ||
          (active.job.state() == v1::JOB_STATE_QUEUED && active.job.attempts() > 0)) {
        // Where it was when the daemon stopped: its last event (a progress
        // event while it trained, the requeue after a shutdown).
        ASSIGN_OR_RETURN(std::optional<v1::JobEvent> last, manager->options_.store->LastEvent(id));
        if (last.has_value()) {
          int64_t step = active.job.progress().step();
          if (last->has_progress()) step = last->progress().step();
          if (last->has_freeze_decision()) step = last->freeze_decision().step();
          if (last->has_evaluation()) step = last->evaluation().step();
          if (last->has_checkpoint()) step = last->checkpoint().step();
          active.interrupted = Interruption{FromTimestamp(last->time()), step};
        }
      }
      switch (active.job.state()) {
        case v1::JOB_STATE_RUNNING: {
          // A crash: counted, so that a job that crashes the daemon fails.
          v1::Job& job = active.job;
          const int64_t newest =
              job.checkpoints().empty() ? -1 : job.checkpoints().rbegin()->step();
          const bool progressed = job.crashes() == 0 || newest != job.crash_checkpoint_step();
          job.set_crashes(progressed ? 1 : job.crashes() + 1);
          job.set_crash_checkpoint_step(newest);
          job.set_device("");
          job.clear_devices();
          const int max = manager->options_.max_crashes;
          const std::string where = newest < 0
                                        ? std::string("before its first checkpoint")
                                        : absl::StrCat("since its checkpoint of step ", newest);
          if (max > 0 && job.crashes() >= max) {
            const std::string reason = absl::StrCat(
                "the daemon stopped ", job.crashes(), " times in a row while this job ran ", where,
                " (it may be what stops it: out of memory with batch_size ",
                job.spec().hyperparameters().batch_size(), " and max_seq_length ",
                job.spec().hyperparameters().max_seq_length(),
                ", say); failed so that it does not stop the daemon again");
            job.set_error(reason);
            if (!manager->options_.keep_checkpoints) {
              job.clear_checkpoints();
              std::error_code ec;
              std::filesystem::remove_all(manager->CheckpointDir(id), ec);
            }
            RETURN_IF_ERROR(manager->TransitionLocked(active, v1::JOB_STATE_FAILED, reason));
            break;
          }
          RETURN_IF_ERROR(manager->TransitionLocked(
              active, v1::JOB_STATE_QUEUED,
              absl::StrCat("the daemon stopped while the job was running (", job.crashes(), " of ",
                           max, " stops in a row ", where, "); queued again")));
          manager->EnqueueLocked(manager->active_[id]);
          break;
        }
        case v1::JOB_STATE_CANCELLING:
          RETURN_IF_ERROR(
              manager->TransitionLocked(active, v1::JOB_STATE_CANCELLED,
                                        "cancelled (the daemon stopped before the job did)"));
          break;
        default:
          manager->EnqueueLocked(active);
          break;
      }
    }
    token = page.next_page_token;
  } while (!token.empty());
  if (!manager->active_.empty()) {
    Log(LogLevel::kInfo, absl::StrCat("recovered ", manager->active_.size(), " unfinished jobs"));
  }
  manager->RemoveOrphanedFoldersLocked();
  manager->RemoveEndedJobsCheckpointsLocked();
  for (const scheduler::Device& device : manager->options_.devices) {
    manager->observer_->DeviceBusy(device.name(), false);
  }
  manager->CountLocked(v1::JOB_STATE_UNSPECIFIED, v1::JOB_STATE_UNSPECIFIED);
  return manager;
}

void JobManager::Start() { scheduler_->Start(); }

namespace {

// Bytes of the regular files under `folder`; symbolic links are not followed.
int64_t TreeBytes(const std::filesystem::path& folder) {
  int64_t bytes = 0;
  std::error_code ec;
  for (std::filesystem::recursive_directory_iterator it(folder, ec), end; !ec && it != end;
       it.increment(ec)) {
    std::error_code size_ec;
    if (it->symlink_status(size_ec).type() == std::filesystem::file_type::regular) {
      const uintmax_t size = it->file_size(size_ec);
      if (!size_ec) bytes += static_cast<int64_t>(size);
    }
  }
  return bytes;
}

}  // namespace

void JobManager::RemoveOrphanedFoldersLocked() {
  // Only the folders of jobs the store marked deleted: a lost or replaced
  // database must not cost every job its outputs.
  absl::StatusOr<std::vector<std::string>> deleted = options_.store->DeletedJobs();
  if (!deleted.ok()) {
    Log(LogLevel::kWarning,
        absl::StrCat("cannot list deleted jobs: ", deleted.status().ToString()));
    return;
  }
  for (const std::string& job_id : *deleted) RemoveJobFolder(job_id);
}

void JobManager::RemoveEndedJobsCheckpointsLocked() {
  // A job's checkpoints are deleted after its end is durable; a daemon stopped
  // between the two leaves them behind, to be deleted at the next start.
  if (options_.keep_checkpoints || options_.jobs_dir.empty()) return;
  std::error_code ec;
  for (std::filesystem::directory_iterator it(options_.jobs_dir, ec), end; !ec && it != end;
       it.increment(ec)) {
    const std::string job_id = it->path().filename().string();
    std::error_code stat_ec;
    if (active_.count(job_id) > 0 ||
        std::filesystem::symlink_status(CheckpointDir(job_id), stat_ec).type() !=
            std::filesystem::file_type::directory) {
      continue;
    }
    absl::StatusOr<v1::Job> job = options_.store->GetJob(job_id);
    if (!job.ok() || !IsFinal(job->state())) continue;
    std::error_code remove_ec;
    std::filesystem::remove_all(CheckpointDir(job_id), remove_ec);
    Log(remove_ec ? LogLevel::kWarning : LogLevel::kInfo,
        remove_ec ? absl::StrCat(job_id, ": cannot delete its checkpoints: ", remove_ec.message())
                  : absl::StrCat(job_id, ": deleted the checkpoints it left when it ended"));
  }
}

int64_t JobManager::RemoveJobFolder(const std::string& job_id) {
  int64_t bytes = 0;
  if (!options_.jobs_dir.empty()) {
    // From the daemon's own layout and the store's canonical id.
    const std::filesystem::path folder = std::filesystem::path(options_.jobs_dir) / job_id;
    bytes = TreeBytes(folder);
    std::error_code ec;
    std::filesystem::remove_all(folder, ec);
    if (ec) {
      // The mark stays: the next start tries again.
      Log(LogLevel::kWarning, absl::StrCat(job_id, ": removing its folder failed: ", ec.message()));
      return 0;
    }
  }
  if (absl::Status forgot = options_.store->ForgetDeleted(job_id); !forgot.ok()) {
    Log(LogLevel::kWarning, absl::StrCat(job_id, ": ", forgot.ToString()));
  }
  return bytes;
}

absl::StatusOr<v1::DeleteJobResponse> JobManager::Delete(const std::string& job_id) {
  v1::Job job;
  std::vector<v1::CacheSegment> in_use;
  {
    absl::MutexLock lock(&mu_);
    if (auto it = active_.find(job_id); it != active_.end()) {
      const v1::JobState state = it->second.job.state();
      return WithReason(absl::FailedPreconditionError(
                            absl::StrCat(job_id, " is ", ShortName(state),
                                         "; only an ended job can be deleted: cancel it first")),
                        "JOB_NOT_ENDED", {{"state", v1::JobState_Name(state)}});
    }
    absl::StatusOr<v1::Job> stored = options_.store->GetJob(job_id);
    // A damaged record can still be deleted (it is not running: recovery
    // left it alone); its cache segments are not known.
    if (!stored.ok() && !absl::IsDataLoss(stored.status())) return stored.status();
    if (stored.ok()) {
      job = *std::move(stored);
      // Not active yet not ended: only a job whose end could not be
      // recorded; it is not deleted behind the runner's back.
      if (!IsFinal(job.state())) {
        return WithReason(absl::FailedPreconditionError(
                              absl::StrCat(job_id, " is ", ShortName(job.state()),
                                           "; only an ended job can be deleted: cancel it first")),
                          "JOB_NOT_ENDED", {{"state", v1::JobState_Name(job.state())}});
      }
    }
    RETURN_IF_ERROR(options_.store->DeleteJob(job_id));
    if (stored.ok()) CountLocked(job.state(), v1::JOB_STATE_UNSPECIFIED);
    for (const auto& [id, active] : active_) {
      in_use.insert(in_use.end(), active.job.cache().segments().begin(),
                    active.job.cache().segments().end());
    }
  }
  Log(LogLevel::kInfo, absl::StrCat(job_id, ": deleted"));
  v1::DeleteJobResponse response;
  response.set_output_bytes_freed(RemoveJobFolder(job_id));
  absl::StatusOr<v1::ClearJobCacheResponse> cleared = cache_admin_.ClearDeleted(job, in_use);
  if (!cleared.ok()) {
    // The segments stay until the cache's size cap evicts them.
    Log(LogLevel::kWarning, absl::StrCat(job_id, ": clearing its cache segments failed: ",
                                         cleared.status().ToString()));
    return response;
  }
  *response.mutable_cache_cleared() = std::move(*cleared->mutable_cleared());
  *response.mutable_cache_kept() = std::move(*cleared->mutable_kept());
  response.set_cache_bytes_freed(cleared->bytes_freed());
  return response;
}

void JobManager::QuarantineLocked(const std::string& job_id) {
  const std::string message =
      "the job's record cannot be read (damaged on disk); it is left as it is and not run, and "
      "the other jobs are served";
  Log(LogLevel::kError, absl::StrCat(job_id, ": ", message));
  // Said once in its history, not at every start.
  absl::StatusOr<std::optional<v1::JobEvent>> last = options_.store->LastEvent(job_id);
  if (last.ok() && last->has_value() && (*last)->log().message() == message) return;
  v1::JobEvent event;
  event.set_job_id(job_id);
  *event.mutable_time() = ToTimestamp(options_.now());
  event.mutable_log()->set_level(v1::JobEvent::Log::LEVEL_ERROR);
  event.mutable_log()->set_message(message);
  if (absl::StatusOr<v1::JobEvent> stored = options_.store->AppendEvent(event, nullptr);
      !stored.ok()) {
    Log(LogLevel::kError, absl::StrCat(job_id, ": ", stored.status().ToString()));
  }
}

JobManager::~JobManager() { Shutdown(); }

void JobManager::EnqueueLocked(ActiveJob& active) {
  // A job queued again (preempted) keeps its place among its priority.
  if (active.order == 0) active.order = next_order_++;
  const v1::Job& job = active.job;
  // Jobs stored before `devices` existed have 0: one device. Efficiency
  // mode may have moved it to fewer.
  const int devices =
      job.running_devices() > 0 ? job.running_devices() : std::max(1, job.spec().devices());
  scheduler_->Enqueue(job.id(), job.spec().priority(), active.order, job.spec().device(),
                      job.tenant(), devices);
}

void JobManager::CountLocked(v1::JobState from, v1::JobState to) {
  if (from != v1::JOB_STATE_UNSPECIFIED && --state_counts_[from] < 0) state_counts_[from] = 0;
  if (to != v1::JOB_STATE_UNSPECIFIED) ++state_counts_[to];
  observer_->JobCounts(state_counts_, scheduler_->QueueLength());
}

v1::Job JobManager::ViewLocked(const v1::Job& job) const {
  v1::Job view = job;
  view.set_queue_position(job.state() == v1::JOB_STATE_QUEUED ? scheduler_->QueuePosition(job.id())
                                                              : 0);
  return view;
}

void JobManager::AppendLocked(ActiveJob& active, v1::JobEvent event, bool persist_job) {
  event.set_job_id(active.job.id());
  if (!event.has_time()) *event.mutable_time() = ToTimestamp(options_.now());
  absl::StatusOr<v1::JobEvent> stored =
      options_.store->AppendEvent(std::move(event), persist_job ? &active.job : nullptr);
  if (!stored.ok()) {
    if (active.refused_events++ == 0) {
      Log(LogLevel::kError,
          absl::StrCat(active.job.id(), ": an event was not kept (", stored.status().ToString(),
                       "); the job goes on, and further refusals are counted"));
    }
    return;
  }
  if (active.refused_events > 0) {
    Log(LogLevel::kWarning, absl::StrCat(active.job.id(), ": the job store takes events again; ",
                                         active.refused_events, " were not kept"));
    active.refused_events = 0;
  }
  events_.Publish(*stored);
}

absl::Status JobManager::TransitionLocked(ActiveJob& active, v1::JobState to,
                                          const std::string& reason,
                                          const std::function<void(v1::Job&)>& change) {
  const v1::JobState from = active.job.state();
  v1::JobEvent event;
  event.set_job_id(active.job.id());
  *event.mutable_time() = ToTimestamp(options_.now());
  auto* state_change = event.mutable_state_change();
  state_change->set_from_state(from);
  state_change->set_to_state(to);
  state_change->set_reason(reason);
  // The change is made on a copy and kept only once it is stored: a failed
  // write leaves the job as it was, and the caller says so.
  v1::Job next = active.job;
  if (change) change(next);
  ApplyEvent(event, &next);
  absl::StatusOr<v1::JobEvent> stored = options_.store->AppendEvent(std::move(event), &next);
  if (!stored.ok()) {
    Log(LogLevel::kError, absl::StrCat(active.job.id(), ": cannot record ", ShortName(from), " -> ",
                                       ShortName(to), ": ", stored.status().ToString()));
    return stored.status();
  }
  active.job = std::move(next);
  events_.Publish(*stored);
  Log(LogLevel::kInfo,
      absl::StrCat(active.job.id(), ": ", ShortName(from), " -> ", ShortName(to), ": ", reason));
  CountLocked(from, to);
  if (IsFinal(to)) {
    observer_->JobFinished(to);
    const std::string id = active.job.id();
    if (options_.files != nullptr) options_.files->Unpin(id);
    events_.CloseJob(id, absl::OkStatus());
    active_.erase(id);
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::Job> JobManager::Submit(v1::JobSpec spec, const std::string& request_id,
                                           const Caller& caller) {
  constexpr size_t kMaxRequestId = 128;
  if (request_id.size() > kMaxRequestId || !Printable(request_id)) {
    return InvalidField("request_id",
                        absl::StrCat("must be at most ", kMaxRequestId, " printable characters"));
  }
  {
    absl::MutexLock lock(&mu_);
    if (shutting_down_) return ShuttingDown();
  }
  // File checks run outside the lock. A file too large for the memory left
  // to read fails this submission, not the daemon.
  try {
    RETURN_IF_ERROR(validator_->ValidateAndNormalize(&spec, caller));
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError(
        "the daemon has not the memory to read this job's files now; try again later");
  }

  absl::MutexLock lock(&mu_);
  if (shutting_down_) return ShuttingDown();
  if (!request_id.empty()) {
    ASSIGN_OR_RETURN(std::optional<v1::Job> earlier,
                     options_.store->FindByRequestId(caller.tenant, request_id));
    if (earlier.has_value()) {
      if (!google::protobuf::util::MessageDifferencer::Equals(earlier->spec(), spec)) {
        return WithReason(absl::AlreadyExistsError(absl::StrCat(
                              "request_id: ", QuoteUserText(request_id), " was used for ",
                              earlier->id(), " with a different spec")),
                          "REQUEST_ID_REUSED", {{"job_id", earlier->id()}});
      }
      return GetLocked(earlier->id());
    }
  }
  // Priority is a claim on everyone's devices: above 0, an admin's to make
  // (without authentication every caller is one).
  if (!caller.admin && spec.priority() > 0) {
    return InvalidField("priority", absl::StrCat("above 0 is for admins; tenant \"", caller.tenant,
                                                 "\" may set -1000 to 0, got ", spec.priority()));
  }
  if (options_.max_queued_jobs_per_tenant > 0) {
    int64_t queued = 0;
    for (const auto& [id, active] : active_) {
      if (active.job.tenant() == caller.tenant && active.job.state() == v1::JOB_STATE_QUEUED) {
        ++queued;
      }
    }
    if (queued >= options_.max_queued_jobs_per_tenant) {
      return WithReason(
          absl::ResourceExhaustedError(absl::StrCat(
              "tenant \"", caller.tenant, "\" has ", queued,
              " jobs waiting, the most one tenant may (--max_queued_jobs_per_tenant=",
              options_.max_queued_jobs_per_tenant, "); submit again once some have started")),
          "TENANT_QUEUE_FULL", {{"limit", absl::StrCat(options_.max_queued_jobs_per_tenant)}});
    }
  }
  // Checked after the tenant's own limit, and without a count: that the
  // daemon is full is all it tells of the other tenants.
  if (options_.max_queued_jobs > 0 && scheduler_->QueueLength() >= options_.max_queued_jobs) {
    return WithReason(
        absl::ResourceExhaustedError(absl::StrCat(
            "the queue is full: it holds the most jobs it takes (--max_queued_jobs=",
            options_.max_queued_jobs, "); submit again once some have started or been cancelled")),
        "QUEUE_FULL", {{"limit", absl::StrCat(options_.max_queued_jobs)}});
  }
  // The uploaded files it names are kept from deletion from here on (the
  // pin moves to the job's id once it has one; mu_ makes the key unique).
  constexpr char kSubmitting[] = "a job being submitted";
  const std::vector<std::string> file_ids = FileIdsOf(spec);
  if (options_.files != nullptr && !file_ids.empty()) {
    RETURN_IF_ERROR(options_.files->Pin(kSubmitting, file_ids));
  }
  v1::Job job;
  *job.mutable_spec() = std::move(spec);
  job.set_request_id(request_id);
  job.set_tenant(caller.tenant);
  job.set_state(v1::JOB_STATE_QUEUED);
  *job.mutable_create_time() = ToTimestamp(options_.now());
  v1::JobEvent first;
  *first.mutable_time() = job.create_time();
  first.mutable_state_change()->set_to_state(v1::JOB_STATE_QUEUED);
  first.mutable_state_change()->set_reason("submitted");
  absl::StatusOr<v1::Job> created = options_.store->CreateJob(std::move(job), std::move(first));
  if (options_.files != nullptr && !file_ids.empty()) {
    if (created.ok()) {
      options_.files->MovePins(kSubmitting, created->id());
    } else {
      options_.files->Unpin(kSubmitting);
    }
  }
  RETURN_IF_ERROR(created.status());
  job = *std::move(created);
  Log(LogLevel::kInfo, absl::StrCat(job.id(), ": submitted (", job.spec().display_name(), ")"));
  active_[job.id()].job = job;
  EnqueueLocked(active_[job.id()]);
  observer_->JobSubmitted();
  CountLocked(v1::JOB_STATE_UNSPECIFIED, v1::JOB_STATE_QUEUED);
  // The scheduler may already have handed the job to a thread; it waits for
  // mu_, so the job is still QUEUED here.
  return ViewLocked(job);
}

absl::StatusOr<std::unique_ptr<OutputReader>> JobManager::OpenOutput(const std::string& job_id,
                                                                     const std::string& artifact) {
  if (!artifact.empty() && artifact != "model" && artifact != "metrics") {
    return InvalidField("artifact", absl::StrCat("must be \"model\" or \"metrics\", got ",
                                                 QuoteUserText(artifact)));
  }
  ASSIGN_OR_RETURN(v1::Job job, Get(job_id));
  if (job.state() != v1::JOB_STATE_SUCCEEDED) {
    return absl::FailedPreconditionError(
        absl::StrCat(job_id, " is ", ShortName(job.state()),
                     "; its output can be downloaded once it has SUCCEEDED"));
  }
  // A place among the downloads allowed, held by the reader until it goes.
  auto place = std::shared_ptr<std::atomic<int>>(
      open_downloads_.get(), [count = open_downloads_](std::atomic<int>*) { --*count; });
  if (++*open_downloads_ > options_.max_downloads && options_.max_downloads > 0) {
    return WithReason(absl::ResourceExhaustedError(
                          absl::StrCat("too many downloads at once (the limit is ",
                                       options_.max_downloads, "); try again when one has ended")),
                      "TOO_MANY_DOWNLOADS", {{"limit", absl::StrCat(options_.max_downloads)}});
  }
  // From the daemon's own layout, not from a path in the record.
  const std::string folder = (std::filesystem::path(options_.jobs_dir) / job_id).string();
  absl::StatusOr<std::unique_ptr<OutputReader>> reader =
      artifact == "metrics" ? OutputReader::Open(folder, "metrics.json")
                            : OutputReader::Open(folder + "/model");
  if (absl::IsNotFound(reader.status())) {
    return absl::NotFoundError(absl::StrCat(
        job_id, " has no ", artifact.empty() ? "model" : artifact, " output (was it deleted?)"));
  }
  if (reader.ok()) (*reader)->Hold(std::move(place));
  return reader;
}

absl::StatusOr<v1::Job> JobManager::GetLocked(const std::string& job_id) {
  auto it = active_.find(job_id);
  if (it != active_.end()) return ViewLocked(it->second.job);
  return options_.store->GetJob(job_id);
}

absl::StatusOr<v1::Job> JobManager::Get(const std::string& job_id) {
  absl::MutexLock lock(&mu_);
  return GetLocked(job_id);
}

absl::StatusOr<v1::ListJobsResponse> JobManager::List(const v1::ListJobsRequest& request,
                                                      const Caller& caller) {
  ASSIGN_OR_RETURN(int page_size, PageSize(request.page_size(), kDefaultJobsPageSize));
  // Each job the scan reads is matched against the filter: its size is
  // bounded (a state named twice counts once, so there are a few at most).
  constexpr int kMaxFilterLabels = 64;
  if (request.labels_size() > kMaxFilterLabels) {
    return InvalidField("labels", absl::StrCat("at most ", kMaxFilterLabels, " labels, got ",
                                               request.labels_size()));
  }
  storage::JobFilter filter;
  for (int state : request.states()) {
    if (!v1::JobState_IsValid(state) || state == v1::JOB_STATE_UNSPECIFIED) {
      return InvalidField("states", absl::StrCat("unknown state ", state));
    }
    if (std::find(filter.states.begin(), filter.states.end(), state) != filter.states.end()) {
      continue;
    }
    filter.states.push_back(static_cast<v1::JobState>(state));
  }
  filter.labels.insert(request.labels().begin(), request.labels().end());
  if (!caller.admin) filter.tenant = caller.tenant;
  const std::string order_by = std::string(absl::StripAsciiWhitespace(request.order_by()));
  if (order_by.empty() || order_by == "create_time desc") {
    filter.newest_first = true;
  } else if (order_by != "create_time" && order_by != "create_time asc") {
    return InvalidField("order_by", absl::StrCat(QuoteUserText(order_by),
                                                 " is not an order; use \"create_time desc\" "
                                                 "(newest first, the default) or \"create_time\""));
  }
  // The scan runs outside the lock that every training step takes; the
  // page's running and queued jobs are then shown as they are now.
  ASSIGN_OR_RETURN(storage::JobPage page,
                   options_.store->ListJobs(filter, page_size, request.page_token()));
  absl::MutexLock lock(&mu_);
  v1::ListJobsResponse response;
  for (v1::Job& job : page.jobs) {
    auto it = active_.find(job.id());
    *response.add_jobs() = it != active_.end() ? ViewLocked(it->second.job) : std::move(job);
  }
  response.set_next_page_token(page.next_page_token);
  return response;
}

absl::StatusOr<v1::Job> JobManager::Cancel(const std::string& job_id) {
  absl::MutexLock lock(&mu_);
  auto it = active_.find(job_id);
  if (it == active_.end()) {
    ASSIGN_OR_RETURN(v1::Job job, options_.store->GetJob(job_id));
    return WithReason(
        absl::FailedPreconditionError(absl::StrCat(job_id, " has already ended (",
                                                   ShortName(job.state()), "); nothing to cancel")),
        "JOB_ENDED", {{"state", v1::JobState_Name(job.state())}});
  }
  ActiveJob& active = it->second;
  if (active.job.state() == v1::JOB_STATE_CANCELLING) return ViewLocked(active.job);
  // The cancel is recorded before it acts, so that an acknowledged cancel
  // survives a crash and a cancel that cannot be recorded changes nothing.
  if (active.job.state() == v1::JOB_STATE_RUNNING) {
    RETURN_IF_ERROR(TransitionLocked(active, v1::JOB_STATE_CANCELLING,
                                     "cancel requested; stopping at the next step"));
    scheduler_->Cancel(job_id);  // the job ends CANCELLED when its trainer stops
    return ViewLocked(active.job);
  }
  // Queued (or handed to a thread that has not started it: it finds the job
  // gone and returns).
  RETURN_IF_ERROR(TransitionLocked(active, v1::JOB_STATE_CANCELLED, "cancelled by a user"));
  scheduler_->Cancel(job_id);
  return options_.store->GetJob(job_id);
}

absl::StatusOr<v1::ListJobEventsResponse> JobManager::ListEvents(
    const v1::ListJobEventsRequest& request) {
  ASSIGN_OR_RETURN(int page_size, PageSize(request.page_size(), kDefaultEventsPageSize));
  ASSIGN_OR_RETURN(
      storage::EventPage page,
      options_.store->ListEvents(request.job_id(), 0, page_size, request.page_token()));
  v1::ListJobEventsResponse response;
  for (v1::JobEvent& event : page.events) *response.add_events() = std::move(event);
  response.set_next_page_token(page.next_page_token);
  response.set_dropped_events(page.dropped);
  return response;
}

absl::StatusOr<std::unique_ptr<EventSubscription>> JobManager::Watch(const std::string& job_id,
                                                                     int64_t after_sequence,
                                                                     std::function<void()> wake,
                                                                     const Caller& caller) {
  if (after_sequence < 0) {
    return InvalidField("after_sequence",
                        absl::StrCat("must not be negative, got ", after_sequence));
  }
  // Under the lock, so that no event is published between reading the
  // newest sequence and subscribing.
  absl::MutexLock lock(&mu_);
  const bool active = active_.count(job_id) > 0;
  if (!active) RETURN_IF_ERROR(options_.store->GetJob(job_id).status());
  ASSIGN_OR_RETURN(std::optional<v1::JobEvent> last, options_.store->LastEvent(job_id));
  const int64_t last_sequence = last.has_value() ? last->sequence() : 0;
  // A client resumes after an event it has seen, which the store has; a
  // number past the last one names nothing (and one near int64's end would
  // overflow the watch's next number).
  if (after_sequence > last_sequence) {
    return InvalidField("after_sequence",
                        absl::StrCat(after_sequence, " is past the job's last event (",
                                     last_sequence, "); use a sequence number it has sent"));
  }
  return events_.Subscribe(job_id, after_sequence, last_sequence, /*ended=*/!active,
                           std::move(wake), caller.admin ? std::string() : caller.tenant);
}

v1::ServerInfo JobManager::ServerInfo() const {
  v1::ServerInfo info;
  info.set_version(options_.version);
  info.set_metrics_address(options_.metrics_address);
  info.set_metrics_url(options_.metrics_url);
  *info.mutable_kernels() = options_.kernels;
  std::set<std::string> running;  // a job on several devices counts once
  for (const auto& state : scheduler_->Devices()) {
    v1::Device* device = info.add_devices();
    device->set_name(state.device.name());
    device->set_description(state.device.description);
    device->set_job_id(state.job_id);
    if (!state.job_id.empty()) running.insert(state.job_id);
  }
  info.set_queue_length(scheduler_->QueueLength());
  info.set_running_jobs(static_cast<int64_t>(running.size()));
  if (options_.workers) {
    for (v1::Worker& worker : options_.workers()) *info.add_workers() = std::move(worker);
  }
  return info;
}

void JobManager::AddDevices(const std::vector<scheduler::Device>& devices) {
  scheduler_->AddDevices(devices);
}

void JobManager::RemoveWorker(const std::string& worker) { scheduler_->RemoveHost(worker); }

std::optional<RunRecorder::Started> JobManager::StartRun(const std::string& job_id,
                                                         const std::vector<std::string>& devices) {
  {
    absl::MutexLock lock(&mu_);
    auto it = active_.find(job_id);
    if (it == active_.end()) return std::nullopt;
    ActiveJob& active = it->second;
    if (active.job.state() != v1::JOB_STATE_QUEUED) return std::nullopt;
    const absl::Time now = options_.now();
    absl::Status started = TransitionLocked(
        active, v1::JOB_STATE_RUNNING, absl::StrCat("started on ", absl::StrJoin(devices, ", ")),
        [&](v1::Job& job) {
          job.set_device(devices.front());
          job.clear_devices();
          for (const std::string& name : devices) job.add_devices(name);
          job.set_attempts(job.attempts() + 1);
          *job.mutable_start_time() = ToTimestamp(now);
          // What an earlier attempt showed goes; a resume
          // brings back what its checkpoint holds.
          ClearAttempt(&job);
        });
    if (started.ok()) {
      active.last_progress_event = absl::InfinitePast();
      active.continue_on = 0;
      return Started{active.job.spec(), active.job.tenant(),
                     FromTimestamp(active.job.create_time())};
    }
  }
  // Not recorded as running, so it does not run: it stays queued and is
  // tried again (after a pause, so that a failing disk is not spun on).
  absl::SleepFor(absl::Seconds(1));
  absl::MutexLock lock(&mu_);
  auto it = active_.find(job_id);
  if (it != active_.end() && !shutting_down_ && it->second.job.state() == v1::JOB_STATE_QUEUED) {
    EnqueueLocked(it->second);
  }
  return std::nullopt;
}

void JobManager::EndRun(const std::string& job_id, const absl::StatusOr<v1::JobResult>& result,
                        const scheduler::StopToken& stop) {
  // The outcome is recorded before the devices are given back; a write that
  // fails is tried again each second (the job keeps its device meanwhile),
  // until it lands or the daemon stops (the job is then recovered from the
  // store as it was, RUNNING, at the next start).
  bool ended = false;
  for (int attempt = 0;; ++attempt) {
    if (attempt > 0) absl::SleepFor(absl::Seconds(1));
    absl::MutexLock lock(&mu_);
    auto it = active_.find(job_id);
    if (it == active_.end()) return;
    ActiveJob& active = it->second;
    if (attempt > 0 && shutting_down_) return;
    const RunOutcome outcome =
        ClassifyRun(result.status(), active.job.state() == v1::JOB_STATE_CANCELLING, stop.reason(),
                    active.continue_on);
    const bool keep = options_.keep_checkpoints;
    absl::Status recorded;
    switch (outcome) {
      case RunOutcome::kSucceeded:
        recorded = TransitionLocked(active, v1::JOB_STATE_SUCCEEDED, "finished", [&](v1::Job& job) {
          // Evaluations and freeze decisions were collected from the job's events.
          v1::JobResult merged = *result;
          if (merged.evaluations().empty()) {
            *merged.mutable_evaluations() = job.result().evaluations();
          }
          if (merged.freeze_timeline().empty()) {
            *merged.mutable_freeze_timeline() = job.result().freeze_timeline();
          }
          BoundHistory(&merged);
          *job.mutable_result() = std::move(merged);
          job.clear_error();
          if (!keep) job.clear_checkpoints();
        });
        break;
      case RunOutcome::kCancelled:
        recorded = TransitionLocked(active, v1::JOB_STATE_CANCELLED, "cancelled by a user",
                                    [&](v1::Job& job) {
                                      if (!keep) job.clear_checkpoints();
                                    });
        break;
      case RunOutcome::kRequeuedForShutdown:
        recorded = TransitionLocked(
            active, v1::JOB_STATE_QUEUED,
            "the daemon is shutting down; the job resumes from its checkpoint when it restarts",
            [](v1::Job& job) {
              job.set_device("");
              job.clear_devices();
            });
        break;
      case RunOutcome::kRequeuedPreempted: {
        auto other = active_.find(stop.by());
        // Another tenant's job is not named to this one's.
        const bool same_tenant =
            other != active_.end() && other->second.job.tenant() == active.job.tenant();
        const std::string by = same_tenant ? stop.by() : std::string("another job");
        recorded = TransitionLocked(
            active, v1::JOB_STATE_QUEUED,
            absl::StrCat("preempted by ", by,
                         other != active_.end()
                             ? absl::StrCat(" (priority ", other->second.job.spec().priority(),
                                            " over ", active.job.spec().priority(), ")")
                             : std::string(),
                         "; the job resumes from its checkpoint when a device is free"),
            [](v1::Job& job) {
              job.set_device("");
              job.clear_devices();
            });
        if (recorded.ok()) EnqueueLocked(active_.at(job_id));
        break;
      }
      case RunOutcome::kRequeuedFewerDevices: {
        const int k = active.continue_on;
        recorded = TransitionLocked(
            active, v1::JOB_STATE_QUEUED,
            absl::StrCat("continues on ", k, k == 1 ? " device" : " devices",
                         " from its checkpoint: freezing made its steps cheap enough (efficiency "
                         "mode); the devices it left go to queued jobs"),
            [k](v1::Job& job) {
              job.set_device("");
              job.clear_devices();
              job.set_running_devices(k);
            });
        if (recorded.ok()) EnqueueLocked(active_.at(job_id));
        break;
      }
      case RunOutcome::kRequeuedDeviceLost: {
        // On the devices the pool has now (or as many as it asked for,
        // once they are back).
        const int had = active.job.running_devices() > 0 ? active.job.running_devices()
                                                          : std::max(1, active.job.spec().devices());
        const int k = std::max(1, std::min(had, scheduler_->Capacity(active.job.spec().device())));
        recorded = TransitionLocked(
            active, v1::JOB_STATE_QUEUED,
            absl::StrCat(result.status().message(), "; the job resumes from its checkpoint on ", k,
                         k == 1 ? " device" : " devices"),
            [k, had](v1::Job& job) {
              job.set_device("");
              job.clear_devices();
              if (k != had) job.set_running_devices(k);
            });
        if (recorded.ok()) EnqueueLocked(active_.at(job_id));
        break;
      }
      case RunOutcome::kFailed: {
        const std::string reason(result.status().message());
        recorded = TransitionLocked(active, v1::JOB_STATE_FAILED, reason, [&](v1::Job& job) {
          job.set_error(reason);
          if (!keep) job.clear_checkpoints();
        });
        break;
      }
    }
    if (recorded.ok()) {
      ended = outcome == RunOutcome::kSucceeded || outcome == RunOutcome::kCancelled ||
              outcome == RunOutcome::kFailed;
      break;
    }
  }
  // Once the final state is durable, the checkpoints are not needed.
  if (ended && !options_.keep_checkpoints) {
    std::error_code ec;
    std::filesystem::remove_all(CheckpointDir(job_id), ec);
    if (ec) {
      Log(LogLevel::kWarning,
          absl::StrCat(job_id, ": cannot delete its checkpoints: ", ec.message()));
    }
  }
}

std::string JobManager::CheckpointDir(const std::string& job_id) const {
  return (std::filesystem::path(options_.jobs_dir) / job_id / "checkpoints").string();
}

bool JobManager::ContinueOn(const std::string& job_id, int devices) {
  absl::MutexLock lock(&mu_);
  auto it = active_.find(job_id);
  if (it == active_.end() || shutting_down_ || devices < 1 ||
      it->second.job.state() != v1::JOB_STATE_RUNNING) {
    return false;
  }
  it->second.continue_on = devices;
  return true;
}

void JobManager::Resumed(const std::string& job_id, v1::Resume resume, const v1::JobResult& history,
                         const v1::CacheUsage& cache) {
  absl::MutexLock lock(&mu_);
  auto it = active_.find(job_id);
  if (it == active_.end()) return;
  ActiveJob& active = it->second;
  if (active.interrupted.has_value()) {
    resume.set_lost_steps(std::max<int64_t>(0, active.interrupted->step - resume.step()));
    if (resume.has_checkpoint_time()) {
      resume.set_lost_seconds(
          std::max(0.0, absl::ToDoubleSeconds(active.interrupted->time -
                                              FromTimestamp(resume.checkpoint_time()))));
    }
    active.interrupted.reset();
  }
  ApplyResume(history, cache, &active.job);
  Log(LogLevel::kInfo, absl::StrCat(job_id, ": resumed from step ", resume.step(), " (epoch ",
                                    resume.epoch(), "), lost ", resume.lost_steps(), " steps"));
  v1::JobEvent event;
  *event.mutable_resume() = std::move(resume);
  AppendLocked(active, std::move(event), /*persist_job=*/true);
}

void JobManager::ReportProgress(const std::string& job_id, const v1::Progress& progress) {
  absl::MutexLock lock(&mu_);
  auto it = active_.find(job_id);
  if (it == active_.end()) return;
  ActiveJob& active = it->second;
  *active.job.mutable_progress() = progress;  // as a progress event would
  const absl::Time now = options_.now();
  const bool last = progress.total_steps() > 0 && progress.step() >= progress.total_steps();
  if (!last && now - active.last_progress_event < options_.progress_event_interval) return;
  active.last_progress_event = now;
  v1::JobEvent event;
  *event.mutable_progress() = progress;
  AppendLocked(active, std::move(event), /*persist_job=*/false);
}

void JobManager::Emit(const std::string& job_id, v1::JobEvent event) {
  absl::MutexLock lock(&mu_);
  auto it = active_.find(job_id);
  if (it == active_.end()) return;
  ActiveJob& active = it->second;
  if (event.has_evaluation()) observer_->Evaluation(job_id, event.evaluation());
  if (event.has_freeze_decision()) observer_->FreezeDecision(job_id, event.freeze_decision());
  ApplyEvent(event, &active.job);
  // A checkpoint is a point the record should survive at: the job's record
  // is written with it.
  const bool persist = event.has_checkpoint();
  AppendLocked(active, std::move(event), persist);
}

absl::StatusOr<v1::CacheInfo> JobManager::GetCache(const v1::GetCacheRequest& request) {
  if (request.job_id().empty()) return cache_admin_.Info(nullptr);
  v1::Job job;
  {
    absl::MutexLock lock(&mu_);
    ASSIGN_OR_RETURN(job, GetLocked(request.job_id()));
  }
  return cache_admin_.Info(&job);
}

absl::StatusOr<v1::ClearJobCacheResponse> JobManager::ClearJobCache(const std::string& job_id) {
  v1::Job job;
  {
    absl::MutexLock lock(&mu_);
    ASSIGN_OR_RETURN(job, GetLocked(job_id));
  }
  return cache_admin_.Clear(job);
}

void JobManager::RecordFingerprint(const std::string& job_id, const std::string& role,
                                   const std::string& sha256) {
  absl::MutexLock lock(&mu_);
  auto it = active_.find(job_id);
  if (it == active_.end()) return;
  // Stored with the job's next state change.
  (*it->second.job.mutable_dataset_fingerprints())[role] = sha256;
}

void JobManager::Shutdown() {
  {
    absl::MutexLock lock(&mu_);
    if (shutting_down_) return;
    shutting_down_ = true;
  }
  // Job threads finish under mu_, so it must not be held here.
  scheduler_->Shutdown();
  // Watchers get every event so far, then UNAVAILABLE.
  events_.CloseAll(absl::UnavailableError("the daemon is shutting down"));
}

}  // namespace ftd::core
