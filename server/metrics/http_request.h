// The head of an HTTP/1.1 request to the metrics endpoint, parsed: bytes any
// client may send (fuzz/http_request_fuzzer.cc).
#pragma once

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace ftd::metrics {

struct HttpRequest {
  std::string method;
  std::string path;  // without its query
  // The token of an "Authorization: Bearer TOKEN" header (the name in any
  // case); the last one when there are several.
  std::optional<std::string> bearer_token;
};

// `head`: the request line and headers, up to the blank line or without it.
// Errors: INVALID_ARGUMENT for a request line that is not "METHOD PATH
// VERSION" or holds a control character.
absl::StatusOr<HttpRequest> ParseHttpRequestHead(absl::string_view head);

}  // namespace ftd::metrics
