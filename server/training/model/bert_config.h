// A BERT checkpoint's config.json.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "google/protobuf/struct.pb.h"

namespace ftd::training {

struct BertConfig {
  int vocab_size = 0;
  int hidden_size = 0;
  int num_hidden_layers = 0;
  int num_attention_heads = 0;
  int intermediate_size = 0;
  std::string hidden_act = "gelu";
  double hidden_dropout_prob = 0.1;
  double attention_probs_dropout_prob = 0.1;
  // Dropout before the classifier; hidden_dropout_prob when unset.
  double classifier_dropout = 0.1;
  int max_position_embeddings = 0;
  int type_vocab_size = 2;
  double initializer_range = 0.02;
  double layer_norm_eps = 1e-12;
  int pad_token_id = 0;
  // id2label in id order, when the checkpoint has one (a fine-tuned model).
  std::vector<std::string> labels;
  // The whole file, to write back with the fine-tuned labels.
  google::protobuf::Struct raw;

  // Reads <dir>/config.json. Errors name the file and the field:
  // INVALID_ARGUMENT for a model_type other than bert, a missing or
  // non-positive size, hidden_size not divisible by the heads, an unknown
  // hidden_act.
  static absl::StatusOr<BertConfig> FromModelFolder(const std::string& dir);
  // The same checks of a parsed config.json, whose errors name it `shown`
  // (the submit and upload checks, core/model_check.cc, name the file as the
  // user named it). Messages never quote the file's values.
  static absl::StatusOr<BertConfig> FromJson(google::protobuf::Struct json,
                                             const std::string& shown);
};

}  // namespace ftd::training
