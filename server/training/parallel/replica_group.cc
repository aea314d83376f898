#include "server/training/parallel/replica_group.h"

// c10d declares its Gloo process group only when LibTorch was built with
// Gloo (Debian's was; its headers come from libgloo-dev). This file alone
// defines the switch, so nothing else includes Gloo's headers.
#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO
#endif
#include <torch/csrc/distributed/c10d/HashStore.hpp>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#ifdef FTD_WITH_NCCL
#ifndef USE_C10D_NCCL
#define USE_C10D_NCCL
#endif
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <exception>
#include <utility>

#include "absl/strings/str_cat.h"

namespace ftd::training::parallel {

c10::intrusive_ptr<c10d::Store> MakeLocalStore() { return c10::make_intrusive<c10d::HashStore>(); }

namespace {
std::string FirstLine(const std::exception& e) {
  std::string what = e.what();
  return what.substr(0, what.find('\n'));
}
}  // namespace

absl::StatusOr<c10::intrusive_ptr<c10d::Store>> ConnectTcpStore(const std::string& host, int port,
                                                                const std::string& prefix,
                                                                std::chrono::milliseconds timeout) {
  if (port <= 0 || port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("store port ", port, " is not a port"));
  }
  try {
    c10d::TCPStoreOptions options;
    options.port = static_cast<std::uint16_t>(port);
    options.isServer = false;
    options.waitWorkers = false;
    options.timeout = timeout;
    auto store = c10::make_intrusive<c10d::TCPStore>(host, options);
    return c10::intrusive_ptr<c10d::Store>(c10::make_intrusive<c10d::PrefixStore>(prefix, store));
  } catch (const std::exception& e) {
    return absl::UnavailableError(
        absl::StrCat("cannot reach the replicas' store at ", host, ":", port, ": ", FirstLine(e)));
  }
}

absl::StatusOr<std::unique_ptr<TcpStoreHost>> TcpStoreHost::Listen(const std::string& host,
                                                                   int port) {
  if (port < 0 || port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("store port ", port, " is not a port"));
  }
  std::unique_ptr<TcpStoreHost> served(new TcpStoreHost());
  try {
    c10d::TCPStoreOptions options;
    options.port = static_cast<std::uint16_t>(port);
    options.isServer = true;
    options.waitWorkers = false;
    options.multiTenant = false;
    auto store = c10::make_intrusive<c10d::TCPStore>(host, options);
    served->port_ = store->getPort();
    served->host_ = host;
    served->store_ = store;
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat("cannot serve the replicas' store on ", host, ":",
                                               port, ": ", FirstLine(e)));
  }
  return served;
}

TcpStoreHost::~TcpStoreHost() = default;

absl::StatusOr<c10::intrusive_ptr<c10d::Store>> TcpStoreHost::Prefixed(
    const std::string& prefix, std::chrono::milliseconds timeout) const {
  // A client of its own for each run: a run's timeout is its own, and one
  // run's blocked wait does not hold the others' requests.
  return ConnectTcpStore(host_, port_, prefix, timeout);
}

torch::Device DeviceOf(const std::string& name) {
  const std::string local = name.substr(name.find('/') + 1);  // npos + 1 == 0
  if (local.rfind("cuda:", 0) == 0)
    return torch::Device(torch::kCUDA, static_cast<int8_t>(std::stoi(local.substr(5))));
  return torch::Device(torch::kCPU);
}

// The process group of one kind. Both kinds return c10d's Work, which
// rethrows a failed collective's error from wait().
struct ReplicaGroup::Backend {
  c10::intrusive_ptr<c10d::ProcessGroupGloo> gloo;
#ifdef FTD_WITH_NCCL
  c10::intrusive_ptr<c10d::ProcessGroupNCCL> nccl;
#endif

  c10::intrusive_ptr<c10d::Work> AllReduce(std::vector<at::Tensor>& tensors) {
    c10d::AllreduceOptions options;
    options.reduceOp = c10d::ReduceOp::SUM;
#ifdef FTD_WITH_NCCL
    if (nccl) return nccl->allreduce(tensors, options);
#endif
    return gloo->allreduce(tensors, options);
  }

  c10::intrusive_ptr<c10d::Work> Broadcast(std::vector<at::Tensor>& tensors, int root) {
    c10d::BroadcastOptions options;
    options.rootRank = root;
#ifdef FTD_WITH_NCCL
    if (nccl) return nccl->broadcast(tensors, options);
#endif
    return gloo->broadcast(tensors, options);
  }
};

ReplicaGroup::ReplicaGroup() = default;
ReplicaGroup::~ReplicaGroup() = default;

absl::StatusOr<std::unique_ptr<ReplicaGroup>> ReplicaGroup::Join(const Rendezvous& rendezvous,
                                                                 const torch::Device& device) {
  auto group = std::make_unique<ReplicaGroup>();
  group->rank_ = rendezvous.rank;
  group->size_ = rendezvous.world_size;
  group->timeout_ = rendezvous.timeout;
  group->device_ = device;
  if (rendezvous.world_size < 1 || rendezvous.rank < 0 ||
      rendezvous.rank >= rendezvous.world_size) {
    return absl::InvalidArgumentError(absl::StrCat("replica ", rendezvous.rank, " of ",
                                                   rendezvous.world_size, " does not exist"));
  }
  if (rendezvous.world_size == 1) return group;
  if (!rendezvous.store) return absl::InvalidArgumentError("replicas need a store to meet in");
  group->backend_ = std::make_unique<Backend>();
  try {
    if (device.is_cuda()) {
#ifdef FTD_WITH_NCCL
      auto options = c10d::ProcessGroupNCCL::Options::create();
      options->timeout = rendezvous.timeout;
      group->backend_->nccl = c10::make_intrusive<c10d::ProcessGroupNCCL>(
          rendezvous.store, rendezvous.rank, rendezvous.world_size, options);
#else
      return absl::UnimplementedError(
          "training on several CUDA devices needs a LibTorch built with NCCL");
#endif
    } else {
      auto options = c10d::ProcessGroupGloo::Options::create(rendezvous.timeout);
      options->devices.push_back(
          c10d::ProcessGroupGloo::createDeviceForHostname(rendezvous.hostname));
      // One thread for the collectives: the replicas' own threads do the
      // training, on a machine whose cores they already share out.
      options->threads = 1;
      group->backend_->gloo = c10::make_intrusive<c10d::ProcessGroupGloo>(
          rendezvous.store, rendezvous.rank, rendezvous.world_size, options);
    }
  } catch (const std::exception& e) {
    std::string what = e.what();
    what = what.substr(0, what.find('\n'));
    return absl::AbortedError(absl::StrCat("replica ", rendezvous.rank, " of ",
                                           rendezvous.world_size,
                                           " could not join the others: ", what));
  }
  return group;
}

absl::Status ReplicaGroup::Failed(const char* what, const std::exception& e) {
  std::string message = e.what();
  message = message.substr(0, message.find('\n'));
  failure_ = absl::StrCat("replica ", rank_, " of ", size_, ": the ", what,
                          " failed (another replica failed, or did not reach it within ",
                          timeout_.count() / 1000.0, " s): ", message);
  return absl::AbortedError(failure_);
}

// A collective in flight: the tensor it was given, the one it runs on (a
// copy on the group's device for NCCL), and its Work.
struct ReplicaGroup::InFlight {
  torch::Tensor tensor, sent;
  c10::intrusive_ptr<c10d::Work> work;
};

absl::Status ReplicaGroup::StartAllReduceSum(torch::Tensor tensor) {
  if (alone()) return absl::OkStatus();
  if (!failure_.empty()) return absl::AbortedError(failure_);
  allreduce_bytes_ += static_cast<int64_t>(tensor.numel() * tensor.element_size());
  try {
    // NCCL takes tensors on the group's device only: others go there and back.
    InFlight op;
    op.sent = tensor.device() == device_ || !device_.is_cuda() ? tensor : tensor.to(device_);
    op.tensor = std::move(tensor);
    std::vector<at::Tensor> list = {op.sent};
    op.work = backend_->AllReduce(list);
    in_flight_.push_back(std::move(op));
  } catch (const std::exception& e) {
    in_flight_.clear();
    return Failed("all-reduce", e);
  }
  return absl::OkStatus();
}

absl::Status ReplicaGroup::WaitAll() {
  std::vector<InFlight> ops = std::move(in_flight_);
  in_flight_.clear();
  try {
    for (InFlight& op : ops) {
      op.work->wait();
      if (!op.sent.is_same(op.tensor)) op.tensor.copy_(op.sent);
    }
  } catch (const std::exception& e) {
    return Failed("all-reduce", e);
  }
  return absl::OkStatus();
}

absl::Status ReplicaGroup::AllReduceSum(std::vector<torch::Tensor>& tensors) {
  if (alone() || tensors.empty()) return absl::OkStatus();
  // One collective a tensor, all in flight together.
  for (const torch::Tensor& t : tensors) {
    if (absl::Status s = StartAllReduceSum(t); !s.ok()) return s;
  }
  return WaitAll();
}

absl::Status ReplicaGroup::Broadcast(torch::Tensor& tensor, int root) {
  if (alone()) return absl::OkStatus();
  if (!failure_.empty()) return absl::AbortedError(failure_);
  try {
    std::vector<at::Tensor> list = {
        tensor.device() == device_ || !device_.is_cuda() ? tensor : tensor.to(device_)};
    backend_->Broadcast(list, root)->wait();
    if (!list[0].is_same(tensor)) tensor.copy_(list[0]);
  } catch (const std::exception& e) {
    return Failed("broadcast", e);
  }
  return absl::OkStatus();
}

}  // namespace ftd::training::parallel
