#include "server/training/engine/job_inputs.h"

#include <filesystem>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/fs_util.h"
#include "common/status_macros.h"
#include "server/training/tokenizer/wordpiece_tokenizer.h"

namespace ftd::training {

absl::StatusOr<JobInputs> LoadJobInputs(TrainingContext& context) {
  const v1::JobSpec& spec = context.spec();
  const v1::Hyperparameters& hp = spec.hyperparameters();
  JobInputs in;

  // Model folder: config, tokenizer.
  ASSIGN_OR_RETURN(in.config, BertConfig::FromModelFolder(spec.base_model()));
  ASSIGN_OR_RETURN(
      in.config_json,
      ReadFileNoFollow((std::filesystem::path(spec.base_model()) / "config.json").string(),
                       kMaxJsonFileBytes));
  ASSIGN_OR_RETURN(WordPieceTokenizer tokenizer,
                   WordPieceTokenizer::FromModelFolder(spec.base_model()));
  if (tokenizer.vocab_size() > static_cast<size_t>(in.config.vocab_size)) {
    return absl::InvalidArgumentError(
        absl::StrCat(spec.base_model(), ": vocab.txt has ", tokenizer.vocab_size(),
                     " tokens but config.json's vocab_size is ", in.config.vocab_size));
  }
  in.pad_id = tokenizer.pad_id();
  // Checked at submit too; the model folder may have changed since.
  if (hp.max_seq_length() > in.config.max_position_embeddings) {
    return absl::InvalidArgumentError(
        absl::StrCat("hyperparameters.max_seq_length: ", hp.max_seq_length(), " is more than ",
                     spec.base_model(), "/config.json's max_position_embeddings (",
                     in.config.max_position_embeddings, ")"));
  }

  // Data.
  ASSIGN_OR_RETURN(TextDataset train, ReadTextDataset(spec.train_dataset()));
  context.RecordFingerprint("train", train.fingerprint);
  in.train_fingerprint = train.fingerprint;
  in.labels = LabelSet::FromLabels(train.labels, in.config.labels);
  if (in.labels.size() < 2) {
    // (Not the label itself: a file's contents stay out of messages.)
    return absl::InvalidArgumentError(
        absl::StrCat(train.name, ": every row has the same label; a classifier needs two or more"));
  }
  ASSIGN_OR_RETURN(std::vector<int64_t> train_labels, in.labels.Encode(train));
  in.train = Encode(tokenizer, train, std::move(train_labels), hp.max_seq_length());
  if (spec.has_validation_dataset()) {
    ASSIGN_OR_RETURN(TextDataset valid, ReadTextDataset(spec.validation_dataset()));
    context.RecordFingerprint("validation", valid.fingerprint);
    ASSIGN_OR_RETURN(std::vector<int64_t> valid_labels, in.labels.Encode(valid));
    in.validation = Encode(tokenizer, valid, std::move(valid_labels), hp.max_seq_length());
    in.validation_fingerprint = valid.fingerprint;
    in.has_validation = true;
  }
  v1::JobEvent event;
  event.mutable_log()->set_level(v1::JobEvent::Log::LEVEL_INFO);
  event.mutable_log()->set_message(absl::StrCat(
      "data: ", in.train.ids.size(), " training rows",
      in.has_validation ? absl::StrCat(", ", in.validation.ids.size(), " validation rows") : "",
      ", ", in.labels.size(), " labels"));
  context.Emit(std::move(event));
  return in;
}

}  // namespace ftd::training
