// The files a worker's replica of a job reads, as the coordinator offers
// them: the base model folder's files, the datasets, and the job's
// checkpoints (to resume from), each with its SHA-256, which the worker
// fetches them by and checks them against.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "ftd/v1/ftd.pb.h"
#include "server/pool/worker_pool.h"

namespace ftd::pool {

// Regular files only (a symbolic link is not followed, nor offered); at
// most 256 in the model folder. Errors: UNAVAILABLE naming the file that
// cannot be read.
absl::StatusOr<std::vector<WorkerPool::OfferedFile>> JobFiles(const ftd::v1::JobSpec& spec,
                                                              const std::string& checkpoint_dir);

// Whether `name` is a file name a worker may be told to write: a plain
// name ("config.json"), or for a checkpoint's file "<folder>/<name>", each
// part letters, digits, '.', '-' and '_', not starting with '.'.
bool ValidInputName(const std::string& name, bool checkpoint);

}  // namespace ftd::pool
