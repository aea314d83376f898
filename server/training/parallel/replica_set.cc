#include "server/training/parallel/replica_set.h"

#include <torch/torch.h>

#include <exception>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"

namespace ftd::training::parallel {
namespace {

torch::Device ParseDevice(const std::string& name) {
  if (name.rfind("cuda:", 0) == 0)
    return torch::Device(torch::kCUDA, static_cast<int8_t>(std::stoi(name.substr(5))));
  return torch::Device(torch::kCPU);
}

// Replica `rank`: joins the group, then runs.
absl::StatusOr<v1::JobResult> RunOne(TrainingContext& context, const Rendezvous& rendezvous,
                                     const ReplicaFn& run) {
  absl::StatusOr<std::unique_ptr<ReplicaGroup>> group;
  try {
    group = ReplicaGroup::Join(rendezvous, ParseDevice(context.devices()[rendezvous.rank]));
  } catch (const std::exception& e) {
    std::string what = e.what();
    return absl::InternalError(absl::StrCat("replica ", rendezvous.rank,
                                            " could not start: ", what.substr(0, what.find('\n'))));
  }
  if (!group.ok()) return group.status();
  // The group closes when this returns: the others' collectives then fail
  // instead of waiting for this replica.
  return run(context, **group);
}

}  // namespace

absl::StatusOr<v1::JobResult> RunReplicas(TrainingContext& context, const ReplicaOptions& options,
                                          const ReplicaFn& run) {
  const int world = static_cast<int>(context.devices().size());
  if (world <= 1) {
    ReplicaGroup alone;
    return run(context, alone);
  }
  Rendezvous rendezvous;
  rendezvous.store = MakeLocalStore();
  rendezvous.store->setTimeout(options.timeout);
  rendezvous.world_size = world;
  rendezvous.timeout = options.timeout;

  std::vector<std::optional<absl::StatusOr<v1::JobResult>>> results(world);
  std::vector<std::unique_ptr<ReplicaContext>> contexts;
  std::vector<std::thread> threads;
  for (int rank = 1; rank < world; ++rank) {
    contexts.push_back(std::make_unique<ReplicaContext>(context, rank));
    threads.emplace_back([&, rank, replica = contexts.back().get()] {
      Rendezvous mine = rendezvous;
      mine.rank = rank;
      results[rank] = RunOne(*replica, mine, run);
    });
  }
  {
    Rendezvous mine = rendezvous;
    mine.rank = 0;
    results[0] = RunOne(context, mine, run);
  }
  for (std::thread& t : threads) t.join();

  // The cause: the first failure that is not a collective giving up for
  // another replica's sake (ABORTED) or a stop (CANCELLED); else replica
  // 0's outcome, else the first collective's failure.
  for (int rank = 0; rank < world; ++rank) {
    const absl::Status& s = results[rank]->status();
    if (!s.ok() && !absl::IsAborted(s) && !absl::IsCancelled(s)) {
      return rank == 0
                 ? s
                 : absl::Status(s.code(), absl::StrCat("replica ", rank, " on ",
                                                       context.devices()[rank], ": ", s.message()));
    }
  }
  if (!absl::IsAborted(results[0]->status())) return *std::move(results[0]);
  for (int rank = 1; rank < world; ++rank) {
    if (!results[rank]->ok()) return results[rank]->status();
  }
  return *std::move(results[0]);
}

}  // namespace ftd::training::parallel
