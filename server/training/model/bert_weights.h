// Which weights a BertClassifier takes from a Hugging Face checkpoint, by
// name, dtype and shape, and which files hold them: without LibTorch, so
// that the loader (checkpoint.cc) and the checks at submit and upload
// (core/model_check.cc) share one list and cannot drift apart.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "server/training/model/bert_config.h"
#include "server/training/model/safetensors.h"

namespace ftd::training {

// The model's name for a checkpoint's key: "bert." added to a key without it
// ("encoder.layer.0..." is "bert.encoder.layer.0..."), LayerNorm's "gamma"
// and "beta" read as "weight" and "bias". Other keys are returned as given.
std::string CanonicalWeightName(std::string key);

// Whether the loader takes a weight of `dtype` (F32, F16, BF16; converted
// to F32).
bool IsLoadableWeightDType(DType dtype);

struct WeightShape {
  std::string name;            // canonical, as BertClassifier names it
  std::vector<int64_t> shape;  // kAnyLabels where the number of labels goes
};
inline constexpr int64_t kAnyLabels = -1;

// BertClassifier(config, num_labels)'s parameters, in its named_parameters()
// order (tests/server/training/bert_model_test.cc checks that they agree).
// `num_labels` kAnyLabels: the classifier's rows are left open (at submit the
// labels are not counted yet).
std::vector<WeightShape> BertWeightShapes(const BertConfig& config, int64_t num_labels);

// The shape BertWeightShapes gives canonical `name`, found without listing
// every layer's weights (a config may claim a million layers); nullopt for
// a name the model does not have (the loader leaves such a tensor unused).
std::optional<std::vector<int64_t>> BertWeightShape(const BertConfig& config, int64_t num_labels,
                                                    const std::string& name);

// The weight files of the checkpoint in folder `dir`, as names in it: its
// model.safetensors when there is one (a symbolic link counts: reading it
// then fails), else the shards its model.safetensors.index.json names (file
// names in the folder, sorted, each once). Errors name the folder `shown`:
// NOT_FOUND when it has neither file; INVALID_ARGUMENT for a malformed
// index; ReadFileNoFollow's (naming the path) when the index cannot be read.
absl::StatusOr<std::vector<std::string>> WeightFileNames(const std::string& dir,
                                                         const std::string& shown);

}  // namespace ftd::training
