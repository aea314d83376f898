// RunReplicas: runs a job's replicas, one a device, on threads of this
// process (replica 0 on the caller's), each with its ReplicaGroup, and
// returns the job's result: replica 0's, or the error that stopped it.
//
// Replica 0 sees the job's own TrainingContext; the others a quiet view of
// it (ReplicaContext) that reports nothing and never stops on its own: they
// stop when replica 0 tells them (StepAgreement). When one replica fails,
// its group closes, so the others' next collective fails at once (or at the
// group's timeout when it stalls instead), and the job's error is the first
// failure that was not a collective giving up because of another one.
//
// Replicas on other hosts' devices run there (RemoteReplicas): they meet
// in a TCPStore instead of this process's store, and a host that leaves
// makes the job's outcome UNAVAILABLE marked DeviceLost(): the job resumes
// from its checkpoint on the devices left.
#pragma once

#include <chrono>
#include <functional>

#include "absl/status/statusor.h"
#include "ftd/v1/ftd.pb.h"
#include "server/training/parallel/replica_group.h"
#include "server/training/trainer.h"

namespace ftd::training::parallel {

// What one replica runs: `context` is the job's (replica 0) or a quiet
// view of it, `group` the replicas' group (of one for a job on one device).
using ReplicaFn =
    std::function<absl::StatusOr<v1::JobResult>(TrainingContext& context, ReplicaGroup& group)>;

// A replica running on another host (a worker daemon's), as the job's
// first replica sees it.
class RemoteReplica {
 public:
  virtual ~RemoteReplica() = default;
  // Waits for its end: OK when it trained to the end; its error; or
  // UNAVAILABLE marked DeviceLost() when its host left or did not report
  // an end within `timeout`.
  virtual absl::Status Wait(std::chrono::milliseconds timeout) = 0;
  // Asks its host to stop it (the job has ended without it).
  virtual void Stop() = 0;
};

// The hosts a job's replicas on other hosts' devices run on (the pool of
// worker daemons, server/pool/).
class RemoteReplicas {
 public:
  virtual ~RemoteReplicas() = default;
  // Where this host's replicas meet the others: the store (under `prefix`,
  // one run's keys) and the address their collectives listen on.
  virtual absl::StatusOr<Rendezvous> Meet(const std::string& prefix,
                                          std::chrono::milliseconds timeout) = 0;
  // Starts replica `rank` of `job` on the host of job.devices()[rank],
  // meeting the others under `prefix`. Errors: UNAVAILABLE marked
  // DeviceLost() when that host is gone.
  virtual absl::StatusOr<std::unique_ptr<RemoteReplica>> Start(const TrainingContext& job,
                                                               int rank,
                                                               const std::string& prefix,
                                                               std::chrono::milliseconds timeout) = 0;
};

struct ReplicaOptions {
  // How long a collective may wait for another replica.
  std::chrono::milliseconds timeout{std::chrono::minutes(5)};
  // Runs the replicas on other hosts' devices ("worker-1/cpu:0"); null
  // when this daemon has no workers (such a device is then an error).
  RemoteReplicas* remote = nullptr;
};

absl::StatusOr<v1::JobResult> RunReplicas(TrainingContext& context, const ReplicaOptions& options,
                                          const ReplicaFn& run);

// Runs one replica of a job whose others run elsewhere (a worker daemon's
// share): joins the group at `rendezvous` on context.devices()[rank], runs.
absl::StatusOr<v1::JobResult> RunReplica(TrainingContext& context, const Rendezvous& rendezvous,
                                         const ReplicaFn& run);

// The job as replica `rank` > 0 sees it: the spec, devices and folders are
// the job's; progress, events and fingerprints go nowhere (replica 0
// reports them), and stops come from replica 0.
class ReplicaContext final : public TrainingContext {
 public:
  ReplicaContext(const TrainingContext& job, int rank) : job_(job), rank_(rank) {}
  const std::string& job_id() const override { return job_.job_id(); }
  const std::string& tenant() const override { return job_.tenant(); }
  const v1::JobSpec& spec() const override { return job_.spec(); }
  const v1::JobSpec& recorded_spec() const override { return job_.recorded_spec(); }
  const std::vector<std::string>& devices() const override { return job_.devices(); }
  const std::string& output_dir() const override { return job_.output_dir(); }
  bool StopRequested() const override { return false; }
  std::string checkpoint_dir() const override { return job_.checkpoint_dir(); }
  void ReportProgress(const v1::Progress&) override {}
  void Emit(v1::JobEvent) override {}
  void RecordFingerprint(const std::string&, const std::string&) override {}
  int rank() const { return rank_; }

 private:
  const TrainingContext& job_;
  const int rank_;
};

}  // namespace ftd::training::parallel
