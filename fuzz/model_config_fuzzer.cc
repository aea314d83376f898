// Fuzzes the submit-time reading of a model folder's config.json (what a
// user's model folder or upload reaches): any bytes give a config or
// INVALID_ARGUMENT, never a crash; a config it accepts has positive depths.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "server/core/model_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string folder = [] {
    static std::string dir = "/tmp/ftd-fuzz-model-" + std::to_string(getpid());
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(dir, ec);
    });
    std::filesystem::create_directories(dir);
    std::ofstream(dir + "/vocab.txt") << "[PAD]\n[UNK]\n";
    std::ofstream(dir + "/model.safetensors") << "x";
    return dir;
  }();
  {
    std::ofstream out(folder + "/config.json", std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  auto config = ftd::core::ReadModelConfig(folder, "base_model", "model");
  if (config.ok()) {
    if (config->num_hidden_layers <= 0 || config->max_position_embeddings <= 0) __builtin_trap();
  } else if (config.status().code() != absl::StatusCode::kInvalidArgument) {
    __builtin_trap();
  }
  return 0;
}
