#include "common/enum_names.h"

#include <cctype>

#include "absl/strings/match.h"

namespace ftd {

std::string ShortEnumName(const google::protobuf::EnumDescriptor* type, int value) {
  const google::protobuf::EnumValueDescriptor* found = type->FindValueByNumber(value);
  if (found == nullptr) return "?";
  // "JobState" -> "JOB_STATE_".
  std::string prefix;
  for (char c : type->name()) {
    if (std::isupper(static_cast<unsigned char>(c)) && !prefix.empty()) prefix += '_';
    prefix += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  }
  prefix += '_';
  const std::string& name = found->name();
  return absl::StartsWith(name, prefix) && name.size() > prefix.size() ? name.substr(prefix.size())
                                                                        : name;
}

}  // namespace ftd
