// Fuzzes model.safetensors.index.json (ParseShardIndex, what a sharded
// model's upload and its job read): any bytes give shard names or
// INVALID_ARGUMENT, never a crash; every name it gives is a plain file name
// in the model's folder, given once, in order.
#include <cstddef>
#include <cstdint>
#include <string>

#include "server/training/model/shard_index.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto shards = ftd::training::ParseShardIndex(text, "model.safetensors.index.json");
  if (!shards.ok()) {
    if (shards.status().code() != absl::StatusCode::kInvalidArgument) __builtin_trap();
    return 0;
  }
  if (shards->empty()) __builtin_trap();
  for (size_t i = 0; i < shards->size(); ++i) {
    const std::string& name = (*shards)[i];
    if (name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos ||
        name.find('\0') != std::string::npos) {
      __builtin_trap();
    }
    if (i > 0 && !((*shards)[i - 1] < name)) __builtin_trap();
  }
  return 0;
}
