#include "server/training/model/bert_config.h"

#include <cmath>
#include <filesystem>
#include <map>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/fs_util.h"
#include "common/json_limits.h"
#include "common/status_macros.h"

namespace ftd::training {

absl::StatusOr<BertConfig> BertConfig::FromModelFolder(const std::string& dir) {
  const std::string path = (std::filesystem::path(dir) / "config.json").string();
  ASSIGN_OR_RETURN(std::string text, ReadFileNoFollow(path, kMaxJsonFileBytes));
  google::protobuf::Struct json;
  if (absl::Status parsed = ParseJson(text, &json); !parsed.ok()) {
    return absl::InvalidArgumentError(IsJsonTooDeep(parsed)
                                          ? absl::StrCat(path, ": ", parsed.message())
                                          : absl::StrCat(path, " is not a JSON object"));
  }
  return FromJson(std::move(json), path);
}

absl::StatusOr<BertConfig> BertConfig::FromJson(google::protobuf::Struct json,
                                                const std::string& shown) {
  BertConfig c;
  c.raw = std::move(json);
  const auto& f = c.raw.fields();
  auto bad = [&](const std::string& key, const std::string& why) {
    return absl::InvalidArgumentError(absl::StrCat(shown, ": \"", key, "\" ", why));
  };
  auto type = f.find("model_type");
  if (type != f.end() && type->second.string_value() != "bert") {
    // The value is the file's contents: not repeated.
    return bad("model_type", "is not \"bert\"; ftd fine-tunes bert checkpoints");
  }
  auto get_int = [&](const char* key, int* out, bool required) -> absl::Status {
    auto it = f.find(key);
    if (it == f.end() || it->second.has_null_value()) {
      return required ? bad(key, "is missing") : absl::OkStatus();
    }
    double v = it->second.number_value();
    if (!it->second.has_number_value() || v != std::floor(v) || v < 0 || v > 1e9) {
      return bad(key, "must be a whole number");
    }
    *out = static_cast<int>(v);
    return absl::OkStatus();
  };
  auto get_double = [&](const char* key, double* out) -> absl::Status {
    auto it = f.find(key);
    if (it == f.end() || it->second.has_null_value()) return absl::OkStatus();
    if (!it->second.has_number_value() || !std::isfinite(it->second.number_value())) {
      return bad(key, "must be a number");
    }
    *out = it->second.number_value();
    return absl::OkStatus();
  };
  RETURN_IF_ERROR(get_int("vocab_size", &c.vocab_size, true));
  RETURN_IF_ERROR(get_int("hidden_size", &c.hidden_size, true));
  RETURN_IF_ERROR(get_int("num_hidden_layers", &c.num_hidden_layers, true));
  RETURN_IF_ERROR(get_int("num_attention_heads", &c.num_attention_heads, true));
  RETURN_IF_ERROR(get_int("intermediate_size", &c.intermediate_size, true));
  RETURN_IF_ERROR(get_int("max_position_embeddings", &c.max_position_embeddings, true));
  RETURN_IF_ERROR(get_int("type_vocab_size", &c.type_vocab_size, false));
  RETURN_IF_ERROR(get_int("pad_token_id", &c.pad_token_id, false));
  RETURN_IF_ERROR(get_double("hidden_dropout_prob", &c.hidden_dropout_prob));
  RETURN_IF_ERROR(get_double("attention_probs_dropout_prob", &c.attention_probs_dropout_prob));
  c.classifier_dropout = c.hidden_dropout_prob;
  RETURN_IF_ERROR(get_double("classifier_dropout", &c.classifier_dropout));
  RETURN_IF_ERROR(get_double("initializer_range", &c.initializer_range));
  RETURN_IF_ERROR(get_double("layer_norm_eps", &c.layer_norm_eps));
  for (auto [key, value] : {std::pair<const char*, int>{"vocab_size", c.vocab_size},
                            {"hidden_size", c.hidden_size},
                            {"num_hidden_layers", c.num_hidden_layers},
                            {"num_attention_heads", c.num_attention_heads},
                            {"intermediate_size", c.intermediate_size},
                            {"max_position_embeddings", c.max_position_embeddings},
                            {"type_vocab_size", c.type_vocab_size}}) {
    if (value <= 0) return bad(key, "must be positive");
  }
  if (c.hidden_size % c.num_attention_heads != 0) {
    // (Not the values: they are the file's.)
    return bad("hidden_size", "is not a multiple of \"num_attention_heads\"");
  }
  auto act = f.find("hidden_act");
  if (act != f.end()) c.hidden_act = act->second.string_value();
  if (c.hidden_act != "gelu" && c.hidden_act != "gelu_new" && c.hidden_act != "gelu_pytorch_tanh" &&
      c.hidden_act != "relu") {
    return bad("hidden_act",
               "is none of gelu, gelu_new, gelu_pytorch_tanh, relu (what ftd supports)");
  }
  auto id2label = f.find("id2label");
  if (id2label != f.end() && id2label->second.has_struct_value()) {
    std::map<int, std::string> by_id;
    for (const auto& [k, v] : id2label->second.struct_value().fields()) {
      int id;
      if (!absl::SimpleAtoi(k, &id) || id < 0 || !v.has_string_value())
        return bad("id2label", "is malformed");
      by_id[id] = v.string_value();
    }
    for (int i = 0; i < static_cast<int>(by_id.size()); ++i) {
      if (!by_id.count(i)) return bad("id2label", "does not number its labels 0, 1, ...");
      c.labels.push_back(by_id[i]);
    }
  }
  return c;
}

}  // namespace ftd::training
