// Checks a submitted JobSpec and fills in its defaults: the cheap checks
// that run at submit, before a job is queued.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "ftd/v1/ftd.pb.h"
#include "server/core/dataset_check.h"
#include "server/core/file_manager.h"

namespace ftd::core {

class JobSpecValidator {
 public:
  struct Options {
    // Canonical folders every model and dataset path must lie in (for
    // admins, and for every tenant when tenant_data_roots is empty).
    std::vector<std::string> data_roots;
    // OK when the daemon has devices for the request, this many of them; its
    // error is returned as it is (it names the `device` or `devices` field).
    std::function<absl::Status(const v1::DeviceRequest&, int devices)> check_device;
    // The memory a job with this request may use, in bytes (0: unknown, no
    // check): a job whose estimated need (memory_estimate.h) is larger is
    // refused.
    std::function<int64_t(const v1::DeviceRequest&, int devices)> memory_budget;
    // Uploaded files, which a spec may name by id instead of a path (not
    // owned; nullptr: none).
    const FileManager* files = nullptr;
    // Canonical folders each tenant's paths must lie in instead; a tenant
    // without an entry may name uploads only.
    std::map<std::string, std::vector<std::string>> tenant_data_roots;
    // The daemon's canonical data folder: no path inside it is taken (other
    // tenants' uploads and outputs are there), except a job's outputs under
    // `jobs_dir` (a fine-tuned model as a base model) when the caller may
    // see that job.
    std::string data_dir;
    std::string jobs_dir;
    // The tenant of a stored job. Errors: NOT_FOUND.
    std::function<absl::StatusOr<std::string>(const std::string& job_id)> job_tenant;
  };

  explicit JobSpecValidator(Options options) : options_(std::move(options)) {}

  // Checks `spec` and fills in defaults. Every error is INVALID_ARGUMENT and
  // starts with the field's path ("hyperparameters.epochs: ..."); the first
  // bad field is reported. Checks the model folder as the job will load it
  // (model_check.h's CheckModelFolder: its config, its vocabulary, and its
  // weights' headers, not their bytes), and reads the datasets as the job
  // will (a wrong column or format, an empty file, a malformed row, a
  // validation label the training file lacks), recalling files read before
  // while unchanged.
  // Uploaded files are resolved as `caller` sees them. Thread-safe.
  absl::Status ValidateAndNormalize(v1::JobSpec* spec, const Caller& caller = {}) const;

 private:
  absl::Status CheckPath(const std::string& field, std::string* path, const Caller& caller) const;
  absl::StatusOr<FileManager::Resolved> ResolveFile(const std::string& field,
                                                    const std::string& file_id, v1::FileKind kind,
                                                    const Caller& caller) const;
  absl::Status CheckDataset(const std::string& field, v1::Dataset* dataset,
                            const Caller& caller) const;

  Options options_;
  mutable DatasetChecker datasets_;
};

}  // namespace ftd::core
