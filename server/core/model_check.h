// What the daemon reads of a Hugging Face BERT checkpoint's folder before
// a job uses it: its config.json, and that its vocabulary and weights are
// there. Shared by submit's checks and by model uploads.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "server/core/memory_estimate.h"

namespace ftd::core {

// What the submit checks need from a checkpoint's config.json.
struct ModelConfig {
  std::string model_type;  // "bert", or empty when the config does not say
  int num_hidden_layers = 0;
  int max_position_embeddings = 0;
  ModelShape shape;  // for the memory estimate
};

// Reads `folder`'s config.json (a BERT model's: model_type "bert" or none,
// positive num_hidden_layers and max_position_embeddings) and checks that
// vocab.txt and the weights (model.safetensors or its index) are there.
// Errors: INVALID_ARGUMENT on `field`, naming the folder as `shown_as`.
absl::StatusOr<ModelConfig> ReadModelConfig(const std::string& folder, const std::string& field,
                                            const std::string& shown_as);

}  // namespace ftd::core
