#include "server/training/cache/cache_key.h"

#include "common/sha256.h"

namespace ftd::training {

std::string InputsDigest(const std::vector<std::vector<int32_t>>& rows,
                         std::string_view config_json, std::string_view precision,
                         std::string_view tenant) {
  Sha256 inputs;
  for (const auto& row : rows) {
    inputs.Update(
        std::string_view(reinterpret_cast<const char*>(row.data()), row.size() * sizeof(int32_t)));
    inputs.Update("\n");
  }
  inputs.Update(config_json);
  inputs.Update(precision);
  if (!tenant.empty()) {
    inputs.Update("\ntenant:");
    inputs.Update(tenant);
  }
  return inputs.FinishHex();
}

}  // namespace ftd::training
