// What a job trains on, loaded and checked: the model folder's config and
// tokenizer, the datasets tokenized, the label set.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "ftd/v1/ftd.pb.h"
#include "server/training/data/text_dataset.h"
#include "server/training/engine/encoded_data.h"
#include "server/training/model/bert_config.h"
#include "server/training/trainer.h"

namespace ftd::training {

struct JobInputs {
  BertConfig config;
  std::string config_json;  // config.json as read (part of the cache key and the run digest)
  int32_t pad_id = 0;
  LabelSet labels;
  EncodedData train, validation;
  bool has_validation = false;
  std::string train_fingerprint, validation_fingerprint;  // SHA-256 of the files
};

// Loads the spec's model folder (config, tokenizer) and datasets, records
// their fingerprints on the context and logs what was read. Errors name the
// file or field: INVALID_ARGUMENT for inputs that do not fit (a vocabulary
// larger than the model's, a max_seq_length beyond its positions, a single
// label), and the readers' errors.
absl::StatusOr<JobInputs> LoadJobInputs(TrainingContext& context);

}  // namespace ftd::training
