// ModelExporter: a finished job's artifacts, each written atomically (a
// reader or a crash sees the old version or the new one, never a part):
//   <output_dir>/model/        the Hugging Face folder (config with the
//                              labels, tokenizer files, model.safetensors)
//   <output_dir>/metrics.json  the result's metrics, as JSON
#pragma once

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "server/training/model/bert_config.h"
#include "server/training/model/bert_model.h"

namespace ftd::training {

// Writes the model to a staging folder beside <output_dir>/model, syncs it
// and renames it into place. Returns the model folder. The model must be on
// the CPU.
absl::StatusOr<std::string> ExportModel(const std::string& output_dir,
                                        const std::string& base_model, const BertConfig& config,
                                        const std::vector<std::string>& labels,
                                        BertClassifier& model);

// Writes <output_dir>/metrics.json (an object of numbers). Returns its path.
absl::StatusOr<std::string> ExportMetrics(const std::string& output_dir,
                                          const std::map<std::string, double>& metrics);

}  // namespace ftd::training
