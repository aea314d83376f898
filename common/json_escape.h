// Writing JSON strings by hand (safetensors headers, YAML-to-JSON).
#pragma once

#include <string>
#include <string_view>

namespace ftd {

// Appends `s` to `out` as a JSON string literal, quotes included.
void AppendJsonString(std::string_view s, std::string* out);

}  // namespace ftd
