// model.safetensors.index.json: which shard file holds each tensor of a
// sharded model. Read at submit (the upload's check) and when the job loads
// its weights; bytes a user supplies (fuzz/shard_index_fuzzer.cc).
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace ftd::training {

// The shard file names the index's "weight_map" names, sorted and each once.
// Each must be a plain file name in the model's folder (no "/", not "." or
// "..", no NUL). Errors: INVALID_ARGUMENT starting with `shown` (how the
// file is named to the user), never quoting the file.
absl::StatusOr<std::vector<std::string>> ParseShardIndex(absl::string_view text,
                                                         const std::string& shown);

}  // namespace ftd::training
