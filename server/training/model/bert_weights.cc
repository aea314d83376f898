#include "server/training/model/bert_weights.h"

#include <filesystem>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "common/fs_util.h"
#include "common/status_macros.h"
#include "server/training/model/shard_index.h"

namespace ftd::training {
namespace {

namespace fs = std::filesystem;

void AddLinear(const std::string& prefix, int64_t out, int64_t in, std::vector<WeightShape>* w) {
  w->push_back({prefix + "weight", {out, in}});
  w->push_back({prefix + "bias", {out}});
}

void AddLayerNorm(const std::string& prefix, int64_t size, std::vector<WeightShape>* w) {
  w->push_back({prefix + "weight", {size}});
  w->push_back({prefix + "bias", {size}});
}

constexpr char kLayerPrefix[] = "bert.encoder.layer.";

// One encoder layer's weights, named after "bert.encoder.layer.<i>.".
std::vector<WeightShape> LayerWeightShapes(const BertConfig& c) {
  const int64_t h = c.hidden_size;
  const int64_t i = c.intermediate_size;
  std::vector<WeightShape> w;
  for (const char* part : {"query", "key", "value"}) {
    AddLinear(absl::StrCat("attention.self.", part, "."), h, h, &w);
  }
  AddLinear("attention.output.dense.", h, h, &w);
  AddLayerNorm("attention.output.LayerNorm.", h, &w);
  AddLinear("intermediate.dense.", i, h, &w);
  AddLinear("output.dense.", h, i, &w);
  AddLayerNorm("output.LayerNorm.", h, &w);
  return w;
}

// The weights before the layers and after them.
std::vector<WeightShape> EmbeddingWeightShapes(const BertConfig& c) {
  const int64_t h = c.hidden_size;
  std::vector<WeightShape> w;
  w.push_back({"bert.embeddings.word_embeddings.weight", {c.vocab_size, h}});
  w.push_back({"bert.embeddings.position_embeddings.weight", {c.max_position_embeddings, h}});
  w.push_back({"bert.embeddings.token_type_embeddings.weight", {c.type_vocab_size, h}});
  AddLayerNorm("bert.embeddings.LayerNorm.", h, &w);
  return w;
}

std::vector<WeightShape> HeadWeightShapes(const BertConfig& c, int64_t num_labels) {
  std::vector<WeightShape> w;
  AddLinear("bert.pooler.dense.", c.hidden_size, c.hidden_size, &w);
  AddLinear("classifier.", num_labels, c.hidden_size, &w);
  return w;
}

}  // namespace

std::string CanonicalWeightName(std::string key) {
  for (const char* prefix : {"embeddings.", "encoder.", "pooler."}) {
    if (absl::StartsWith(key, prefix)) key = "bert." + key;
  }
  if (absl::EndsWith(key, "LayerNorm.gamma")) key = key.substr(0, key.size() - 5) + "weight";
  if (absl::EndsWith(key, "LayerNorm.beta")) key = key.substr(0, key.size() - 4) + "bias";
  return key;
}

bool IsLoadableWeightDType(DType dtype) {
  return dtype == DType::kF32 || dtype == DType::kF16 || dtype == DType::kBF16;
}

std::vector<WeightShape> BertWeightShapes(const BertConfig& c, int64_t num_labels) {
  std::vector<WeightShape> w = EmbeddingWeightShapes(c);
  const std::vector<WeightShape> layer = LayerWeightShapes(c);
  for (int i = 0; i < c.num_hidden_layers; ++i) {
    for (const WeightShape& one : layer) {
      w.push_back({absl::StrCat(kLayerPrefix, i, ".", one.name), one.shape});
    }
  }
  for (WeightShape& head : HeadWeightShapes(c, num_labels)) w.push_back(std::move(head));
  return w;
}

std::optional<std::vector<int64_t>> BertWeightShape(const BertConfig& c, int64_t num_labels,
                                                    const std::string& name) {
  auto find = [](const std::vector<WeightShape>& shapes,
                 absl::string_view wanted) -> std::optional<std::vector<int64_t>> {
    for (const WeightShape& w : shapes) {
      if (w.name == wanted) return w.shape;
    }
    return std::nullopt;
  };
  absl::string_view rest = name;
  if (absl::ConsumePrefix(&rest, kLayerPrefix)) {
    // "<i>." with i as the model writes it: no sign, no leading zero.
    const size_t dot = rest.find('.');
    if (dot == absl::string_view::npos || dot == 0 || dot > 9 || (dot > 1 && rest[0] == '0')) {
      return std::nullopt;
    }
    int64_t index = 0;
    for (char d : rest.substr(0, dot)) {
      if (d < '0' || d > '9') return std::nullopt;
      index = index * 10 + (d - '0');
    }
    if (index >= c.num_hidden_layers) return std::nullopt;
    return find(LayerWeightShapes(c), rest.substr(dot + 1));
  }
  if (auto shape = find(EmbeddingWeightShapes(c), name)) return shape;
  return find(HeadWeightShapes(c, num_labels), name);
}

absl::StatusOr<std::vector<std::string>> WeightFileNames(const std::string& dir,
                                                         const std::string& shown) {
  std::error_code ec;
  if (fs::exists(fs::symlink_status(fs::path(dir) / "model.safetensors", ec))) {
    return std::vector<std::string>{"model.safetensors"};
  }
  const fs::path index = fs::path(dir) / "model.safetensors.index.json";
  if (!fs::exists(fs::symlink_status(index, ec))) {
    return absl::NotFoundError(
        absl::StrCat(shown, " has neither model.safetensors nor model.safetensors.index.json"));
  }
  ASSIGN_OR_RETURN(std::string text, ReadFileNoFollow(index.string(), kMaxJsonFileBytes));
  return ParseShardIndex(text, (fs::path(shown) / "model.safetensors.index.json").string());
}

}  // namespace ftd::training
