// ReplicaGroup: the replicas of one data-parallel job and the collectives
// between them, on LibTorch's distributed engine, c10d: Gloo for CPU
// devices, NCCL for CUDA ones (with a CUDA LibTorch built with it).
//
// Replicas meet through a c10d store (Rendezvous): an in-process HashStore
// when one daemon runs them all, a TCPStore when they are on several hosts;
// the rest of the code is the same. A group of one replica has no process
// group and its collectives return at once, so a one-device job runs the
// same loop as a job on several.
//
// A collective fails, rather than waiting for ever, when another replica
// has failed (its connections close) or has not joined it within the
// timeout; every method then returns an ABORTED status that says so, and
// the group is not used again.
#pragma once

#include <torch/torch.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <torch/csrc/distributed/c10d/Store.hpp>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace ftd::training::parallel {

// Where the replicas of one job meet.
struct Rendezvous {
  // Keys the replicas exchange their addresses through; its keys are the
  // job's own (a PrefixStore when the store is shared). Its own timeout
  // (set by whoever makes it, before the replicas join) bounds the wait
  // for the others to join.
  c10::intrusive_ptr<c10d::Store> store;
  int rank = 0;
  int world_size = 1;
  // How long a collective may wait for the other replicas.
  std::chrono::milliseconds timeout{std::chrono::minutes(5)};
  // The address Gloo's transport binds: loopback when one daemon runs every
  // replica.
  std::string hostname = "127.0.0.1";
};

// A store for replicas in this process (threads of one daemon).
c10::intrusive_ptr<c10d::Store> MakeLocalStore();

// The store of replicas on several hosts: c10d's TCPStore. The server
// (`serve`: this process serves it on `host`:`port`, port 0 for a free one)
// or a client of the one at `host`:`port`; its keys under `prefix`. Errors:
// UNAVAILABLE naming the address when it cannot listen or connect within
// `timeout`.
absl::StatusOr<c10::intrusive_ptr<c10d::Store>> ConnectTcpStore(const std::string& host, int port,
                                                                const std::string& prefix,
                                                                std::chrono::milliseconds timeout);
// Serves a TCPStore on `host`:`port` (0: a free port) until it is destroyed.
class TcpStoreHost {
 public:
  static absl::StatusOr<std::unique_ptr<TcpStoreHost>> Listen(const std::string& host, int port);
  ~TcpStoreHost();
  int port() const { return port_; }
  // A view of the store under `prefix` (one job's run), in this process.
  // Errors: ConnectTcpStore's.
  absl::StatusOr<c10::intrusive_ptr<c10d::Store>> Prefixed(const std::string& prefix,
                                                           std::chrono::milliseconds timeout) const;

 private:
  TcpStoreHost() = default;
  c10::intrusive_ptr<c10d::Store> store_;  // the server's own client
  std::string host_;
  int port_ = 0;
};

// The device a job's device name stands for on the host that runs it:
// "cpu:0" and "worker-1/cpu:0" the CPU, "cuda:1" and "worker-1/cuda:1" CUDA
// device 1.
torch::Device DeviceOf(const std::string& name);
// Whether a job's device name is another host's: "worker-1/cpu:0".
inline bool IsWorkerDevice(const std::string& name) {
  return name.find('/') != std::string::npos;
}

class ReplicaGroup {
 public:
  // A group of one replica: no process group, collectives return at once.
  ReplicaGroup();
  ~ReplicaGroup();
  ReplicaGroup(const ReplicaGroup&) = delete;
  ReplicaGroup& operator=(const ReplicaGroup&) = delete;

  // Joins the replicas of `rendezvous` for tensors on `device`; blocks until
  // all of them have joined. Errors: ABORTED when they do not within the
  // timeout; UNIMPLEMENTED for CUDA devices without NCCL.
  static absl::StatusOr<std::unique_ptr<ReplicaGroup>> Join(const Rendezvous& rendezvous,
                                                            const torch::Device& device);

  int rank() const { return rank_; }
  int size() const { return size_; }
  bool alone() const { return size_ == 1; }

  // Sums each tensor across the replicas, in place (each replica passes
  // tensors of the same shapes, in the same order). Tensors may be on the
  // CPU or the group's device.
  absl::Status AllReduceSum(std::vector<torch::Tensor>& tensors);
  // The same in two halves: starts summing `tensor` in place (it runs on
  // c10d's thread while the caller goes on), and waits for every collective
  // started. Every replica starts its collectives in the same order.
  absl::Status StartAllReduceSum(torch::Tensor tensor);
  absl::Status WaitAll();
  // Replaces `tensor` with replica `root`'s, in place.
  absl::Status Broadcast(torch::Tensor& tensor, int root = 0);

  // Bytes of tensors this replica has passed to AllReduceSum (none when alone).
  int64_t allreduce_bytes() const { return allreduce_bytes_; }

 private:
  struct Backend;
  struct InFlight;
  absl::Status Failed(const char* what, const std::exception& e);

  int rank_ = 0;
  int size_ = 1;
  std::chrono::milliseconds timeout_{0};
  torch::Device device_{torch::kCPU};
  std::unique_ptr<Backend> backend_;  // null when alone
  std::vector<InFlight> in_flight_;
  int64_t allreduce_bytes_ = 0;
  std::string failure_;  // set once a collective has failed
};

}  // namespace ftd::training::parallel
