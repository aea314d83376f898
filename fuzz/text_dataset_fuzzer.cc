// Fuzzes the CSV and JSONL dataset readers (what a user's training file
// reaches): any bytes either parse or fail with INVALID_ARGUMENT, never
// crash. The first byte picks the format.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "server/training/data/text_dataset.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  ftd::v1::Dataset spec;
  spec.set_path("fuzz");
  spec.set_format((data[0] & 1) != 0 ? ftd::v1::DATASET_FORMAT_JSONL : ftd::v1::DATASET_FORMAT_CSV);
  spec.set_text_column("text");
  spec.set_label_column("label");
  const std::string_view content(reinterpret_cast<const char*>(data) + 1, size - 1);
  absl::StatusOr<ftd::training::TextDataset> dataset = ftd::training::ParseTextDataset(spec, content);
  if (dataset.ok()) {
    if (dataset->texts.size() != dataset->labels.size() ||
        dataset->texts.size() != dataset->lines.size()) {
      __builtin_trap();
    }
    ftd::training::LabelSet labels = ftd::training::LabelSet::FromLabels(dataset->labels);
    if (!labels.Encode(*dataset).ok()) __builtin_trap();  // its own labels always encode
  } else if (dataset.status().code() != absl::StatusCode::kInvalidArgument) {
    __builtin_trap();
  }
  return 0;
}
