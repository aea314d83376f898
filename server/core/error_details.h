// Structured error details on an absl::Status: payloads that the gRPC layer
// (server/api/grpc_status.h) sends as google.rpc.Status details, so that a
// client can act on an error without parsing its message. Every error ftd
// returns carries an ErrorInfo (domain "ftd") with a reason; an invalid
// request field also a BadRequest naming the field.
#pragma once

#include <map>
#include <string>

#include "absl/status/status.h"

namespace ftd::core {

inline constexpr char kErrorDomain[] = "ftd";
inline constexpr char kErrorInfoUrl[] = "type.googleapis.com/google.rpc.ErrorInfo";
inline constexpr char kBadRequestUrl[] = "type.googleapis.com/google.rpc.BadRequest";

// `status` with an ErrorInfo giving `reason` (UPPER_SNAKE_CASE) and
// `metadata` (the limit that was hit, say).
absl::Status WithReason(absl::Status status, const std::string& reason,
                        const std::map<std::string, std::string>& metadata = {});

// INVALID_ARGUMENT "field: description", with a BadRequest field violation
// and reason INVALID_FIELD.
absl::Status InvalidField(const std::string& field, const std::string& description);

// The reason an error carries, or "" (for tests and logs).
std::string ReasonOf(const absl::Status& status);

}  // namespace ftd::core
