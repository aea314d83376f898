// Scheduler: a priority queue of jobs and a pool of devices. A job runs on
// a set of devices of one kind (one or more CUDA devices, or CPU slots),
// allocated as a gang: all at once or none, so two jobs never hold part of
// what each needs while waiting for the rest.
//
// Jobs are ordered by priority (higher first), then by their order number
// (smaller first: first come, first served). Whenever devices are free, the
// first queued job that they fit starts there: a job waiting for a busy GPU
// does not keep a free CPU slot idle for the jobs behind it. A job asking for
// ANY devices takes free GPUs before CPU slots. A job on several devices that
// cannot start yet holds the free devices it could use against the jobs
// queued after it, so that jobs on one device do not take each device as it
// frees and starve it. Jobs belong to groups
// (tenants): among jobs of one priority, the group with the fewest running
// jobs goes first, then the one that started a job longest ago (round robin),
// so that one group's burst does not starve another's queue; a group may be
// capped in the jobs it runs at once.
//
// Devices of worker daemons (server/pool/) come and go with their workers.
// A job runs on them only beside one of this daemon's own devices of the
// same kind, which runs its first replica (the one that writes the job's
// checkpoints and outputs): a job on one device runs here.
//
// Each started job runs `Options::run` on a thread of its own, which returns
// when the job has ended, however it ended. Thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "ftd/v1/ftd.pb.h"
#include "server/scheduler/device.h"
#include "server/scheduler/stop_token.h"

namespace ftd::scheduler {

class Scheduler {
 public:
  // Runs job `job_id` on `devices` (all of one kind, as many as it asked
  // for) to its end. It must poll `stop` and return soon after a stop is
  // requested. `stop` lives until it returns.
  using RunFn = std::function<void(const std::string& job_id, const std::vector<Device>& devices,
                                   const StopToken& stop)>;

  struct Options {
    // The devices jobs run on; may be empty (jobs then wait).
    std::vector<Device> devices;
    RunFn run;
    // A queued job that no free devices fit asks running jobs of lower
    // priority than its own, on devices it fits, to stop for later
    // (kPreempted): the lowest priority first (the latest submitted of
    // equals), as many as it takes to free the devices it needs, and none
    // when that is not enough. It then takes their devices.
    bool preemption = false;
    // Jobs of one group that may run at once (0: no cap).
    int max_running_per_group = 0;
  };

  explicit Scheduler(Options options);
  // Shuts down if that has not happened.
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // OK when this pool can ever run a job with this request on `devices`
  // devices (with the workers attached now); otherwise INVALID_ARGUMENT
  // naming the field (`device`, `devices`) and what exists.
  absl::Status CheckRequest(const v1::DeviceRequest& request, int devices = 1) const;

  // Queues a job for `devices` devices. Jobs queued before Start() wait for it.
  void Enqueue(const std::string& job_id, int priority, uint64_t order,
               const v1::DeviceRequest& request, const std::string& group = "", int devices = 1);

  // Starts running queued jobs.
  void Start();

  enum class CancelOutcome {
    kNotFound,          // neither queued nor running
    kRemovedFromQueue,  // it was queued: it will not run
    kStopRequested,     // it is running: it was asked to stop
  };
  CancelOutcome Cancel(const std::string& job_id);

  // The job's place among its own group's queued jobs: 1 for the group's
  // next job to start, 2 for the one after, ... in priority and submission
  // order; 0 when not queued. Other groups' jobs are not counted: the fair
  // share interleaves groups, so a place in one line of all would not say
  // when a job starts, and would tell a group of the others' work. Without
  // groups (all ""), the place in the whole queue.
  int64_t QueuePosition(const std::string& job_id) const;
  int64_t QueueLength() const;

  struct DeviceState {
    Device device;
    std::string job_id;  // empty when idle
  };
  std::vector<DeviceState> Devices() const;

  // A worker's devices join the pool (each `host` set); a device it had
  // before comes back.
  void AddDevices(const std::vector<Device>& devices);
  // Worker `host`'s devices leave the pool. A job running on one keeps it
  // until it returns (its replica there has failed).
  void RemoveHost(const std::string& host);
  // The most devices a job with `request` could start on now if none were
  // busy (0: none it may use).
  int Capacity(const v1::DeviceRequest& request) const;

  // Stops starting jobs, asks every running job to stop (kShutdown) and
  // waits for them to return. Queued jobs stay queued. Idempotent.
  void Shutdown();

 private:
  struct QueuedJob {
    std::string job_id;
    int priority;
    uint64_t order;
    v1::DeviceRequest request;
    std::string group;
    int devices = 1;
  };
  struct Slot {
    Device device;
    std::string job_id;  // empty when free
    bool gone = false;   // its worker left: never given again (unless it comes back)
  };
  struct RunningJob {
    std::vector<size_t> slots;  // indices into slots_
    std::string group;
    int priority = 0;
    uint64_t order = 0;
    std::unique_ptr<StopToken> stop;
    std::thread thread;  // the job's thread
  };

  static bool Before(const QueuedJob& a, const QueuedJob& b);
  // Whether `device` is one that `request` may have among `count` devices.
  static bool Fits(const v1::DeviceRequest& request, int count, const Device& device);
  // The kinds of device a job may run on, in the order it prefers them.
  static std::vector<Device::Kind> Kinds(const v1::DeviceRequest& request);
  // Whether the pool has enough devices of `kind` for the job, busy or
  // not, one of them this daemon's.
  bool PoolFits(const QueuedJob& job, Device::Kind kind) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // `job.devices` slots of one kind, free and not in `held`, that fit the
  // job, this daemon's first; empty when there are not enough.
  std::vector<size_t> FreeSlotsFor(const QueuedJob& job, const std::vector<bool>& held) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Running jobs by group.
  std::map<std::string, int> RunningByGroup() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Starts queued jobs on free slots; with preemption, asks lower-priority
  // running jobs to make room for those that find none.
  void Dispatch() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void PreemptLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RunJob(std::string job_id);
  // Joins finished job threads other than the calling one.
  void ReapLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const RunFn run_;
  const bool preemption_;
  const int max_running_per_group_;
  mutable absl::Mutex mu_;
  std::vector<QueuedJob> queue_ ABSL_GUARDED_BY(mu_);  // sorted by Before
  // When each group last started a job (0: never), in starts.
  std::map<std::string, uint64_t> last_start_ ABSL_GUARDED_BY(mu_);
  uint64_t starts_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<Slot> slots_ ABSL_GUARDED_BY(mu_);                    // CUDA devices first
  std::map<std::string, RunningJob> running_ ABSL_GUARDED_BY(mu_);  // by job id
  std::vector<std::thread> finished_ ABSL_GUARDED_BY(mu_);          // job threads to join
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace ftd::scheduler
