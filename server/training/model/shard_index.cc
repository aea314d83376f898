#include "server/training/model/shard_index.h"

#include <set>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "common/fs_util.h"
#include "common/json_limits.h"
#include "google/protobuf/struct.pb.h"

namespace ftd::training {

absl::StatusOr<std::vector<std::string>> ParseShardIndex(absl::string_view text,
                                                         const std::string& shown) {
  if (static_cast<int64_t>(text.size()) > kMaxJsonFileBytes) {
    return absl::InvalidArgumentError(absl::StrCat(shown, " is larger than ",
                                                   kMaxJsonFileBytes >> 20,
                                                   " MiB, the most ftd reads of a JSON file"));
  }
  google::protobuf::Struct index;
  const absl::Status parsed = ParseJson(std::string_view(text.data(), text.size()), &index);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(IsJsonTooDeep(parsed)
                                          ? absl::StrCat(shown, ": ", parsed.message())
                                          : absl::StrCat(shown, " is not a JSON object"));
  }
  auto map = index.fields().find("weight_map");
  if (map == index.fields().end() || !map->second.has_struct_value()) {
    return absl::InvalidArgumentError(absl::StrCat(shown, " has no \"weight_map\" object"));
  }
  std::set<std::string> shards;
  for (const auto& [tensor, file] : map->second.struct_value().fields()) {
    const std::string& name = file.string_value();
    if (!file.has_string_value() || name.empty() || name == "." || name == ".." ||
        name.find('/') != std::string::npos || name.find('\0') != std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat(shown, ": \"weight_map\" maps a tensor to something not a file name in "
                              "the model's folder"));
    }
    shards.insert(name);
  }
  if (shards.empty()) return absl::InvalidArgumentError(absl::StrCat(shown, " names no shard"));
  return std::vector<std::string>(shards.begin(), shards.end());
}

}  // namespace ftd::training
