#include "server/training/cache/cache_key.h"

#include "common/sha256.h"

namespace ftd::training {

std::string InputsDigest(const std::vector<std::vector<int32_t>>& rows,
                         std::string_view config_json, std::string_view precision) {
  Sha256 inputs;
  for (const auto& row : rows) {
    inputs.Update(
        std::string_view(reinterpret_cast<const char*>(row.data()), row.size() * sizeof(int32_t)));
    inputs.Update("\n");
  }
  inputs.Update(config_json);
  inputs.Update(precision);
  return inputs.FinishHex();
}

}  // namespace ftd::training
