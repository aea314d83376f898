#include "server/training/parallel/step_agreement.h"

#include <torch/torch.h>

#include <array>
#include <cstdint>

#include "absl/strings/str_cat.h"

namespace ftd::training::parallel {
namespace {

// The reasons a broadcast carries, by code (0: none).
constexpr std::array<const char*, 8> kReasons = {"",       "shutdown", "preemption", "shrink",
                                                 "freeze", "steps",    "interval",   "epoch"};

absl::StatusOr<int64_t> Code(const std::string& reason) {
  for (size_t i = 0; i < kReasons.size(); ++i) {
    if (reason == kReasons[i]) return static_cast<int64_t>(i);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("no replica-wide code for the reason \"", reason, "\""));
}

std::string Reason(int64_t code) {
  return code >= 0 && code < static_cast<int64_t>(kReasons.size()) ? kReasons[code] : "";
}

}  // namespace

absl::StatusOr<StepControl> StepAgreement::Agree(const StepControl& mine) {
  if (group_.alone()) return mine;
  torch::Tensor message = torch::zeros({3}, torch::kLong);
  if (group_.rank() == 0) {
    auto* m = message.data_ptr<int64_t>();
    m[0] = static_cast<int64_t>(mine.stop);
    absl::StatusOr<int64_t> stop_reason = Code(mine.stop_reason);
    absl::StatusOr<int64_t> checkpoint = Code(mine.checkpoint);
    if (!stop_reason.ok()) return stop_reason.status();
    if (!checkpoint.ok()) return checkpoint.status();
    m[1] = *stop_reason;
    m[2] = *checkpoint;
  }
  if (absl::Status s = group_.Broadcast(message, 0); !s.ok()) return s;
  const auto* m = message.data_ptr<int64_t>();
  StepControl agreed;
  agreed.stop = m[0] == 1   ? StepControl::Stop::kCancel
                : m[0] == 2 ? StepControl::Stop::kForLater
                            : StepControl::Stop::kNone;
  agreed.stop_reason = Reason(m[1]);
  agreed.checkpoint = Reason(m[2]);
  return agreed;
}

absl::StatusOr<int64_t> StepAgreement::AgreeNumber(int64_t mine) {
  if (group_.alone()) return mine;
  torch::Tensor message = torch::full({1}, mine, torch::kLong);
  if (absl::Status s = group_.Broadcast(message, 0); !s.ok()) return s;
  return message.item<int64_t>();
}

}  // namespace ftd::training::parallel
