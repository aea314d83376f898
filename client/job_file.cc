#include "client/job_file.h"

#include <filesystem>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/fs_util.h"
#include "common/json_escape.h"
#include "common/json_limits.h"
#include "common/status_macros.h"
#include "yaml-cpp/yaml.h"

namespace ftd::client {
namespace {

namespace fs = std::filesystem;

// The proto type a YAML node is read as: a message's fields, a map's values
// or an enum's names (nothing known: kept as written, the parser decides).
struct NodeType {
  const google::protobuf::Descriptor* message = nullptr;
  const google::protobuf::FieldDescriptor* map_value = nullptr;
  const google::protobuf::EnumDescriptor* enumeration = nullptr;
};

NodeType TypeOf(const google::protobuf::FieldDescriptor* field) {
  NodeType type;
  if (field == nullptr) return type;
  if (field->is_map()) {
    type.map_value = field->message_type()->map_value();
  } else if (field->type() == google::protobuf::FieldDescriptor::TYPE_MESSAGE) {
    type.message = field->message_type();
  } else if (field->type() == google::protobuf::FieldDescriptor::TYPE_ENUM) {
    type.enumeration = field->enum_type();
  }
  return type;
}

const google::protobuf::FieldDescriptor* FindField(const google::protobuf::Descriptor* message,
                                                   const std::string& key) {
  if (message == nullptr) return nullptr;
  const google::protobuf::FieldDescriptor* field = message->FindFieldByName(key);
  return field != nullptr ? field : message->FindFieldByCamelcaseName(key);
}

// An enum value by its name in any case, or without its enum's prefix
// ("csv" for DATASET_FORMAT_CSV, "bf16" for DTYPE_BF16); the text as written
// when no single value matches.
std::string EnumName(const google::protobuf::EnumDescriptor* enumeration, const std::string& v) {
  const std::string upper = absl::AsciiStrToUpper(v);
  if (enumeration->FindValueByName(upper) != nullptr) return upper;
  // The device kind's zero value means any device, as ftctl's --device=any.
  if (enumeration == v1::DeviceRequest::Kind_descriptor() && upper == "ANY") {
    return "KIND_UNSPECIFIED";
  }
  const google::protobuf::EnumValueDescriptor* match = nullptr;
  for (int i = 0; i < enumeration->value_count(); ++i) {
    const std::string& name = enumeration->value(i)->name();
    if (absl::EndsWith(name, absl::StrCat("_", upper))) {
      if (match != nullptr) return v;
      match = enumeration->value(i);
    }
  }
  return match != nullptr ? match->name() : v;
}

// YAML -> JSON text, read as `type`. Plain scalars that read as numbers,
// booleans or null become those; quoted scalars stay strings.
absl::Status ToJson(const YAML::Node& node, const NodeType& type, std::string* out) {
  switch (node.Type()) {
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined:
      *out += "null";
      return absl::OkStatus();
    case YAML::NodeType::Scalar: {
      const std::string& v = node.Scalar();
      if (type.enumeration != nullptr) {
        AppendJsonString(EnumName(type.enumeration, v), out);
        return absl::OkStatus();
      }
      if (node.Tag() == "?") {  // plain, unquoted
        std::string lower = absl::AsciiStrToLower(v);
        double number;
        if (lower == "true" || lower == "false") {
          *out += lower;
          return absl::OkStatus();
        }
        if (lower == "null" || lower == "~") {
          *out += "null";
          return absl::OkStatus();
        }
        if (absl::SimpleAtod(v, &number) && lower.find_first_of("xn") == std::string::npos) {
          *out += v;
          return absl::OkStatus();
        }
      }
      AppendJsonString(v, out);
      return absl::OkStatus();
    }
    case YAML::NodeType::Sequence: {
      *out += "[";
      bool first = true;
      for (const YAML::Node& item : node) {
        if (!first) *out += ",";
        first = false;
        RETURN_IF_ERROR(ToJson(item, type, out));
      }
      *out += "]";
      return absl::OkStatus();
    }
    case YAML::NodeType::Map: {
      *out += "{";
      bool first = true;
      for (const auto& entry : node) {
        if (!first) *out += ",";
        first = false;
        if (!entry.first.IsScalar()) return absl::InvalidArgumentError("a key is not a string");
        AppendJsonString(entry.first.Scalar(), out);
        *out += ":";
        const NodeType child = type.map_value != nullptr
                                   ? TypeOf(type.map_value)
                                   : TypeOf(FindField(type.message, entry.first.Scalar()));
        RETURN_IF_ERROR(ToJson(entry.second, child, out));
      }
      *out += "}";
      return absl::OkStatus();
    }
  }
  return absl::OkStatus();
}

void Resolve(std::string* path, const std::string& base_dir) {
  if (path->empty() || fs::path(*path).is_absolute()) return;
  *path = (fs::path(base_dir) / *path).lexically_normal().string();
}

}  // namespace

absl::StatusOr<v1::JobSpec> ParseJobSpec(const std::string& text, const std::string& source) {
  // A JSON job file's depth is checked before YAML reads it, so that the
  // error names its line (a YAML one is checked once converted, below).
  const size_t start = text.find_first_not_of(" \t\r\n");
  if (start != std::string::npos && (text[start] == '{' || text[start] == '[')) {
    if (absl::Status deep = CheckJsonDepth(text); !deep.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(source, ": ", deep.message()));
    }
  }
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": not valid YAML or JSON: line ", e.mark.line + 1, ": ", e.msg));
  }
  if (!root.IsMap()) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": expected a mapping of job fields"));
  }
  std::string json;
  NodeType spec_type;
  spec_type.message = v1::JobSpec::descriptor();
  absl::Status converted = ToJson(root, spec_type, &json);
  if (!converted.ok())
    return absl::InvalidArgumentError(absl::StrCat(source, ": ", converted.message()));
  google::protobuf::util::JsonParseOptions options;
  options.case_insensitive_enum_parsing = true;
  v1::JobSpec spec;
  const absl::Status parsed = ParseJson(json, &spec, options);
  if (IsJsonTooDeep(parsed)) {
    // The converted text is one line: no line to name.
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": nested deeper than ", kMaxJsonDepth, " levels"));
  }
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": ", parsed.message()));
  }
  return spec;
}

absl::StatusOr<v1::JobSpec> ParseJobFile(const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  ASSIGN_OR_RETURN(v1::JobSpec spec, ParseJobSpec(text, path));
  std::error_code ec;
  ResolvePaths(&spec, fs::absolute(path, ec).parent_path().string());
  return spec;
}

void ResolvePaths(v1::JobSpec* spec, const std::string& base_dir) {
  Resolve(spec->mutable_base_model(), base_dir);
  if (spec->has_train_dataset()) Resolve(spec->mutable_train_dataset()->mutable_path(), base_dir);
  if (spec->has_validation_dataset()) {
    Resolve(spec->mutable_validation_dataset()->mutable_path(), base_dir);
  }
}

}  // namespace ftd::client
