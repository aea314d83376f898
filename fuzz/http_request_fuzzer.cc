// Fuzzes the metrics endpoint's request head parser (ParseHttpRequestHead):
// bytes anyone who reaches the port may send. Any bytes give a request or
// INVALID_ARGUMENT, never a crash; a parsed request's method and path hold
// no space and no line break.
#include <cstddef>
#include <cstdint>
#include <string>

#include "server/metrics/http_request.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string head(reinterpret_cast<const char*>(data), size);
  auto request = ftd::metrics::ParseHttpRequestHead(head);
  if (!request.ok()) {
    if (request.status().code() != absl::StatusCode::kInvalidArgument) __builtin_trap();
    return 0;
  }
  for (const std::string* part : {&request->method, &request->path}) {
    if (part->find_first_of(" \r\n") != std::string::npos) __builtin_trap();
  }
  if (request->method.empty()) __builtin_trap();
  return 0;
}
