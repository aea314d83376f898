// What a caller may send, checked before anything else reads a request:
// every string and bytes field has a length limit, every repeated field
// (maps included) a count, and every enum field must hold a value its enum
// names. The limits are listed in protos/ftd/v1/ftd.proto's comments; a
// field the table does not name gets the defaults below, so a field added
// later is bounded too.
//
// Errors name the field and its limit, never what was sent: a string of a
// megabyte gets back a message of a few dozen bytes.
#pragma once

#include <cstddef>

#include "absl/status/status.h"
#include "google/protobuf/message.h"

namespace ftd::api {

// A string or bytes field not in the table.
inline constexpr size_t kDefaultMaxStringBytes = 1024;
// A repeated field not in the table.
inline constexpr int kDefaultMaxRepeated = 1000;

// The limit of the string (or bytes) field `field`: by its full name
// ("ftd.v1.FileEntry.name") or, failing that, its own name ("job_id").
size_t MaxStringBytes(const google::protobuf::FieldDescriptor& field);
// The most elements the repeated field `field` may hold.
int MaxRepeated(const google::protobuf::FieldDescriptor& field);

// OK, or INVALID_ARGUMENT (reason INVALID_FIELD) naming the first field,
// by its path in the request ("page_token", "labels[key]"; SubmitJob's by
// their path in the spec, "train_dataset.path"), that is over its limit or
// holds an enum value its enum does not name. Linear in the request's size.
absl::Status CheckRequestLimits(const google::protobuf::Message& request);

}  // namespace ftd::api
