// PEM files (certificates, keys) named by a flag.
#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace ftd {

// A PEM file's contents, checked to hold `what` ("CERTIFICATE", or
// "PRIVATE KEY" of any kind). Errors: INVALID_ARGUMENT starting with `flag`
// and naming the file, never quoting it.
absl::StatusOr<std::string> ReadPem(const std::string& flag, const std::string& path,
                                    const std::string& what);

}  // namespace ftd
