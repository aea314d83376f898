// The one place absl::Status becomes grpc::Status.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/strings/cord.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"
#include "grpcpp/support/status.h"
#include "server/core/error_details.h"

namespace ftd::api {

// The longest message an error carries (gRPC sends it in a trailer, which
// clients cap at 8 KiB by default). Messages quote a caller's text only
// through QuoteUserText (common/quote.h); this is the last line of defence.
inline constexpr size_t kMaxErrorMessageBytes = 2048;

// The codes share their numbers (both follow google.rpc.Code). The details
// (server/core/error_details.h) go as a google.rpc.Status in the
// grpc-status-details-bin trailer; an error without a reason gets its
// code's name as one ("NOT_FOUND").
inline grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  absl::string_view kept = status.message();
  if (kept.size() > kMaxErrorMessageBytes) {
    // Cut before a character, not inside one: the message must stay UTF-8.
    size_t end = kMaxErrorMessageBytes;
    while (end > 0 && (static_cast<unsigned char>(kept[end]) & 0xC0) == 0x80) --end;
    kept = kept.substr(0, end);
  }
  std::string message(kept);
  if (message.size() < status.message().size()) message += "... (cut)";
  google::rpc::Status details;
  details.set_code(static_cast<int>(status.code()));
  details.set_message(message);
  bool has_reason = false;
  status.ForEachPayload([&](absl::string_view url, const absl::Cord& value) {
    google::protobuf::Any* any = details.add_details();
    any->set_type_url(std::string(url));
    any->set_value(std::string(value));
    if (url == core::kErrorInfoUrl) has_reason = true;
  });
  if (!has_reason) {
    google::rpc::ErrorInfo info;
    info.set_reason(absl::StatusCodeToString(status.code()));
    info.set_domain(core::kErrorDomain);
    details.add_details()->PackFrom(info);
  }
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), message,
                      details.SerializeAsString());
}

}  // namespace ftd::api
