// Scheduler: a priority queue of jobs and a pool of devices, one job a device.
//
// Jobs are ordered by priority (higher first), then by their order number
// (smaller first: first come, first served). Whenever a device is free, the
// first queued job that may run on it starts there: a job waiting for a busy
// GPU does not keep a free CPU slot idle for the jobs behind it. A job asking
// for ANY device takes a free GPU before a CPU slot. Jobs belong to groups
// (tenants): among jobs of one priority, the group with the fewest running
// jobs goes first, then the one that started a job longest ago (round robin),
// so that one group's burst does not starve another's queue; a group may be
// capped in the jobs it runs at once.
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
  // Runs job `job_id` on `device` to its end. It must poll `stop` and return
  // soon after a stop is requested. `stop` lives until it returns.
  using RunFn =
      std::function<void(const std::string& job_id, const Device& device, const StopToken& stop)>;

  struct Options {
    // The devices jobs run on; may be empty (jobs then wait).
    std::vector<Device> devices;
    RunFn run;
    // A queued job that no free device fits asks the running job of the
    // lowest priority below its own, on a device it fits, to stop for later
    // (kPreempted); it then takes that device.
    bool preemption = false;
    // Jobs of one group that may run at once (0: no cap).
    int max_running_per_group = 0;
  };

  explicit Scheduler(Options options);
  // Shuts down if that has not happened.
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // OK when some device of this pool can ever run a job with this request;
  // otherwise INVALID_ARGUMENT naming the field `device` and what exists.
  absl::Status CheckRequest(const v1::DeviceRequest& request) const;

  // Queues a job. Jobs queued before Start() wait for it.
  void Enqueue(const std::string& job_id, int priority, uint64_t order,
               const v1::DeviceRequest& request, const std::string& group = "");

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
  };
  struct Slot {
    Device device;
    std::string job_id;
    std::string group;
    int priority = 0;
    uint64_t order = 0;
    std::unique_ptr<StopToken> stop;
    std::thread thread;  // the running job's thread
  };

  static bool Before(const QueuedJob& a, const QueuedJob& b);
  static bool Fits(const v1::DeviceRequest& request, const Device& device);
  // Starts queued jobs on free slots; with preemption, asks lower-priority
  // running jobs to make room for those that find none.
  void Dispatch() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void PreemptLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RunOnSlot(size_t slot, std::string job_id);
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
  std::vector<Slot> slots_ ABSL_GUARDED_BY(mu_);            // CUDA devices first
  std::vector<std::thread> finished_ ABSL_GUARDED_BY(mu_);  // job threads to join
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace ftd::scheduler
