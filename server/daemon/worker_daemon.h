// WorkerDaemon: ftd as a pool's worker (`ftd --join=HOST:PORT`). It serves
// no API: jobs, files and outputs stay with the coordinator. It opens its
// own activation cache (<data_dir>/db: the frozen prefix's outputs of the
// rows its replicas train) and input cache (<data_dir>/pool/), and runs the
// replicas the coordinator places on its devices (pool/worker_agent.h).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "grpcpp/channel.h"
#include "server/pool/worker_agent.h"
#include "server/scheduler/device.h"
#include "server/training/engine/bert_trainer.h"
#include "storage/activation_store.h"
#include "storage/database.h"

namespace ftd::daemon {

class WorkerDaemon {
 public:
  struct Options {
    // The coordinator (host:port) and the channel to it.
    std::string join;
    std::shared_ptr<grpc::Channel> channel;
    std::string token;  // an admin's; empty: none
    std::string name;
    std::string version = "dev";
    std::string collective_host = "127.0.0.1";
    std::vector<scheduler::Device> devices;
    std::string data_dir = "ftd-data";
    storage::ActivationStore::Options cache;
    int64_t input_cache_max_bytes = int64_t{20} << 30;
    std::function<std::unique_ptr<training::BertTrainer>(storage::ActivationStore*)> make_trainer;
  };

  // Errors: INVALID_ARGUMENT naming the flag; UNAVAILABLE when the data
  // folder or the database cannot be opened.
  static absl::StatusOr<std::unique_ptr<WorkerDaemon>> Start(Options options);
  ~WorkerDaemon();

  // Serves the coordinator until Shutdown(); returns the refusal that ends
  // it otherwise (pool/worker_agent.h).
  absl::Status Run() { return agent_->Run(); }
  // Leaves the coordinator; returns the replicas still running (their
  // jobs resume on the coordinator's side once this process is gone).
  int Shutdown();

 private:
  WorkerDaemon() = default;
  std::unique_ptr<storage::Database> database_;
  std::unique_ptr<storage::ActivationStore> activation_store_;
  std::unique_ptr<training::BertTrainer> trainer_;
  std::unique_ptr<pool::WorkerAgent> agent_;
};

}  // namespace ftd::daemon
