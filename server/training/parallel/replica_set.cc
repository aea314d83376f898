#include "server/training/parallel/replica_set.h"

#include <torch/torch.h>

#include <exception>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace ftd::training::parallel {
namespace {

// Replica `rank`: joins the group, then runs.
absl::StatusOr<v1::JobResult> RunOne(TrainingContext& context, const Rendezvous& rendezvous,
                                     const ReplicaFn& run) {
  absl::StatusOr<std::unique_ptr<ReplicaGroup>> group;
  try {
    group = ReplicaGroup::Join(rendezvous, DeviceOf(context.devices()[rendezvous.rank]));
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

absl::StatusOr<v1::JobResult> RunReplica(TrainingContext& context, const Rendezvous& rendezvous,
                                         const ReplicaFn& run) {
  return RunOne(context, rendezvous, run);
}

absl::StatusOr<v1::JobResult> RunReplicas(TrainingContext& context, const ReplicaOptions& options,
                                          const ReplicaFn& run) {
  const int world = static_cast<int>(context.devices().size());
  if (world <= 1) {
    ReplicaGroup alone;
    return run(context, alone);
  }
  bool remote = false;
  for (const std::string& device : context.devices()) remote = remote || IsWorkerDevice(device);
  if (IsWorkerDevice(context.devices()[0])) {
    return absl::InternalError(absl::StrCat("the job's first replica must run on this daemon, not on ",
                                            context.devices()[0]));
  }
  Rendezvous rendezvous;
  // One run's keys: a job that runs again meets under another prefix.
  const std::string prefix =
      absl::StrCat(context.job_id(), "/", absl::ToUnixNanos(absl::Now()));
  if (remote) {
    if (options.remote == nullptr) {
      return absl::InternalError(
          absl::StrCat("the job has devices of other hosts (", context.devices()[1],
                       ") but this daemon has no pool of workers"));
    }
    absl::StatusOr<Rendezvous> met = options.remote->Meet(prefix, options.timeout);
    if (!met.ok()) return met.status();
    rendezvous = *std::move(met);
  } else {
    rendezvous.store = MakeLocalStore();
    rendezvous.store->setTimeout(options.timeout);
  }
  rendezvous.world_size = world;
  rendezvous.timeout = options.timeout;

  // The other hosts' replicas start first: they fetch their inputs while
  // this host's load theirs, and meet them in the store.
  std::vector<std::unique_ptr<RemoteReplica>> remotes(world);
  for (int rank = 1; rank < world; ++rank) {
    if (!IsWorkerDevice(context.devices()[rank])) continue;
    absl::StatusOr<std::unique_ptr<RemoteReplica>> started =
        options.remote->Start(context, rank, prefix, options.timeout);
    if (!started.ok()) {
      for (auto& r : remotes) {
        if (r) r->Stop();
      }
      return started.status();
    }
    remotes[rank] = *std::move(started);
  }

  std::vector<std::optional<absl::StatusOr<v1::JobResult>>> results(world);
  std::vector<std::unique_ptr<ReplicaContext>> contexts;
  std::vector<std::thread> threads;
  for (int rank = 1; rank < world; ++rank) {
    if (remotes[rank]) continue;
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
  // The other hosts' ends: soon after replica 0's when it finished (they
  // stop at the same step), at once when it failed (they are stopped).
  for (int rank = 1; rank < world; ++rank) {
    if (!remotes[rank]) continue;
    if (!results[0]->ok()) remotes[rank]->Stop();
    absl::Status ended = remotes[rank]->Wait(options.timeout);
    if (ended.ok()) {
      results[rank] = v1::JobResult();
    } else {
      results[rank] = ended;
    }
  }

  // The cause: a host that left (the job goes on without it); else the
  // first failure that is not a collective giving up for another
  // replica's sake (ABORTED) or a stop (CANCELLED); else replica 0's
  // outcome, else the first collective's failure.
  auto named = [&](int rank, const absl::Status& s) {
    absl::Status out(s.code(),
                     absl::StrCat("replica ", rank, " on ", context.devices()[rank], ": ",
                                  s.message()));
    s.ForEachPayload([&](absl::string_view url, const absl::Cord& payload) {
      out.SetPayload(url, payload);
    });
    return out;
  };
  // (Once replica 0 has finished, the job is done: a host that leaves
  // afterwards changes nothing.)
  for (int rank = 1; rank < world && !results[0]->ok(); ++rank) {
    const absl::Status& s = results[rank]->status();
    if (IsDeviceLost(s)) return named(rank, s);
  }
  for (int rank = 1; rank < world && results[0]->ok(); ++rank) {
    if (IsDeviceLost(results[rank]->status())) results[rank] = v1::JobResult();
  }
  for (int rank = 0; rank < world; ++rank) {
    const absl::Status& s = results[rank]->status();
    if (!s.ok() && !absl::IsAborted(s) && !absl::IsCancelled(s)) {
      return rank == 0 ? s : named(rank, s);
    }
  }
  if (!absl::IsAborted(results[0]->status())) return *std::move(results[0]);
  for (int rank = 1; rank < world; ++rank) {
    if (!results[rank]->ok()) return results[rank]->status();
  }
  return *std::move(results[0]);
}

}  // namespace ftd::training::parallel
