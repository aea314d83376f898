#include "server/core/model_check.h"

#include <cmath>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "common/fs_util.h"
#include "common/status_macros.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "server/core/error_details.h"

namespace ftd::core {
namespace {

namespace fs = std::filesystem;

// A positive integer `key`, or `fallback` when the config lacks it.
int64_t IntOr(const google::protobuf::Struct& config, const std::string& key, int64_t fallback) {
  auto it = config.fields().find(key);
  if (it == config.fields().end() || !it->second.has_number_value()) return fallback;
  const double v = it->second.number_value();
  return v >= 1 && v <= 1e9 ? static_cast<int64_t>(v) : fallback;
}

absl::StatusOr<int> PositiveInt(const google::protobuf::Struct& config, const std::string& key,
                                const std::string& field, const std::string& file) {
  auto it = config.fields().find(key);
  if (it == config.fields().end() || !it->second.has_number_value()) {
    return InvalidField(field, absl::StrCat(file, " has no number \"", key, "\""));
  }
  double v = it->second.number_value();
  if (!(v >= 1) || v > 1e6 || v != std::floor(v)) {
    return InvalidField(field, absl::StrCat(file, ": \"", key, "\" must be a positive integer"));
  }
  return static_cast<int>(v);
}

}  // namespace

absl::StatusOr<ModelConfig> ReadModelConfig(const std::string& folder, const std::string& field,
                                            const std::string& shown_as) {
  const std::string file = (fs::path(shown_as) / "config.json").string();
  // The files ftd reads must be regular files, not links: a link could lead
  // out of the data roots (and be copied into the job's output).
  for (const char* name :
       {"config.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json",
        "model.safetensors", "model.safetensors.index.json"}) {
    std::error_code ec;
    if (fs::is_symlink(fs::symlink_status(fs::path(folder) / name, ec))) {
      return InvalidField(
          field, absl::StrCat("\"", (fs::path(shown_as) / name).string(),
                              "\" is a symbolic link; ftd reads a model folder's files only as "
                              "regular files (copy the folder with cp -L, or upload it: ftctl "
                              "upload follows links)"));
    }
  }
  absl::StatusOr<std::string> text =
      ReadFileNoFollow((fs::path(folder) / "config.json").string(), kMaxJsonFileBytes);
  if (!text.ok()) {
    return InvalidField(field, absl::StrCat("cannot read config.json: ", text.status().message()));
  }
  google::protobuf::Struct config;
  auto parsed = google::protobuf::util::JsonStringToMessage(*text, &config);
  if (!parsed.ok()) {
    // The parser's first line only: the next ones quote the file.
    const std::string why = parsed.message().as_string();
    return InvalidField(
        field, absl::StrCat(file, " is not a JSON object: ", why.substr(0, why.find('\n'))));
  }
  auto type = config.fields().find("model_type");
  if (type != config.fields().end() && type->second.string_value() != "bert") {
    return InvalidField(field, absl::StrCat(file,
                                            "'s model_type is not \"bert\"; ftd fine-tunes "
                                            "BERT checkpoints"));
  }
  ModelConfig result;
  if (type != config.fields().end()) result.model_type = type->second.string_value();
  ASSIGN_OR_RETURN(result.num_hidden_layers, PositiveInt(config, "num_hidden_layers", field, file));
  ASSIGN_OR_RETURN(result.max_position_embeddings,
                   PositiveInt(config, "max_position_embeddings", field, file));
  ModelShape& shape = result.shape;
  shape.num_hidden_layers = result.num_hidden_layers;
  shape.max_position_embeddings = result.max_position_embeddings;
  shape.hidden_size = IntOr(config, "hidden_size", shape.hidden_size);
  shape.num_attention_heads = IntOr(config, "num_attention_heads", shape.num_attention_heads);
  shape.intermediate_size = IntOr(config, "intermediate_size", 4 * shape.hidden_size);
  shape.vocab_size = IntOr(config, "vocab_size", shape.vocab_size);
  shape.type_vocab_size = IntOr(config, "type_vocab_size", shape.type_vocab_size);
  for (const char* required : {"vocab.txt"}) {
    if (!fs::is_regular_file(fs::path(folder) / required)) {
      return InvalidField(field, absl::StrCat("\"", shown_as, "\" has no ", required));
    }
  }
  if (!fs::is_regular_file(fs::path(folder) / "model.safetensors") &&
      !fs::is_regular_file(fs::path(folder) / "model.safetensors.index.json")) {
    return InvalidField(field, absl::StrCat("\"", shown_as,
                                            "\" has no weights (model.safetensors or "
                                            "model.safetensors.index.json)"));
  }
  return result;
}

}  // namespace ftd::core
