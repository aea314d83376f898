// What a cached prefix output depends on besides the frozen blocks' weights:
// the exact inputs (the tokenized rows: dataset, tokenizer, max length), the
// model's settings (config.json) and the compute precision. The cache's
// namespace digests this with the block digests (activation_cache.h).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace ftd::training {

// Hex SHA-256 over the rows' token ids, `config_json`, `precision` ("fp32",
// "bf16-autocast") and the tenant (one tenant's jobs never read another's
// entries, nor learn from hit counts what another trained on; "" adds
// nothing, so entries from before tenants stay valid).
std::string InputsDigest(const std::vector<std::vector<int32_t>>& rows,
                         std::string_view config_json, std::string_view precision,
                         std::string_view tenant = "");

}  // namespace ftd::training
