// WorkerPool: the coordinator's side of a pool of daemons. Worker daemons
// (`ftd --join`) attach through the Pool service (pool_service.h), offer
// their devices to the scheduler, and run the replicas of jobs placed on
// them; the pool sends them those replicas, hears their ends and their
// heartbeats, and serves them the files it offered for their replicas, and
// nothing else. A worker that leaves (its stream ends, or it is silent for
// three heartbeat intervals) takes its devices out of the scheduler, and
// its replicas end as DeviceLost: their jobs resume from their checkpoints
// on the devices left.
//
// Thread-safe. No LibTorch: the replicas' store is pool_replicas.h's.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "ftd/pool/v1/pool.pb.h"
#include "ftd/v1/ftd.pb.h"
#include "server/scheduler/device.h"

namespace ftd::pool {

// A worker's stream as the pool writes to it: the service's, or a test's.
class WorkerStream {
 public:
  virtual ~WorkerStream() = default;
  // Sends one message (the pool never sends two at once on one stream);
  // false once the stream is broken.
  virtual bool Send(const v1::CoordinatorMessage& message) = 0;
  // Ends the call (the worker is detached).
  virtual void Cancel() = 0;
};

class WorkerPool {
 public:
  struct Options {
    // The coordinator's version: a worker must run the same.
    std::string version;
    // The scheduler's: a worker's devices join it and leave it.
    std::function<void(const std::vector<scheduler::Device>&)> add_devices;
    std::function<void(const std::string& worker)> remove_worker;
    // How often a worker says it is alive; one silent for three intervals
    // has left.
    absl::Duration heartbeat_interval = absl::Seconds(5);
    // Workers attached at once, and devices a worker may offer.
    int max_workers = 64;
    int max_devices_per_worker = 64;
    std::function<absl::Time()> now = [] { return absl::Now(); };
  };

  explicit WorkerPool(Options options);
  // Detaches every worker and attaches none any more. Idempotent.
  void Close();
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // A worker attaches with `hello`: the pool welcomes it on `stream` (which
  // outlives its Detach) and its devices join the scheduler. Errors, which
  // the service returns to the worker: INVALID_ARGUMENT naming the field
  // (hello.name, hello.devices[i].name), FAILED_PRECONDITION for another
  // version, ALREADY_EXISTS for a name attached now, RESOURCE_EXHAUSTED
  // past max_workers, UNAVAILABLE when the welcome cannot be sent.
  absl::Status Attach(const v1::Hello& hello, WorkerStream* stream);
  // What an attached worker says.
  void Heartbeat(const std::string& worker);
  void ReplicaEnded(const std::string& worker, const v1::ReplicaEnded& ended);
  // The worker leaves for `reason` ("its connection closed"): its devices
  // leave the scheduler, its replicas end DeviceLost. Nothing when it is
  // not attached (or attached again since, on another stream).
  void Detach(const std::string& worker, const std::string& reason,
              const WorkerStream* stream = nullptr);

  // A file a replica reads: what the worker is told, and the path the pool
  // serves it from.
  struct OfferedFile {
    v1::InputFile file;
    std::string path;
  };
  // A replica placed on a worker.
  class Replica {
   public:
    // Its end: OK, its error, or UNAVAILABLE marked DeviceLost (the worker
    // left, or did not report an end within `timeout`).
    absl::Status Wait(absl::Duration timeout);
    // Asks the worker to stop it.
    void Stop();
    ~Replica();

   private:
    friend class WorkerPool;
    Replica(WorkerPool* pool, std::string worker, std::string run_id)
        : pool_(pool), worker_(std::move(worker)), run_id_(std::move(run_id)) {}
    WorkerPool* pool_;
    const std::string worker_;
    const std::string run_id_;
  };
  // Sends `run` (its run_id filled in) to `worker`, offering it `files`
  // until the replica ends. Errors: UNAVAILABLE marked DeviceLost when the
  // worker is not attached or the message cannot be sent.
  absl::StatusOr<std::unique_ptr<Replica>> Run(const std::string& worker, v1::RunReplica run,
                                               std::vector<OfferedFile> files);

  // The path of a file offered to `worker` for a replica it runs now.
  // Errors: NOT_FOUND.
  absl::StatusOr<std::string> OfferedPath(const std::string& worker,
                                          const std::string& sha256) const;

  // The attached workers, by name.
  std::vector<ftd::v1::Worker> Workers() const;

  // A worker's name is letters, digits, '-' and '.', 1 to 63 bytes.
  static bool ValidName(const std::string& name);

 private:
  struct Worker {
    WorkerStream* stream = nullptr;
    std::string collective_host;
    absl::Time attach_time;
    absl::Time last_heard;
    std::vector<std::string> devices;
    std::shared_ptr<absl::Mutex> send_mu = std::make_shared<absl::Mutex>();
  };
  struct PlacedRun {
    std::string worker;
    std::vector<OfferedFile> files;
    std::optional<absl::Status> end;
  };

  // Sends on `worker`'s stream, serialised with its other sends.
  bool Send(const std::string& worker, const v1::CoordinatorMessage& message);
  absl::Status WaitFor(const std::string& run_id, absl::Duration timeout);
  void Forget(const std::string& run_id);
  void WatchHeartbeats();

  const Options options_;
  mutable absl::Mutex mu_;
  std::map<std::string, Worker> workers_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, PlacedRun> runs_ ABSL_GUARDED_BY(mu_);
  uint64_t next_run_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread watcher_;
};

}  // namespace ftd::pool
