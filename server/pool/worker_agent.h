// WorkerAgent: a worker daemon's side of the pool (`ftd --join=HOST:PORT`).
// It attaches to the coordinator's Pool service, offers its devices, and
// runs the replicas the coordinator places on them: it fetches their
// inputs by digest (InputCache), runs each on a thread of its own through
// the trainer, and reports its end. It keeps no job state: a replica's
// folder goes when it ends. When the coordinator goes away it attaches
// again (its replicas there fail at their next collective, and their jobs
// resume on the coordinator's side); a refusal (another version, a name in
// use, credentials) ends it.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "ftd/pool/v1/pool.grpc.pb.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"
#include "server/pool/input_cache.h"
#include "server/scheduler/device.h"
#include "server/training/engine/bert_trainer.h"
#include "server/training/trainer.h"

namespace ftd::pool {

class WorkerAgent {
 public:
  // Runs replica `place.rank` of the job `context` describes (the worker's
  // trainer's TrainReplica).
  using RunReplicaFn = std::function<absl::StatusOr<ftd::v1::JobResult>(
      training::TrainingContext& context, const training::BertTrainer::ReplicaPlace& place)>;

  struct Options {
    // The coordinator's host:port, and the channel to it (TLS when it
    // serves TLS).
    std::string coordinator;
    std::shared_ptr<grpc::Channel> channel;
    // An admin's bearer token; empty: none (mutual TLS, or no authentication).
    std::string token;
    std::string name;
    std::string version;
    // The address this worker's collectives listen on.
    std::string collective_host = "127.0.0.1";
    std::vector<scheduler::Device> devices;  // its own ("cpu:0"), host unset
    // The input cache's folder and size cap.
    std::string cache_dir;
    int64_t cache_max_bytes = int64_t{20} << 30;
    RunReplicaFn run;
    // The wait before attaching again.
    absl::Duration retry_interval = absl::Seconds(2);
  };

  // Errors: the input cache's.
  static absl::StatusOr<std::unique_ptr<WorkerAgent>> Create(Options options);
  ~WorkerAgent();

  // Attaches and serves the coordinator until Shutdown(), attaching again
  // when it goes away. Returns OK after Shutdown(), or the refusal that
  // ends it (FAILED_PRECONDITION for another version, ALREADY_EXISTS for a
  // name attached already, UNAUTHENTICATED or PERMISSION_DENIED for its
  // credentials, INVALID_ARGUMENT for its hello).
  absl::Status Run();
  // Ends Run(). Replicas still running go on until their job stops them.
  void Shutdown();
  // Replicas running now.
  int running() const;

 private:
  explicit WorkerAgent(Options options) : options_(std::move(options)) {}
  struct Session;
  // One attachment, to its end: OK when the coordinator went away (attach
  // again), the refusal otherwise.
  absl::Status AttachOnce(bool attached_before);
  void StartReplica(const std::shared_ptr<Session>& session, v1::RunReplica run);
  void PrepareContext(grpc::ClientContext* context) const;
  absl::Status Fetch(const std::string& sha256, int64_t size, int fd);

  const Options options_;
  std::unique_ptr<InputCache> cache_;
  std::unique_ptr<v1::Pool::Stub> stub_;
  mutable absl::Mutex mu_;
  bool shutdown_ ABSL_GUARDED_BY(mu_) = false;
  grpc::ClientContext* attach_context_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::shared_ptr<std::atomic<int>> running_ = std::make_shared<std::atomic<int>>(0);
};

}  // namespace ftd::pool
