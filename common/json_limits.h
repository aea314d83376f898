// Bounds on the JSON that users supply (model folders' config files,
// safetensors headers, JSONL datasets, job files). Protobuf's JSON parser
// takes time quadratic in the nesting depth (a 40 KB row nested 20,000 deep
// costs seconds), so every JSON text goes through ParseJson, which refuses
// a text nested deeper than a limit in one linear pass before the parser
// sees it. Sizes are bounded where each file is read (kMaxJsonFileBytes in
// common/fs_util.h, kMaxJsonlLineBytes in server/training/data/text_dataset.h).
#pragma once

#include <string_view>

#include "absl/status/status.h"
#include "google/protobuf/message.h"
#include "google/protobuf/util/json_util.h"

namespace ftd {

// The deepest nesting of arrays and objects ftd parses. The JSON files it
// reads nest a few levels (a safetensors header three, a config.json two).
// Protobuf's parser refuses a google.protobuf.Struct nested deeper than 33
// objects or 50 arrays itself (100 messages deep), but only after work
// quadratic in the depth of the whole text; this limit comes first.
inline constexpr int kMaxJsonDepth = 64;

// Checks that `text` nests arrays and objects no deeper than `max_depth`
// (`{"a":[1]}` is 2 deep), in one pass without recursion. Brackets inside
// strings (escapes included) do not count. It checks nothing else: text
// that is not JSON passes when it is not too deep. Errors: INVALID_ARGUMENT
// "line 3: JSON nested deeper than 64 levels", naming the (1-based) line of
// the bracket one level too deep; never quoting the text.
absl::Status CheckJsonDepth(std::string_view text, int max_depth = kMaxJsonDepth);

// Parses JSON `text` into `message` (a google.protobuf.Struct for free-form
// JSON) with protobuf's parser, once CheckJsonDepth has passed. Errors:
// INVALID_ARGUMENT, either CheckJsonDepth's (IsJsonTooDeep is true for it)
// or the parser's, with only the first line of its message (the next ones
// quote the text; the first can quote a field or enum name it did not
// know).
absl::Status ParseJson(std::string_view text, google::protobuf::Message* message,
                       const google::protobuf::util::JsonParseOptions& options = {},
                       int max_depth = kMaxJsonDepth);

// True for CheckJsonDepth's error (also as ParseJson returns it), so that a
// caller can tell "too deep" from "not JSON" in its own message.
bool IsJsonTooDeep(const absl::Status& status);

}  // namespace ftd
