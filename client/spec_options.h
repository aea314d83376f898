// Parsers for the short forms ftctl's submit flags take.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "ftd/v1/ftd.pb.h"

namespace ftd::client {

// "none", "static:K", "autofreeze", "autofreeze:P" or "autofreeze:P:E"
// (percentile P, E evaluations per epoch).
absl::StatusOr<v1::FreezePolicy> ParseFreezePolicy(const std::string& text);

// "any", "cpu", "cuda" (= cuda:0) or "cuda:N".
absl::StatusOr<v1::DeviceRequest> ParseDeviceRequest(const std::string& text);

// "fp32", "bf16" or "auto" (any case).
absl::StatusOr<v1::Precision> ParsePrecision(const std::string& text);
// best | final (any case).
absl::StatusOr<v1::ExportWeights> ParseExportWeights(const std::string& text);

// "key=value" items into `spec`'s labels.
absl::Status ParseLabels(const std::vector<std::string>& items, v1::JobSpec* spec);

// "queued", "RUNNING", ... (any case).
absl::StatusOr<v1::JobState> ParseJobState(const std::string& text);

}  // namespace ftd::client
