// Quoting what a caller sent in an error or a log line: a short prefix only,
// whatever its length, with anything unprintable escaped, so that an error
// stays small (gRPC puts it in a trailer) and cannot carry a file's contents
// or forge a log line. Every message that names a caller's string goes
// through here.
#pragma once

#include <cstddef>
#include <string>

#include "absl/strings/string_view.h"

namespace ftd {

// The most of a caller's text an error quotes.
inline constexpr size_t kMaxQuotedBytes = 64;
// The most of a path an error quotes (the path is what tells a user which
// file; a request's paths are at most 4,096 bytes).
inline constexpr size_t kMaxQuotedPathBytes = 256;

// `text` in double quotes: printable ASCII as it is, '"' and '\\' and
// other bytes escaped (\xNN); past `max_bytes` of input it is cut and says
// how long the whole was: "abc..." (1048576 bytes).
std::string QuoteUserText(absl::string_view text, size_t max_bytes = kMaxQuotedBytes);

// The same without the quotes, for a message that names an id as it is
// (no job job-3).
std::string UserTextPrefix(absl::string_view text, size_t max_bytes = kMaxQuotedBytes);

}  // namespace ftd
