#include "client/spec_options.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace ftd::client {

absl::StatusOr<v1::FreezePolicy> ParseFreezePolicy(const std::string& text) {
  std::vector<std::string> parts = absl::StrSplit(absl::AsciiStrToLower(text), ':');
  v1::FreezePolicy policy;
  auto bad = [&](const std::string& why) {
    return absl::InvalidArgumentError(
        absl::StrCat("--freeze=", text, ": ", why,
                     " (use none, static:K, autofreeze[:PERCENTILE[:EVALS]], geometric[:ALPHA] or "
                     "linear[:START[:LEVEL]])"));
  };
  if (parts[0] == "none" && parts.size() == 1) {
    policy.mutable_none();
  } else if (parts[0] == "static" && parts.size() == 2) {
    int k;
    if (!absl::SimpleAtoi(parts[1], &k)) return bad("K is not a whole number");
    policy.mutable_static_()->set_frozen_layers(k);
  } else if (parts[0] == "autofreeze" && parts.size() <= 3) {
    auto* af = policy.mutable_autofreeze();
    if (parts.size() >= 2) {
      double p;
      if (!absl::SimpleAtod(parts[1], &p)) return bad("the percentile is not a number");
      af->set_percentile(p);
    }
    if (parts.size() == 3) {
      int e;
      if (!absl::SimpleAtoi(parts[2], &e)) return bad("the evaluations are not a whole number");
      af->set_evaluations_per_epoch(e);
    }
  } else if (parts[0] == "geometric" && parts.size() <= 2) {
    auto* g = policy.mutable_geometric();
    if (parts.size() == 2) {
      double a;
      if (!absl::SimpleAtod(parts[1], &a)) return bad("alpha is not a number");
      g->set_alpha(a);
    }
  } else if (parts[0] == "linear" && parts.size() <= 3) {
    auto* l = policy.mutable_linear();
    double v;
    if (parts.size() >= 2) {
      if (!absl::SimpleAtod(parts[1], &v)) return bad("the start is not a number");
      l->set_freeze_start(v);
    }
    if (parts.size() == 3) {
      if (!absl::SimpleAtod(parts[2], &v)) return bad("the level is not a number");
      l->set_freeze_level(v);
    }
  } else {
    return bad("unknown policy");
  }
  return policy;
}

absl::StatusOr<v1::DeviceRequest> ParseDeviceRequest(const std::string& text) {
  std::string lower = absl::AsciiStrToLower(text);
  v1::DeviceRequest request;
  if (lower == "any" || lower.empty()) {
    request.set_kind(v1::DeviceRequest::KIND_UNSPECIFIED);
  } else if (lower == "cpu") {
    request.set_kind(v1::DeviceRequest::KIND_CPU);
  } else if (lower == "cuda" || lower == "gpu") {
    request.set_kind(v1::DeviceRequest::KIND_CUDA);
  } else if (absl::StartsWith(lower, "cuda:")) {
    int index;
    if (!absl::SimpleAtoi(lower.substr(5), &index) || index < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("--device=", text, ": the CUDA index must be a whole number >= 0"));
    }
    request.set_kind(v1::DeviceRequest::KIND_CUDA);
    request.set_cuda_index(index);
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("--device=", text, ": use any, cpu, cuda or cuda:N"));
  }
  return request;
}

absl::StatusOr<v1::Precision> ParsePrecision(const std::string& text) {
  const std::string lower = absl::AsciiStrToLower(text);
  if (lower == "fp32") return v1::PRECISION_FP32;
  if (lower == "bf16") return v1::PRECISION_BF16;
  if (lower == "auto") return v1::PRECISION_AUTO;
  return absl::InvalidArgumentError(
      absl::StrCat("--precision=", text, ": use fp32, bf16 or auto"));
}

absl::StatusOr<v1::ExportWeights> ParseExportWeights(const std::string& text) {
  const std::string lower = absl::AsciiStrToLower(text);
  if (lower == "best") return v1::EXPORT_WEIGHTS_BEST;
  if (lower == "final") return v1::EXPORT_WEIGHTS_FINAL;
  return absl::InvalidArgumentError(absl::StrCat("--export=", text, ": use best or final"));
}

absl::Status ParseLabels(const std::vector<std::string>& items, v1::JobSpec* spec) {
  for (const std::string& item : items) {
    if (item.empty()) continue;
    size_t eq = item.find('=');
    if (eq == std::string::npos || eq == 0) {
      return absl::InvalidArgumentError(absl::StrCat("--labels: \"", item, "\" is not key=value"));
    }
    (*spec->mutable_labels())[item.substr(0, eq)] = item.substr(eq + 1);
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::JobState> ParseJobState(const std::string& text) {
  v1::JobState state;
  const std::string upper = absl::AsciiStrToUpper(text);
  if ((!v1::JobState_Parse(upper, &state) &&
       !v1::JobState_Parse(absl::StrCat("JOB_STATE_", upper), &state)) ||
      state == v1::JOB_STATE_UNSPECIFIED) {
    return absl::InvalidArgumentError(
        absl::StrCat("--state: unknown state \"", text,
                     "\" (queued, running, cancelling, succeeded, failed, cancelled)"));
  }
  return state;
}

}  // namespace ftd::client
