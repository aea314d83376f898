// Enum values as people read them: without their enum's prefix (QUEUED for
// JOB_STATE_QUEUED, CSV for DATASET_FORMAT_CSV), for messages, logs and the
// client's tables. Structured fields (ErrorInfo metadata, JSON) keep the
// full names.
#pragma once

#include <string>

#include "google/protobuf/descriptor.h"
#include "google/protobuf/generated_enum_reflection.h"

namespace ftd {

// The value's name without the enum's upper-snake name and '_' before it;
// "?" for a value the enum does not have.
std::string ShortEnumName(const google::protobuf::EnumDescriptor* type, int value);

template <typename Enum>
std::string ShortName(Enum value) {
  return ShortEnumName(google::protobuf::GetEnumDescriptor<Enum>(), static_cast<int>(value));
}

}  // namespace ftd
