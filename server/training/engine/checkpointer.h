// Checkpointer: a running job's checkpoints, so that it resumes where it was
// after a crash, a restart or a preemption (as torchtune's recipes save and
// restore model, optimizer, step and random state).
//
// Each checkpoint is a folder <dir>/step-<step>/ holding
//   state.pb             a TrainingCheckpoint (everything but tensors), after
//                        a magic line and the SHA-256 of the message;
//   tensors.safetensors  the weights, AdamW's moments and AutoFreeze's
//                        gradient sums (F32), whose SHA-256 the state holds.
// A checkpoint is staged in a hidden folder beside it, its files and the
// folder fsynced, renamed into place and the parent fsynced: a crash leaves
// the previous checkpoints and at most a staged folder, which the next save
// removes. Loading verifies both digests and the run digest, and skips a
// damaged or foreign checkpoint for the one before it. The newest `keep` are
// kept.
//
// Not thread-safe: the job's training thread uses it.
#pragma once

#include <torch/torch.h>

#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "ftd/internal/training_checkpoint.pb.h"
#include "ftd/v1/ftd.pb.h"

namespace ftd::training {

class Checkpointer {
 public:
  explicit Checkpointer(std::string dir, int keep = 2) : dir_(std::move(dir)), keep_(keep) {}

  const std::string& dir() const { return dir_; }

  // Writes `state` (its tensors_sha256 is filled in) with `tensors` (float32,
  // any device) as the checkpoint of step state.step(), then deletes all but
  // the newest `keep`. Errors: UNAVAILABLE or RESOURCE_EXHAUSTED naming the
  // path; the earlier checkpoints stay.
  absl::StatusOr<v1::Checkpoint> Save(
      internal::TrainingCheckpoint state,
      const std::vector<std::pair<std::string, torch::Tensor>>& tensors);

  struct Loaded {
    internal::TrainingCheckpoint state;
    std::map<std::string, torch::Tensor> tensors;  // float32, on the CPU
    v1::Checkpoint info;
  };
  struct LoadResult {
    std::optional<Loaded> checkpoint;  // none when no checkpoint passed its checks
    // The newer ones that did not: "step-000000000120: <why>".
    std::vector<std::string> skipped;
  };
  // The newest checkpoint that is whole and belongs to the run `run_digest`.
  LoadResult LoadLatest(const std::string& run_digest) const;

  // The checkpoints on disk, oldest first (unverified).
  std::vector<v1::Checkpoint> List() const;

  // Deletes every checkpoint and the folder. Errors: UNAVAILABLE naming it.
  absl::Status RemoveAll();

 private:
  absl::StatusOr<Loaded> Load(const std::string& folder, const std::string& run_digest) const;
  // Checkpoint folders, oldest first.
  std::vector<std::string> Folders() const;

  const std::string dir_;
  const int keep_;
};

}  // namespace ftd::training
