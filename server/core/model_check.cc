#include "server/core/model_check.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "common/fs_util.h"
#include "common/json_limits.h"
#include "common/quote.h"
#include "common/status_macros.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "server/core/error_details.h"
#include "server/training/model/bert_weights.h"
#include "server/training/model/safetensors.h"
#include "server/training/tokenizer/wordpiece_tokenizer.h"

namespace ftd::core {
namespace {

namespace fs = std::filesystem;

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

std::string LinkError(const std::string& shown) {
  return absl::StrCat("\"", shown,
                      "\" is a symbolic link; ftd reads a model folder's files only as regular "
                      "files (copy the folder with cp -L, or upload it: ftctl upload follows "
                      "links)");
}

// How a message names file `name` of the folder: a shard's name is the
// index's, quoted (QuoteUserText) unless it is a plain file name.
std::string ShownFile(const std::string& shown_as, const std::string& name) {
  const bool plain = !name.empty() && name.size() <= kMaxQuotedBytes &&
                     std::all_of(name.begin(), name.end(), [](char c) {
                       return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' ||
                              c == '-' || c == '_';
                     });
  return absl::StrCat(shown_as, "/", plain ? name : QuoteUserText(name));
}

std::string ShapeString(const std::vector<int64_t>& shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    absl::StrAppend(&out, i ? ", " : "", shape[i] == training::kAnyLabels ? "labels" : "",
                    shape[i] == training::kAnyLabels ? "" : absl::StrCat(shape[i]));
  }
  return out + "]";
}

bool ShapeMatches(const std::vector<int64_t>& want, const std::vector<int64_t>& got) {
  if (want.size() != got.size()) return false;
  for (size_t i = 0; i < want.size(); ++i) {
    if (want[i] != training::kAnyLabels && want[i] != got[i]) return false;
  }
  return true;
}

// Checks one weight file as the loader reads it (its header only), adds its
// tensors to `parameters`, and sets `classifier_labels` from a classifier's
// weight.
absl::Status CheckWeightFile(const std::string& folder, const std::string& name,
                             const std::string& field, const std::string& shown_as,
                             const training::BertConfig& config, int64_t* parameters,
                             std::optional<int64_t>* classifier_labels) {
  const std::string path = (fs::path(folder) / name).string();
  const std::string shown = ShownFile(shown_as, name);
  std::error_code ec;
  const fs::file_status status = fs::symlink_status(path, ec);
  if (fs::is_symlink(status)) return InvalidField(field, LinkError(shown));
  if (!fs::exists(status)) {
    // Only a shard can be missing: model.safetensors was found.
    return InvalidField(
        field, absl::StrCat("\"", shown_as, "/model.safetensors.index.json\" names a shard, \"",
                            shown, "\", that the folder does not have"));
  }
  absl::StatusOr<std::unique_ptr<training::SafetensorsFile>> file =
      training::SafetensorsFile::Open(path);
  if (!file.ok()) {
    // Its message names the path (where the daemon may keep an upload) and
    // quotes no more of the header than a bounded tensor name.
    return InvalidField(field, absl::StrReplaceAll(file.status().message(), {{path, shown}}));
  }
  for (const training::TensorInfo& t : (*file)->tensors()) {
    *parameters += t.numel();
    const std::string name_in_model = training::CanonicalWeightName(t.name);
    const std::optional<std::vector<int64_t>> want =
        training::BertWeightShape(config, training::kAnyLabels, name_in_model);
    if (!want.has_value()) continue;  // unused, as the loader leaves it
    // The name quoted is the model's (a name ftd knows), not the file's.
    if (!training::IsLoadableWeightDType(t.dtype)) {
      return InvalidField(field,
                          absl::StrCat(shown, ": the tensor for ", name_in_model, " is ",
                                       training::DTypeName(t.dtype), ", not F32, F16 or BF16"));
    }
    if (!ShapeMatches(*want, t.shape)) {
      return InvalidField(field, absl::StrCat(shown, ": the tensor for ", name_in_model,
                                              " has another shape than the ", ShapeString(*want),
                                              " that config.json gives it"));
    }
    if (!want->empty() && (*want)[0] == training::kAnyLabels && !t.shape.empty()) {
      *classifier_labels = t.shape[0];
    }
  }
  return absl::OkStatus();
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
      return InvalidField(field, LinkError((fs::path(shown_as) / name).string()));
    }
  }
  absl::StatusOr<std::string> text =
      ReadFileNoFollow((fs::path(folder) / "config.json").string(), kMaxJsonFileBytes);
  if (!text.ok()) {
    return InvalidField(field, absl::StrCat("cannot read config.json: ", text.status().message()));
  }
  google::protobuf::Struct config;
  if (absl::Status parsed = ParseJson(*text, &config); !parsed.ok()) {
    const char* why = IsJsonTooDeep(parsed) ? ": " : " is not a JSON object: ";
    return InvalidField(field, absl::StrCat(file, why, parsed.message()));
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
  // Every check the job makes of its config, naming the file as the user
  // knows it.
  absl::StatusOr<training::BertConfig> bert = training::BertConfig::FromJson(config, file);
  if (!bert.ok()) return InvalidField(field, std::string(bert.status().message()));
  result.bert = *std::move(bert);
  ModelShape& shape = result.shape;
  shape.num_hidden_layers = result.num_hidden_layers;
  shape.max_position_embeddings = result.max_position_embeddings;
  shape.hidden_size = result.bert.hidden_size;
  shape.num_attention_heads = result.bert.num_attention_heads;
  shape.intermediate_size = result.bert.intermediate_size;
  shape.vocab_size = result.bert.vocab_size;
  shape.type_vocab_size = result.bert.type_vocab_size;
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

absl::StatusOr<ModelConfig> CheckModelFolder(
    const std::string& folder, const std::string& field, const std::string& shown_as,
    const std::map<std::string, std::string>& file_fields) {
  auto field_of = [&](const std::string& name) {
    auto it = file_fields.find(name);
    return it == file_fields.end() ? field : it->second;
  };
  // Messages from the readers below name the files by their paths; the
  // user knows the folder as `shown_as`.
  auto shown = [&](const absl::Status& status) {
    return absl::StrReplaceAll(status.message(), {{folder, shown_as}});
  };
  ASSIGN_OR_RETURN(ModelConfig config, ReadModelConfig(folder, field, shown_as));

  // The tokenizer, as the job builds it (job_inputs.cc).
  absl::StatusOr<training::WordPieceTokenizer> tokenizer =
      training::WordPieceTokenizer::FromModelFolder(folder);
  if (!tokenizer.ok()) {
    const bool settings = absl::StrContains(tokenizer.status().message(), "tokenizer_config.json");
    return InvalidField(field_of(settings ? "tokenizer_config.json" : "vocab.txt"),
                        shown(tokenizer.status()));
  }
  if (tokenizer->vocab_size() > static_cast<size_t>(config.bert.vocab_size)) {
    return InvalidField(field_of("vocab.txt"),
                        absl::StrCat("\"", (fs::path(shown_as) / "vocab.txt").string(),
                                     "\" has more tokens than config.json's vocab_size"));
  }

  // The weights, as the loader finds them (bert_weights.h).
  absl::StatusOr<std::vector<std::string>> files = training::WeightFileNames(folder, shown_as);
  if (!files.ok())
    return InvalidField(field_of("model.safetensors.index.json"), shown(files.status()));
  for (const std::string& name : *files) {
    RETURN_IF_ERROR(
        CheckWeightFile(folder, name, field_of(name), shown_as, config.bert, &config.parameters,
                        &config.classifier_labels));
  }
  return config;
}

}  // namespace ftd::core
