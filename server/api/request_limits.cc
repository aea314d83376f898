#include "server/api/request_limits.h"

#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/reflection.h"
#include "common/status_macros.h"
#include "server/core/error_details.h"

namespace ftd::api {
namespace {

using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;

// Strings by field name; where the same name means different things in two
// messages, by full name. Keep in step with the table in ftd.proto.
const absl::flat_hash_map<std::string, size_t>& StringLimits() {
  static const auto* const limits = new absl::flat_hash_map<std::string, size_t>{
      // Ids the daemon made ("job-12", "file-3", or an opaque 20-digit one).
      {"job_id", 128},
      {"file_id", 128},
      {"base_model_file_id", 128},
      {"request_id", 128},
      // Tokens the daemon made.
      {"page_token", 256},
      // Paths on the daemon's disk (PATH_MAX).
      {"path", 4096},
      {"base_model", 4096},
      {"text_column", 256},
      {"label_column", 256},
      {"display_name", 256},
      {"order_by", 64},
      {"artifact", 64},
      {"ftd.v1.FileEntry.name", 128},
      {"ftd.v1.FileEntry.sha256", 64},
      // Labels (what the job spec's checks allow: core/job_spec_validator).
      {"ftd.v1.JobSpec.LabelsEntry.key", 63},
      {"ftd.v1.JobSpec.LabelsEntry.value", 256},
      {"ftd.v1.ListJobsRequest.LabelsEntry.key", 63},
      {"ftd.v1.ListJobsRequest.LabelsEntry.value", 256},
      // An upload's data: bounded by the message size (4 MiB).
      {"ftd.v1.UploadFileRequest.chunk", 4 << 20},
      // grpc.health.v1: a service's name.
      {"grpc.health.v1.HealthCheckRequest.service", 256},
  };
  return *limits;
}

const absl::flat_hash_map<std::string, int>& RepeatedLimits() {
  static const auto* const limits = new absl::flat_hash_map<std::string, int>{
      {"ftd.v1.JobSpec.labels", 64},
      {"ftd.v1.ListJobsRequest.labels", 64},
      {"ftd.v1.ListJobsRequest.states", 64},
      {"ftd.v1.UploadFileRequest.Header.entries", 64},
  };
  return *limits;
}

std::string Path(const std::string& parent, const FieldDescriptor& field) {
  return parent.empty() ? field.name() : absl::StrCat(parent, ".", field.name());
}

absl::Status TooLong(const std::string& path, size_t size, size_t limit) {
  return core::InvalidField(
      path, absl::StrCat(size, " bytes, more than its limit of ", limit));
}

absl::Status CheckMessage(const Message& message, const std::string& path);

// One value of `field` (element `index` when repeated).
absl::Status CheckValue(const Message& message, const Reflection& reflection,
                        const FieldDescriptor& field, int index, const std::string& path) {
  const bool repeated = field.is_repeated();
  switch (field.cpp_type()) {
    case FieldDescriptor::CPPTYPE_STRING: {
      std::string scratch;
      const std::string& value =
          repeated ? reflection.GetRepeatedStringReference(message, &field, index, &scratch)
                   : reflection.GetStringReference(message, &field, &scratch);
      const size_t limit = MaxStringBytes(field);
      if (value.size() > limit) return TooLong(path, value.size(), limit);
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_ENUM: {
      const int value = repeated ? reflection.GetRepeatedEnumValue(message, &field, index)
                                 : reflection.GetEnumValue(message, &field);
      if (field.enum_type()->FindValueByNumber(value) == nullptr) {
        return core::InvalidField(
            path, absl::StrCat(value, " is not a value of ", field.enum_type()->name()));
      }
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_MESSAGE: {
      const Message& child = repeated ? reflection.GetRepeatedMessage(message, &field, index)
                                      : reflection.GetMessage(message, &field);
      return CheckMessage(child, path);
    }
    default:
      return absl::OkStatus();
  }
}

absl::Status CheckMessage(const Message& message, const std::string& path) {
  const Reflection& reflection = *message.GetReflection();
  std::vector<const FieldDescriptor*> fields;
  reflection.ListFields(message, &fields);  // the set ones only
  for (const FieldDescriptor* field : fields) {
    const std::string field_path = Path(path, *field);
    if (!field->is_repeated()) {
      absl::Status status = CheckValue(message, reflection, *field, 0, field_path);
      if (!status.ok()) return status;
      continue;
    }
    const int size = reflection.FieldSize(message, field);
    const int limit = MaxRepeated(*field);
    if (size > limit) {
      return core::InvalidField(field_path,
                                absl::StrCat(size, " elements, more than its limit of ", limit));
    }
    for (int i = 0; i < size; ++i) {
      // A map's entries are named by what they hold: "labels[key]",
      // "labels[value]"; a list's by position.
      const std::string element_path =
          field->is_map() ? field_path : absl::StrCat(field_path, "[", i, "]");
      if (field->is_map()) {
        const Message& entry = reflection.GetRepeatedMessage(message, field, i);
        const Reflection& entry_reflection = *entry.GetReflection();
        for (const FieldDescriptor* part :
             {field->message_type()->map_key(), field->message_type()->map_value()}) {
          absl::Status status = CheckValue(entry, entry_reflection, *part, 0,
                                           absl::StrCat(field_path, "[", part->name(), "]"));
          if (!status.ok()) return status;
        }
        continue;
      }
      absl::Status status = CheckValue(message, reflection, *field, i, element_path);
      if (!status.ok()) return status;
    }
  }
  return absl::OkStatus();
}

}  // namespace

size_t MaxStringBytes(const FieldDescriptor& field) {
  const auto& limits = StringLimits();
  if (auto it = limits.find(field.full_name()); it != limits.end()) return it->second;
  if (auto it = limits.find(field.name()); it != limits.end()) return it->second;
  return kDefaultMaxStringBytes;
}

int MaxRepeated(const FieldDescriptor& field) {
  const auto& limits = RepeatedLimits();
  if (auto it = limits.find(field.full_name()); it != limits.end()) return it->second;
  return kDefaultMaxRepeated;
}

absl::Status CheckRequestLimits(const Message& request) {
  // SubmitJob's errors name the spec's fields as the spec's own
  // ("train_dataset.path"), as its other checks do (ftd.proto).
  if (request.GetDescriptor()->full_name() == "ftd.v1.SubmitJobRequest") {
    const FieldDescriptor* spec = request.GetDescriptor()->FindFieldByName("spec");
    const Reflection& reflection = *request.GetReflection();
    if (spec != nullptr && reflection.HasField(request, spec)) {
      RETURN_IF_ERROR(CheckMessage(reflection.GetMessage(request, spec), ""));
    }
    const FieldDescriptor* id = request.GetDescriptor()->FindFieldByName("request_id");
    if (id != nullptr) RETURN_IF_ERROR(CheckValue(request, reflection, *id, 0, "request_id"));
    return absl::OkStatus();
  }
  return CheckMessage(request, "");
}

}  // namespace ftd::api
