#include "server/training/engine/model_exporter.h"

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "common/fs_util.h"
#include "common/status_macros.h"
#include "server/training/model/checkpoint.h"

namespace ftd::training {

namespace fs = std::filesystem;

absl::StatusOr<std::string> ExportModel(const std::string& output_dir,
                                        const std::string& base_model, const BertConfig& config,
                                        const std::vector<std::string>& labels,
                                        BertClassifier& model) {
  const std::string model_dir = (fs::path(output_dir) / "model").string();
  const std::string staged = model_dir + ".staged";
  std::error_code ec;
  fs::remove_all(staged, ec);
  RETURN_IF_ERROR(SaveModel(staged, base_model, config, labels, model));
  RETURN_IF_ERROR(ReplaceFolder(staged, model_dir));
  return model_dir;
}

absl::StatusOr<std::string> ExportMetrics(const std::string& output_dir,
                                          const std::map<std::string, double>& metrics) {
  google::protobuf::Struct out;
  for (const auto& [name, value] : metrics) {
    (*out.mutable_fields())[name].set_number_value(value);
  }
  std::string json;
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  if (!google::protobuf::util::MessageToJsonString(out, &json, options).ok()) {
    return absl::InternalError("cannot encode the metrics as JSON");
  }
  const std::string path = (fs::path(output_dir) / "metrics.json").string();
  RETURN_IF_ERROR(WriteFileAtomically(path, json));
  return path;
}

}  // namespace ftd::training
