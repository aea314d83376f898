// Fuzzes ftctl's job file reader (YAML or JSON, what a user writes): any
// bytes give a JobSpec or INVALID_ARGUMENT, never a crash.
#include <cstddef>
#include <cstdint>
#include <string>

#include "client/job_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<ftd::v1::JobSpec> spec = ftd::client::ParseJobSpec(text, "fuzz.yaml");
  if (!spec.ok() && spec.status().code() != absl::StatusCode::kInvalidArgument) __builtin_trap();
  return 0;
}
