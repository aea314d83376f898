// Text classification datasets: CSV (RFC 4180, UTF-8, header row) or JSONL
// (one JSON object a line), with a text and a label column.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "ftd/v1/ftd.pb.h"

namespace ftd::training {

// The most of a dataset file ftd reads: its size, its rows, the fields of a
// CSV record, the bytes of a JSONL line, and (for an uploaded file's
// description) the length of a column's name. Past them a dataset is
// refused with INVALID_ARGUMENT naming the file and the limit, so that what
// one submission or upload makes the daemon hold is bounded (a file of
// short fields or deep JSON costs many times its size in memory).
inline constexpr int64_t kMaxDatasetBytes = int64_t{2000} << 20;
inline constexpr int64_t kMaxDatasetRows = 20'000'000;
inline constexpr size_t kMaxDatasetColumns = 1000;
inline constexpr size_t kMaxJsonlLineBytes = size_t{4} << 20;
inline constexpr size_t kMaxColumnNameBytes = 256;

struct TextDataset {
  // The file as errors name it (DatasetName).
  std::string name;
  std::vector<std::string> texts;
  std::vector<std::string> labels;
  // Line (1-based) where each row starts, for error messages.
  std::vector<int> lines;
  // SHA-256 of the file's bytes.
  std::string fingerprint;
};

// A dataset file's size and columns, whichever of them a job will use.
struct DatasetShape {
  int64_t rows = 0;
  // The header's columns (CSV), or the keys of the first row (JSONL).
  std::vector<std::string> columns;
};

// Parses a dataset file's bytes (named `name` in errors) as `format`:
// UTF-8, rows of as many fields as the header (CSV) or JSON objects (JSONL),
// at least one row. Errors as ParseTextDataset's.
absl::StatusOr<DatasetShape> DescribeTextDataset(v1::DatasetFormat format, const std::string& name,
                                                 std::string_view content);

// The dataset as messages name it: its path, or for an uploaded dataset
// (file_id) "file-3 (train.csv)", not where the daemon keeps it.
std::string DatasetName(const v1::Dataset& spec);

// Reads `spec` (format and columns already filled in by validation). Errors
// are INVALID_ARGUMENT and name the file, the line and the reason: an empty
// file, a missing column, a malformed row, an unterminated quote, an empty
// label, invalid UTF-8 or JSON. They never quote the file's contents (its
// rows, header names or labels), which may be private.
absl::StatusOr<TextDataset> ReadTextDataset(const v1::Dataset& spec);

// The same, of a file's bytes already read.
absl::StatusOr<TextDataset> ParseTextDataset(const v1::Dataset& spec, std::string_view content);

// The label set: the training file's labels, sorted, numbered from 0.
class LabelSet {
 public:
  // Takes the order of `preferred` when it names exactly the same labels
  // (a checkpoint's label2id), else sorted order.
  static LabelSet FromLabels(const std::vector<std::string>& labels,
                             const std::vector<std::string>& preferred = {});

  // Ids of `dataset`'s labels. Errors: INVALID_ARGUMENT naming the file and
  // line of the first label that is not in the set.
  absl::StatusOr<std::vector<int64_t>> Encode(const TextDataset& dataset) const;

  const std::vector<std::string>& names() const { return names_; }
  size_t size() const { return names_.size(); }

 private:
  std::vector<std::string> names_;
  std::map<std::string, int64_t> ids_;
};

}  // namespace ftd::training
