#include "server/api/wire.h"

#include "absl/strings/str_cat.h"
#include "google/protobuf/stubs/logging.h"
#include "grpcpp/impl/codegen/proto_utils.h"
#include "grpcpp/support/proto_buffer_reader.h"
#include "server/api/request_limits.h"
#include "server/core/error_details.h"

namespace ftd::api {

absl::Status ReadRequest(const grpc::ByteBuffer& buffer, google::protobuf::Message* message) {
  grpc::ByteBuffer copy(buffer);  // the reader takes a mutable one; this shares the slices
  grpc::ProtoBufferReader reader(&copy);
  bool parsed = false;
  {
    google::protobuf::LogSilencer quiet;
    parsed = reader.status().ok() && message->ParseFromZeroCopyStream(&reader);
  }
  if (!parsed) {
    return core::WithReason(
        absl::InvalidArgumentError(absl::StrCat(
            "the request is not a valid ", message->GetDescriptor()->full_name(),
            ": it is truncated, has a field of the wrong wire type, or a string that is not "
            "UTF-8")),
        "MALFORMED_REQUEST");
  }
  // Fields this daemon does not know are not kept: nothing checked them,
  // and a job's spec is stored as it came.
  message->DiscardUnknownFields();
  return CheckRequestLimits(*message);
}

grpc::ByteBuffer Serialize(const google::protobuf::Message& message) {
  grpc::ByteBuffer buffer;
  bool own_buffer = false;
  grpc::SerializationTraits<google::protobuf::Message>::Serialize(message, &buffer, &own_buffer)
      .IgnoreError();
  return buffer;
}

}  // namespace ftd::api
