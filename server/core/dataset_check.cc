#include "server/core/dataset_check.h"

#include <sys/stat.h>

#include <algorithm>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "server/training/data/text_dataset.h"

namespace ftd::core {

absl::StatusOr<std::shared_ptr<const DatasetSummary>> DatasetChecker::Read(
    const v1::Dataset& spec) {
  struct stat st;
  if (::stat(spec.path().c_str(), &st) != 0) {
    return absl::InvalidArgumentError(absl::StrCat(training::DatasetName(spec), " cannot be read"));
  }
  const std::string key = absl::StrCat(spec.path(), "\n", spec.format(), "\n", spec.text_column(),
                                       "\n", spec.label_column(), "\n", st.st_size, "\n",
                                       st.st_mtim.tv_sec, ".", st.st_mtim.tv_nsec);
  {
    absl::MutexLock lock(&mu_);
    auto it = summaries_.find(key);
    if (it != summaries_.end()) return it->second;
  }
  absl::StatusOr<training::TextDataset> dataset = training::ReadTextDataset(spec);
  if (!dataset.ok()) return absl::InvalidArgumentError(dataset.status().message());
  auto summary = std::make_shared<DatasetSummary>();
  summary->rows = static_cast<int64_t>(dataset->texts.size());
  for (size_t i = 0; i < dataset->labels.size(); ++i) {
    summary->labels.emplace(dataset->labels[i], dataset->lines[i]);
  }
  absl::MutexLock lock(&mu_);
  if (summaries_.emplace(key, summary).second) {
    order_.push_back(key);
    while (order_.size() > max_files_) {
      summaries_.erase(order_.front());
      order_.pop_front();
    }
  }
  return summary;
}

absl::Status DatasetChecker::CheckLabels(const std::string& validation_name,
                                         const DatasetSummary& validation,
                                         const DatasetSummary& train) {
  int missing = 0;
  int first_line = 0;
  for (const auto& [label, line] : validation.labels) {
    if (train.labels.count(label) > 0) continue;
    ++missing;
    if (first_line == 0 || line < first_line) first_line = line;
  }
  if (missing == 0) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      validation_name, ":", first_line, ": ", missing, missing == 1 ? " label" : " labels",
      " of the validation file (the first on this line) ", missing == 1 ? "is" : "are",
      " not among the training file's ", train.labels.size(), " labels"));
}

}  // namespace ftd::core
