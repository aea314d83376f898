#include "server/training/model/checkpoint.h"

#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/fs_util.h"
#include "common/quote.h"
#include "common/status_macros.h"
#include "google/protobuf/util/json_util.h"
#include "server/training/model/bert_weights.h"

namespace ftd::training {
namespace {

namespace fs = std::filesystem;

std::string ShapeString(at::IntArrayRef shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

// The weight files' paths (bert_weights.h's WeightFileNames, which the
// checks at submit and upload use too).
absl::StatusOr<std::vector<std::string>> WeightFiles(const std::string& dir) {
  ASSIGN_OR_RETURN(std::vector<std::string> files, WeightFileNames(dir, dir));
  for (std::string& file : files) file = (fs::path(dir) / file).string();
  return files;
}

}  // namespace

absl::StatusOr<torch::Tensor> ToTensor(const SafetensorsFile& file, const TensorInfo& info) {
  torch::ScalarType type;
  switch (info.dtype) {
    case DType::kF64:
      type = torch::kDouble;
      break;
    case DType::kF32:
      type = torch::kFloat;
      break;
    case DType::kF16:
      type = torch::kHalf;
      break;
    case DType::kBF16:
      type = torch::kBFloat16;
      break;
    case DType::kI64:
      type = torch::kLong;
      break;
    case DType::kI32:
      type = torch::kInt;
      break;
    case DType::kI16:
      type = torch::kShort;
      break;
    case DType::kI8:
      type = torch::kChar;
      break;
    case DType::kU8:
      type = torch::kByte;
      break;
    case DType::kBool:
      type = torch::kBool;
      break;
    default:
      return absl::UnimplementedError(absl::StrCat(
          file.path(), ": tensor ", QuoteUserText(info.name), " has an unsupported dtype"));
  }
  torch::Tensor tensor = torch::empty(info.shape, torch::TensorOptions().dtype(type));
  // Read, not copied from the mapping: the file may be a user's, who could
  // truncate it meanwhile.
  RETURN_IF_ERROR(file.Read(info, tensor.data_ptr()));
  return tensor;
}

absl::StatusOr<LoadReport> LoadWeights(const std::string& dir, const BertConfig& config,
                                       BertClassifier& model, uint64_t init_seed) {
  ASSIGN_OR_RETURN(std::vector<std::string> files, WeightFiles(dir));
  std::map<std::string, torch::Tensor> params;
  for (auto& item : model->named_parameters()) params[item.key()] = item.value();
  std::set<std::string> loaded;
  LoadReport report;
  torch::NoGradGuard no_grad;
  for (const std::string& path : files) {
    absl::StatusOr<std::unique_ptr<SafetensorsFile>> file = SafetensorsFile::Open(path);
    if (!file.ok()) return file.status();
    for (const TensorInfo& info : (*file)->tensors()) {
      const std::string key = CanonicalWeightName(info.name);
      auto it = params.find(key);
      if (it == params.end()) {
        report.unused.push_back(info.name);
        continue;
      }
      if (!IsLoadableWeightDType(info.dtype)) {
        return absl::InvalidArgumentError(absl::StrCat(path, ": tensor ", QuoteUserText(info.name),
                                                       " is ", DTypeName(info.dtype),
                                                       ", not F32, F16 or BF16"));
      }
      if (std::vector<int64_t>(it->second.sizes().begin(), it->second.sizes().end()) !=
          info.shape) {
        return absl::InvalidArgumentError(absl::StrCat(
            path, ": tensor ", QuoteUserText(info.name), " has shape ", ShapeString(info.shape),
            " but the model (from config.json) needs ", ShapeString(it->second.sizes())));
      }
      ASSIGN_OR_RETURN(torch::Tensor tensor, ToTensor(**file, info));
      it->second.copy_(tensor.to(torch::kFloat));
      loaded.insert(key);
    }
  }
  for (const auto& [name, tensor] : params) {
    if (!loaded.count(name)) report.initialized.push_back(name);
  }
  InitializeParameters(model, config, report.initialized, init_seed);
  return report;
}

absl::Status SaveModel(const std::string& out_dir, const std::string& base_dir,
                       const BertConfig& config, const std::vector<std::string>& labels,
                       BertClassifier& model) {
  std::error_code ec;
  fs::create_directories(out_dir, ec);
  if (ec)
    return absl::UnavailableError(absl::StrCat("cannot create ", out_dir, ": ", ec.message()));

  google::protobuf::Struct out = config.raw;
  auto& f = *out.mutable_fields();
  f["architectures"].mutable_list_value()->clear_values();
  f["architectures"].mutable_list_value()->add_values()->set_string_value(
      "BertForSequenceClassification");
  f["model_type"].set_string_value("bert");
  f["problem_type"].set_string_value("single_label_classification");
  auto* id2label = f["id2label"].mutable_struct_value()->mutable_fields();
  auto* label2id = f["label2id"].mutable_struct_value()->mutable_fields();
  id2label->clear();
  label2id->clear();
  for (size_t i = 0; i < labels.size(); ++i) {
    (*id2label)[std::to_string(i)].set_string_value(labels[i]);
    (*label2id)[labels[i]].set_number_value(static_cast<double>(i));
  }
  std::string json;
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  options.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(out, &json, options);
  {
    std::ofstream file(fs::path(out_dir) / "config.json", std::ios::trunc);
    file << json;
    if (!file)
      return absl::UnavailableError(absl::StrCat("cannot write ", out_dir, "/config.json"));
  }
  // The tokenizer's files, read as regular files only: a symbolic link
  // (planted after the folder was checked) is not followed into the output,
  // where a download would serve what it points at.
  for (const char* name : {"vocab.txt", "tokenizer_config.json", "special_tokens_map.json"}) {
    const fs::path from = fs::path(base_dir) / name;
    if (!fs::exists(fs::symlink_status(from, ec))) continue;
    absl::StatusOr<std::string> content = ReadFileNoFollow(from.string());
    if (!content.ok()) return content.status();
    std::ofstream file(fs::path(out_dir) / name, std::ios::binary | std::ios::trunc);
    file << *content;
    if (!file) return absl::UnavailableError(absl::StrCat("cannot write ", out_dir, "/", name));
  }

  std::vector<torch::Tensor> keep;  // owns the bytes while writing
  std::vector<TensorToWrite> tensors;
  for (auto& item : model->named_parameters()) {
    torch::Tensor t = item.value().detach().to(torch::kCPU, torch::kFloat).contiguous();
    keep.push_back(t);
    tensors.push_back({item.key(), DType::kF32,
                       std::vector<int64_t>(t.sizes().begin(), t.sizes().end()),
                       std::string_view(static_cast<const char*>(t.data_ptr()),
                                        static_cast<size_t>(t.numel()) * sizeof(float))});
  }
  return WriteSafetensors((fs::path(out_dir) / "model.safetensors").string(), tensors,
                          {{"format", "pt"}});
}

}  // namespace ftd::training
