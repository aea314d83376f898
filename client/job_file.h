// Job files: a JobSpec written as YAML or JSON, with the field names of
// protos/ftd/v1/ftd.proto (snake_case or lowerCamelCase) and enum values by
// name in any case, with or without their prefix (`format: csv` for
// DATASET_FORMAT_CSV). See examples/demo-job.yaml.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "ftd/v1/ftd.pb.h"

namespace ftd::client {

// Parses a job file. Relative paths in it (base_model, dataset paths) are
// taken relative to the file's folder. Errors: INVALID_ARGUMENT naming the
// file and what is wrong; NOT_FOUND when it does not exist.
absl::StatusOr<v1::JobSpec> ParseJobFile(const std::string& path);

// Parses YAML (JSON is YAML too) into a spec; `source` names it in errors.
absl::StatusOr<v1::JobSpec> ParseJobSpec(const std::string& text, const std::string& source);

// Makes the spec's relative paths absolute against `base_dir`.
void ResolvePaths(v1::JobSpec* spec, const std::string& base_dir);

}  // namespace ftd::client
