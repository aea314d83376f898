// Minimal logging to stderr: one timestamped line a message. (Debian's
// Abseil predates absl/log.)
#pragma once

#include <string_view>

namespace ftd {

enum class LogLevel { kInfo, kWarning, kError };

// Thread-safe: each line is written whole.
void Log(LogLevel level, std::string_view message);

}  // namespace ftd
