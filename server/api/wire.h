// Requests and replies as the bytes gRPC carries. The service takes its
// requests raw and parses them itself, so that one that does not parse
// (a truncated message, a wrong wire type, a string that is not UTF-8) is
// answered INVALID_ARGUMENT with a message, where gRPC's own callback
// handlers answer UNIMPLEMENTED with none; and it checks each request's
// limits (request_limits.h) before anything reads it.
#pragma once

#include "absl/status/status.h"
#include "google/protobuf/message.h"
#include "grpcpp/support/byte_buffer.h"

namespace ftd::api {

// Parses `buffer` into `message` and checks its limits. Errors:
// INVALID_ARGUMENT (reason MALFORMED_REQUEST) naming the message's type
// when it does not parse, and CheckRequestLimits's. Logs nothing (protobuf
// would log a line for each string that is not UTF-8).
absl::Status ReadRequest(const grpc::ByteBuffer& buffer, google::protobuf::Message* message);

// `message` as gRPC sends it.
grpc::ByteBuffer Serialize(const google::protobuf::Message& message);

}  // namespace ftd::api
