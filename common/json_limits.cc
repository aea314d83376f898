#include "common/json_limits.h"

#include <string>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"

namespace ftd {
namespace {

// The payload that marks CheckJsonDepth's error.
constexpr char kTooDeepPayload[] = "type.ftd/json_too_deep";

}  // namespace

absl::Status CheckJsonDepth(std::string_view text, int max_depth) {
  int depth = 0;
  int line = 1;
  // The quote that opened the string being read: protobuf's parser takes
  // strings in single quotes as well as double, so a bracket inside either
  // is text, and one after a lone quote of the other kind is not.
  char quote = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '\n') {
      ++line;
    } else if (quote != 0) {
      if (c == quote) {
        quote = 0;
      } else if (c == '\\' && i + 1 < text.size() && text[i + 1] != '\n') {
        ++i;  // the escaped character, a quote or a backslash included
      }
    } else if (c == '"' || c == '\'') {
      quote = c;
    } else if (c == '[' || c == '{') {
      if (++depth > max_depth) {
        absl::Status status = absl::InvalidArgumentError(
            absl::StrCat("line ", line, ": JSON nested deeper than ", max_depth, " levels"));
        status.SetPayload(kTooDeepPayload, absl::Cord());
        return status;
      }
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;  // unbalanced closers are the parser's to refuse
    }
  }
  return absl::OkStatus();
}

absl::Status ParseJson(std::string_view text, google::protobuf::Message* message,
                       const google::protobuf::util::JsonParseOptions& options, int max_depth) {
  if (absl::Status depth = CheckJsonDepth(text, max_depth); !depth.ok()) return depth;
  const auto parsed = google::protobuf::util::JsonStringToMessage(
      google::protobuf::StringPiece(text.data(), text.size()), message, options);
  if (parsed.ok()) return absl::OkStatus();
  const std::string why = parsed.message().as_string();
  return absl::InvalidArgumentError(why.substr(0, why.find('\n')));
}

bool IsJsonTooDeep(const absl::Status& status) {
  return status.GetPayload(kTooDeepPayload).has_value();
}

}  // namespace ftd
