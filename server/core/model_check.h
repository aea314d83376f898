// What the daemon checks of a Hugging Face BERT checkpoint's folder before
// a job uses it: what the job's loading would refuse (its config, its
// vocabulary, its weights' headers). One check for submit's and uploads'.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "server/core/memory_estimate.h"
#include "server/training/model/bert_config.h"

namespace ftd::core {

// What the submit checks need from a checkpoint's config.json.
struct ModelConfig {
  std::string model_type;  // "bert", or empty when the config does not say
  int num_hidden_layers = 0;
  int max_position_embeddings = 0;
  ModelShape shape;           // for the memory estimate
  training::BertConfig bert;  // the whole config, as the job reads it
  // The tensors in its weight files (set by CheckModelFolder).
  int64_t parameters = 0;
  // The labels its classifier's weights are for, when the files have them
  // (a fine-tuned checkpoint): a job on it must have as many.
  std::optional<int64_t> classifier_labels;
};

// Reads `folder`'s config.json (a BERT model's: model_type "bert" or none,
// and every check the job makes of it, training::BertConfig's: the sizes
// positive, hidden_size a multiple of num_attention_heads, ...) and checks
// that vocab.txt and the weights (model.safetensors or its index) are there.
// Errors: INVALID_ARGUMENT on `field`, naming the folder as `shown_as`.
absl::StatusOr<ModelConfig> ReadModelConfig(const std::string& folder, const std::string& field,
                                            const std::string& shown_as);

// What a job will find wrong when it loads the model in `folder`, found
// now, at submit and at upload: ReadModelConfig's checks; the tokenizer's
// (vocab.txt non-empty with [PAD], [UNK], [CLS] and [SEP], at most
// config.json's vocab_size tokens; tokenizer_config.json a JSON object); and
// the weights' as the loader reads them: model.safetensors, or else the
// index and every shard it names (a plain file name in the folder), each a
// regular file (not a link), with a valid safetensors header (only the
// header is read) and each tensor the model takes by name
// (training::BertWeightShape, with or without "bert.", LayerNorm gamma/beta)
// of dtype F32, F16 or BF16 and of the shape config.json gives it. A weight
// the files lack is not an error: the job initialises it, as the loader
// does. Sets `parameters`.
// Errors: INVALID_ARGUMENT on `field`, or on file_fields[name] for a file of
// the folder that has its own field ("header.entries[2]"), naming the file
// as `shown_as`/name and never quoting its contents.
absl::StatusOr<ModelConfig> CheckModelFolder(
    const std::string& folder, const std::string& field, const std::string& shown_as,
    const std::map<std::string, std::string>& file_fields = {});

}  // namespace ftd::core
