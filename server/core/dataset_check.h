// What submit learns of a job's dataset by reading it, so that a wrong
// column, a CSV declared as JSONL, an empty file or a validation label the
// training set lacks is refused at once, not when the job starts behind a
// queue. A file read once is recalled while it is unchanged.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "ftd/v1/ftd.pb.h"

namespace ftd::core {

struct DatasetSummary {
  int64_t rows = 0;
  // Each label and the line it first appears on.
  std::map<std::string, int> labels;
};

class DatasetChecker {
 public:
  // Remembers the summaries of at most `max_files` files.
  explicit DatasetChecker(size_t max_files = 32) : max_files_(max_files) {}

  // Reads and parses `spec` (its format and columns filled in) as a job
  // would, or recalls it when the same file (path, size and modification
  // time) was read with the same format and columns. Errors:
  // INVALID_ARGUMENT naming the file, the line and the reason, never its
  // contents.
  absl::StatusOr<std::shared_ptr<const DatasetSummary>> Read(const v1::Dataset& spec);

  // OK when every label of `validation` is among `train`'s; else
  // INVALID_ARGUMENT naming the file, how many labels are missing and the
  // line of the first.
  static absl::Status CheckLabels(const std::string& validation_name,
                                  const DatasetSummary& validation, const DatasetSummary& train);

 private:
  const size_t max_files_;
  absl::Mutex mu_;
  std::map<std::string, std::shared_ptr<const DatasetSummary>> summaries_ ABSL_GUARDED_BY(mu_);
  std::deque<std::string> order_ ABSL_GUARDED_BY(mu_);  // oldest first
};

}  // namespace ftd::core
