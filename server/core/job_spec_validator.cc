#include "server/core/job_spec_validator.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/enum_names.h"
#include "common/fs_util.h"
#include "common/status_macros.h"
#include "common/quote.h"
#include "common/utf8.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "server/core/error_details.h"
#include "server/core/memory_estimate.h"
#include "server/core/model_check.h"
#include "server/training/data/text_dataset.h"

namespace ftd::core {
namespace {

namespace fs = std::filesystem;

constexpr int kMaxEpochs = 1000;
constexpr int kMaxBatchSize = 4096;
constexpr int kMaxPriority = 1000;
// A job's devices: far more than one machine has, a bound on what one
// request makes the scheduler look at.
constexpr int kMaxDevices = 1024;
constexpr int kMaxLabels = 64;
constexpr size_t kMaxLabelKey = 63;
constexpr size_t kMaxLabelValue = 256;
constexpr size_t kMaxDisplayName = 200;

absl::Status Invalid(const std::string& field, const std::string& reason) {
  return InvalidField(field, reason);
}

bool ValidLabelKey(const std::string& key) {
  if (key.empty() || key.size() > kMaxLabelKey) return false;
  if (!absl::ascii_isalnum(static_cast<unsigned char>(key.front()))) return false;
  for (char c : key) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.' &&
        c != '/') {
      return false;
    }
  }
  return true;
}

std::string Bytes(int64_t bytes) {
  if (bytes >= (int64_t{1} << 30)) return absl::StrFormat("%.1f GiB", bytes / 1073741824.0);
  return absl::StrFormat("%.0f MiB", bytes / 1048576.0);
}

}  // namespace

absl::Status JobSpecValidator::CheckPath(const std::string& field, std::string* path,
                                         const Caller& caller) const {
  if (path->empty()) return Invalid(field, "is required");
  // Canonical: symbolic links and ".." resolved, so neither leads out.
  absl::StatusOr<std::string> canonical = CanonicalPath(*path);
  const bool per_tenant = !caller.admin && !options_.tenant_data_roots.empty();
  std::vector<std::string> roots = options_.data_roots;
  if (per_tenant) {
    auto it = options_.tenant_data_roots.find(caller.tenant);
    roots = it != options_.tenant_data_roots.end() ? it->second : std::vector<std::string>();
  }
  auto outside = [&]() {
    if (roots.empty()) {
      return Invalid(field, absl::StrCat("tenant \"", caller.tenant,
                                         "\" has no data roots on this daemon; upload the files "
                                         "(ftctl upload) and name them by id"));
    }
    return Invalid(field, absl::StrCat(QuoteUserText(*path, kMaxQuotedPathBytes), " is outside ",
                                       per_tenant ? absl::StrCat("tenant \"", caller.tenant, "\"'s")
                                                  : std::string("the daemon's"),
                                       " data roots (", absl::StrJoin(roots, ", "), ")"));
  };
  // Where the path leads lexically (".." resolved, links not), and whether a
  // symbolic link on it inside the roots is what takes it elsewhere: so that
  // what a caller is told never depends on what exists outside its roots
  // (an existing target and a missing one read the same).
  const std::string lexical =
      std::filesystem::absolute(std::filesystem::path(*path)).lexically_normal().string();
  bool lexically_inside = false;
  for (const std::string& root : roots)
    lexically_inside = lexically_inside || IsWithin(lexical, root);
  auto through_link = [&]() {
    return Invalid(field, absl::StrCat(QuoteUserText(*path, kMaxQuotedPathBytes), " leads outside ",
                                       per_tenant ? absl::StrCat("tenant \"", caller.tenant, "\"'s")
                                                  : std::string("the daemon's"),
                                       " data roots, or nowhere, through a symbolic link"));
  };
  // A link anywhere on the path as written (before ".." is resolved, so
  // that "link/.." counts), up to the first part that does not exist.
  auto has_link = [&]() {
    std::filesystem::path prefix;
    for (const auto& part : std::filesystem::path(*path)) {
      prefix /= part;
      std::error_code ec;
      const auto status = std::filesystem::symlink_status(prefix, ec);
      if (ec || !std::filesystem::exists(status)) return false;
      if (std::filesystem::is_symlink(status)) return true;
    }
    return false;
  };
  // "link/.." leads to the parent of the link's target if that exists and
  // to the link's own folder if not: refused whatever it points to, so that
  // the answer tells nothing of the target.
  auto link_then_up = [&]() {
    std::filesystem::path prefix;
    bool link = false;
    bool exists = true;
    for (const auto& part : std::filesystem::path(*path)) {
      if (part == ".." && link) return true;
      prefix /= part;
      if (!exists) continue;
      std::error_code ec;
      const auto status = std::filesystem::symlink_status(prefix, ec);
      exists = !ec && std::filesystem::exists(status);
      link = link || (exists && std::filesystem::is_symlink(status));
    }
    return false;
  };
  if (lexically_inside && link_then_up()) return through_link();
  if (!canonical.ok()) {
    if (!std::filesystem::path(*path).is_absolute()) {
      return Invalid(field, std::string(canonical.status().message()));
    }
    if (!lexically_inside) return outside();
    if (has_link()) return through_link();
    return Invalid(field, std::string(canonical.status().message()));
  }
  if (!options_.jobs_dir.empty() && IsWithin(*canonical, options_.jobs_dir) &&
      *canonical != options_.jobs_dir) {
    // A job's output: the job's tenant's (and admins').
    const std::string rest = canonical->substr(options_.jobs_dir.size() + 1);
    const std::string job_id = rest.substr(0, rest.find('/'));
    absl::StatusOr<std::string> owner =
        options_.job_tenant ? options_.job_tenant(job_id) : absl::NotFoundError(job_id);
    if (!owner.ok() || !caller.CanSee(*owner)) return outside();
    *path = *canonical;
    return absl::OkStatus();
  }
  if (!options_.data_dir.empty() && IsWithin(*canonical, options_.data_dir)) return outside();
  bool allowed = false;
  for (const std::string& root : roots) allowed = allowed || IsWithin(*canonical, root);
  if (!allowed) return lexically_inside ? through_link() : outside();
  // Named outside the roots, through a link into them: refused as outside,
  // whether the link exists or not.
  if (!lexically_inside) return outside();
  // A missing path through a link (a dangling one) reads as one through a
  // link that leads out: its target is not the caller's to learn about.
  std::error_code missing;
  if (!std::filesystem::exists(*canonical, missing) && has_link()) return through_link();
  *path = *canonical;
  return absl::OkStatus();
}

absl::StatusOr<FileManager::Resolved> JobSpecValidator::ResolveFile(const std::string& field,
                                                                    const std::string& file_id,
                                                                    v1::FileKind kind,
                                                                    const Caller& caller) const {
  if (options_.files == nullptr) return Invalid(field, "this daemon takes no uploaded files");
  return options_.files->Resolve(field, file_id, kind, caller);
}

absl::Status JobSpecValidator::CheckDataset(const std::string& field, v1::Dataset* dataset,
                                            const Caller& caller) const {
  if (!dataset->file_id().empty()) {
    ASSIGN_OR_RETURN(FileManager::Resolved file, ResolveFile(field + ".file_id", dataset->file_id(),
                                                             v1::FILE_KIND_DATASET, caller));
    if (!dataset->path().empty() && dataset->path() != file.path) {
      return Invalid(field, "name the dataset by path or by file_id, not both");
    }
    const v1::DatasetFormat uploaded = file.file.dataset().format();
    if (dataset->format() != v1::DATASET_FORMAT_UNSPECIFIED && dataset->format() != uploaded) {
      return Invalid(field + ".format",
                     absl::StrCat(UserTextPrefix(dataset->file_id()), " was uploaded as ", ShortName(uploaded)));
    }
    dataset->set_path(file.path);
    dataset->set_format(uploaded);
  } else {
    RETURN_IF_ERROR(CheckPath(field + ".path", dataset->mutable_path(), caller));
  }
  const std::string& path = dataset->path();
  // An upload by its id, not by where the daemon keeps it.
  const std::string shown =
      dataset->file_id().empty() ? QuoteUserText(path, kMaxQuotedPathBytes) : training::DatasetName(*dataset);
  const std::string where = dataset->file_id().empty() ? ".path" : ".file_id";
  std::error_code ec;
  if (!fs::exists(path, ec)) return Invalid(field + where, absl::StrCat(shown, " does not exist"));
  if (!fs::is_regular_file(path, ec)) {
    return Invalid(field + where, absl::StrCat(shown, " is not a regular file"));
  }
  // Opened as the job opens it: no link followed (the path is canonical),
  // and a FIFO swapped in since the check neither blocks the open nor passes.
  const int fd = OpenNoLinks(path, O_RDONLY | O_NONBLOCK);
  if (fd < 0) return Invalid(field + where, absl::StrCat(shown, " cannot be read"));
  struct stat st;
  const bool regular = ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
  ::close(fd);
  if (!regular) return Invalid(field + where, absl::StrCat(shown, " is not a regular file"));
  if (dataset->format() == v1::DATASET_FORMAT_UNSPECIFIED) {
    std::string ext = absl::AsciiStrToLower(fs::path(path).extension().string());
    if (ext == ".csv") {
      dataset->set_format(v1::DATASET_FORMAT_CSV);
    } else if (ext == ".jsonl" || ext == ".ndjson") {
      dataset->set_format(v1::DATASET_FORMAT_JSONL);
    } else {
      return Invalid(field + ".format", absl::StrCat("cannot tell the format of \"", path,
                                                     "\" from its extension; name CSV or JSONL"));
    }
  } else if (!v1::DatasetFormat_IsValid(dataset->format())) {
    return Invalid(field + ".format", absl::StrCat("unknown value ", dataset->format()));
  }
  if (dataset->text_column().empty()) dataset->set_text_column("text");
  if (dataset->label_column().empty()) dataset->set_label_column("label");
  // The names are kept in the job's record: as long as a column's name in
  // an uploaded dataset may be.
  for (const auto& [name, column] :
       {std::pair<const char*, const std::string*>{"text_column", &dataset->text_column()},
        {"label_column", &dataset->label_column()}}) {
    if (column->size() > training::kMaxColumnNameBytes || !Printable(*column)) {
      return Invalid(
          field + "." + name,
          absl::StrCat("must be at most ", training::kMaxColumnNameBytes, " printable characters"));
    }
  }
  if (dataset->text_column() == dataset->label_column()) {
    return Invalid(field + ".label_column", absl::StrCat("is the same column as text_column (\"",
                                                         dataset->text_column(), "\")"));
  }
  return absl::OkStatus();
}

absl::Status JobSpecValidator::ValidateAndNormalize(v1::JobSpec* spec, const Caller& caller) const {
  // Model.
  if (!spec->base_model_file_id().empty()) {
    ASSIGN_OR_RETURN(
        FileManager::Resolved file,
        ResolveFile("base_model_file_id", spec->base_model_file_id(), v1::FILE_KIND_MODEL, caller));
    if (!spec->base_model().empty() && spec->base_model() != file.path) {
      return Invalid("base_model", "name the model by base_model or base_model_file_id, not both");
    }
    spec->set_base_model(file.path);
  } else {
    RETURN_IF_ERROR(CheckPath("base_model", spec->mutable_base_model(), caller));
  }
  // An uploaded model by its id, not by where the daemon keeps it.
  const bool uploaded = !spec->base_model_file_id().empty();
  const std::string model_field = uploaded ? "base_model_file_id" : "base_model";
  const std::string model_name = uploaded ? spec->base_model_file_id() : spec->base_model();
  if (!fs::is_directory(spec->base_model())) {
    return Invalid(model_field,
                   absl::StrCat(QuoteUserText(model_name, kMaxQuotedPathBytes),
                                " is not a folder with a checkpoint"));
  }
  // What the job will find wrong when it loads the model, found now.
  ASSIGN_OR_RETURN(ModelConfig model,
                   CheckModelFolder(spec->base_model(), model_field, model_name));

  // Data.
  RETURN_IF_ERROR(CheckDataset("train_dataset", spec->mutable_train_dataset(), caller));
  if (spec->has_validation_dataset()) {
    RETURN_IF_ERROR(CheckDataset("validation_dataset", spec->mutable_validation_dataset(), caller));
  }

  // What the job exports: its best validation point's weights where it has
  // validation, else its last.
  if (!v1::ExportWeights_IsValid(spec->export_weights())) {
    return Invalid("export_weights", absl::StrCat("unknown value ", spec->export_weights()));
  }
  if (spec->export_weights() == v1::EXPORT_WEIGHTS_UNSPECIFIED) {
    spec->set_export_weights(spec->has_validation_dataset() ? v1::EXPORT_WEIGHTS_BEST
                                                            : v1::EXPORT_WEIGHTS_FINAL);
  }
  if (spec->export_weights() == v1::EXPORT_WEIGHTS_BEST && !spec->has_validation_dataset()) {
    return Invalid("export_weights",
                   "best needs a validation_dataset to choose the best point by; give one, or "
                   "export final");
  }

  // Task.
  if (spec->task() == v1::TASK_UNSPECIFIED) spec->set_task(v1::TASK_SEQUENCE_CLASSIFICATION);
  if (spec->task() != v1::TASK_SEQUENCE_CLASSIFICATION) {
    return Invalid("task", absl::StrCat("unsupported task ", static_cast<int>(spec->task()),
                                        "; ftd supports SEQUENCE_CLASSIFICATION"));
  }

  // Hyperparameters.
  v1::Hyperparameters* hp = spec->mutable_hyperparameters();
  if (!hp->has_epochs()) hp->set_epochs(3);
  if (hp->epochs() < 1 || hp->epochs() > kMaxEpochs) {
    return Invalid("hyperparameters.epochs",
                   absl::StrCat("must be between 1 and ", kMaxEpochs, ", got ", hp->epochs()));
  }
  if (!hp->has_batch_size()) hp->set_batch_size(32);
  if (hp->batch_size() < 1 || hp->batch_size() > kMaxBatchSize) {
    return Invalid(
        "hyperparameters.batch_size",
        absl::StrCat("must be between 1 and ", kMaxBatchSize, ", got ", hp->batch_size()));
  }
  if (!hp->has_learning_rate()) hp->set_learning_rate(5e-5);
  if (!std::isfinite(hp->learning_rate()) || hp->learning_rate() <= 0 || hp->learning_rate() > 1) {
    return Invalid("hyperparameters.learning_rate",
                   absl::StrCat("must be a finite number in (0, 1], got ", hp->learning_rate()));
  }
  if (!hp->has_warmup_ratio()) hp->set_warmup_ratio(0);
  if (!(hp->warmup_ratio() >= 0 && hp->warmup_ratio() <= 1)) {
    return Invalid("hyperparameters.warmup_ratio",
                   absl::StrCat("must be between 0 and 1, got ", hp->warmup_ratio()));
  }
  if (!hp->has_weight_decay()) hp->set_weight_decay(0.01);
  if (!std::isfinite(hp->weight_decay()) || hp->weight_decay() < 0) {
    return Invalid("hyperparameters.weight_decay",
                   absl::StrCat("must be a finite number >= 0, got ", hp->weight_decay()));
  }
  if (!hp->has_max_seq_length())
    hp->set_max_seq_length(std::min(128, model.max_position_embeddings));
  if (hp->max_seq_length() < 2 || hp->max_seq_length() > model.max_position_embeddings) {
    return Invalid("hyperparameters.max_seq_length",
                   absl::StrCat("must be between 2 and the model's max_position_embeddings (",
                                model.max_position_embeddings, "), got ", hp->max_seq_length()));
  }
  // A job that cannot fit is refused now, not when it takes the daemon down:
  // here with a two-label classifier, again once the training file tells
  // how many labels it has.
  auto check_memory = [&](int64_t num_labels) -> absl::Status {
    if (!options_.memory_budget) return absl::OkStatus();
    // Each replica holds the model and its share of the batch.
    const int replicas = std::max(1, spec->devices());
    const int64_t batch_share = (hp->batch_size() + replicas - 1) / replicas;
    const int64_t budget = options_.memory_budget(spec->device(), replicas);
    const MemoryEstimate need =
        EstimateTrainingMemory(model.shape, batch_share, hp->max_seq_length(), num_labels);
    if (budget <= 0 || need.total_bytes() <= budget) return absl::OkStatus();
    const std::string why =
        absl::StrCat(" need about ", Bytes(need.total_bytes()), " (weights and AdamW ",
                     Bytes(need.weights_and_optimizer_bytes), ", activations ",
                     Bytes(need.activation_bytes), "), more than the ", Bytes(budget),
                     replicas > 1 ? " each replica of a job on this many devices may use"
                                  : " a job may use on the devices it may run on (the smallest of them)");
    if (EstimateTrainingMemory(model.shape, 1, 2, num_labels).total_bytes() > budget) {
      // Not the batch: the classifier of so many labels alone does not fit.
      return Invalid("train_dataset", absl::StrCat(training::DatasetName(spec->train_dataset()),
                                                   "'s ", num_labels, " labels", why));
    }
    return Invalid("hyperparameters.batch_size",
                   absl::StrCat(hp->batch_size(), " sequences of max_seq_length ",
                                hp->max_seq_length(), num_labels > 2 ? " and " : "",
                                num_labels > 2 ? absl::StrCat(num_labels, " labels") : "", why,
                                "; lower batch_size or max_seq_length"));
  };
  RETURN_IF_ERROR(check_memory(2));
  if (!hp->has_seed()) hp->set_seed(0);
  if (!hp->has_evaluations_per_epoch()) hp->set_evaluations_per_epoch(1);
  if (hp->evaluations_per_epoch() < 1 || hp->evaluations_per_epoch() > 1000) {
    return Invalid("hyperparameters.evaluations_per_epoch",
                   absl::StrCat("must be between 1 and 1000, got ", hp->evaluations_per_epoch()));
  }
  if (!v1::Precision_IsValid(hp->precision())) {
    return Invalid("hyperparameters.precision", absl::StrCat("unknown value ", hp->precision()));
  }
  if (hp->has_bf16() && hp->precision() != v1::PRECISION_UNSPECIFIED) {
    return Invalid("hyperparameters.bf16",
                   "set precision (bf16 is its older form, for a GPU), not both");
  }
  // bf16 = true keeps its older meaning (bf16 on a GPU, fp32 on the CPU):
  // the trainer resolves it on the device the job gets.
  if (hp->has_bf16() && !hp->bf16()) hp->clear_bf16();
  if (!hp->has_bf16() && hp->precision() == v1::PRECISION_UNSPECIFIED) {
    hp->set_precision(v1::PRECISION_FP32);
  }
  if (!hp->has_checkpoint_every_steps()) hp->set_checkpoint_every_steps(0);
  if (hp->checkpoint_every_steps() < 0 || hp->checkpoint_every_steps() > 1000000000) {
    return Invalid("hyperparameters.checkpoint_every_steps",
                   absl::StrCat("must be between 0 (none by steps) and 1000000000, got ",
                                hp->checkpoint_every_steps()));
  }

  // Freezing.
  v1::FreezePolicy* freeze = spec->mutable_freeze_policy();
  switch (freeze->policy_case()) {
    case v1::FreezePolicy::POLICY_NOT_SET:
      freeze->mutable_none();
      break;
    case v1::FreezePolicy::kNone:
      break;
    case v1::FreezePolicy::kStatic: {
      int k = freeze->static_().frozen_layers();
      if (k < 0 || k >= model.num_hidden_layers) {
        return Invalid("freeze_policy.static.frozen_layers",
                       absl::StrCat("must be between 0 and ", model.num_hidden_layers - 1,
                                    " (the model has ", model.num_hidden_layers,
                                    " layers and the last one always trains), got ", k));
      }
      break;
    }
    case v1::FreezePolicy::kAutofreeze: {
      v1::FreezePolicy::AutoFreeze* af = freeze->mutable_autofreeze();
      if (!af->has_percentile()) af->set_percentile(50);
      if (!(af->percentile() > 0 && af->percentile() <= 100)) {
        return Invalid("freeze_policy.autofreeze.percentile",
                       absl::StrCat("must be in (0, 100], got ", af->percentile()));
      }
      if (!af->has_evaluations_per_epoch()) af->set_evaluations_per_epoch(5);
      if (af->evaluations_per_epoch() < 1 || af->evaluations_per_epoch() > 1000) {
        return Invalid(
            "freeze_policy.autofreeze.evaluations_per_epoch",
            absl::StrCat("must be between 1 and 1000, got ", af->evaluations_per_epoch()));
      }
      // ftd's default rule (docs/freeze-policy.md): after half of training, each
      // decision freezes at least the next layer. The authors' rule: false, 0.
      if (!af->has_freeze_through_first_above()) af->set_freeze_through_first_above(true);
      if (!af->has_max_layers_per_decision()) af->set_max_layers_per_decision(0);
      if (af->max_layers_per_decision() < 0) {
        return Invalid(
            "freeze_policy.autofreeze.max_layers_per_decision",
            absl::StrCat("must be >= 0 (0: no cap), got ", af->max_layers_per_decision()));
      }
      if (!af->has_smoothing()) af->set_smoothing(0);
      if (!(af->smoothing() >= 0 && af->smoothing() < 1)) {
        return Invalid("freeze_policy.autofreeze.smoothing",
                       absl::StrCat("must be in [0, 1), got ", af->smoothing()));
      }
      if (!af->has_keep_trainable()) af->set_keep_trainable(1);
      if (af->keep_trainable() < 1 || af->keep_trainable() >= model.num_hidden_layers) {
        return Invalid("freeze_policy.autofreeze.keep_trainable",
                       absl::StrCat("must be between 1 and ", model.num_hidden_layers - 1,
                                    " (the model has ", model.num_hidden_layers,
                                    " layers), got ", af->keep_trainable()));
      }
      if (!af->has_start_fraction()) af->set_start_fraction(0.5);
      if (!(af->start_fraction() >= 0 && af->start_fraction() < 1)) {
        return Invalid("freeze_policy.autofreeze.start_fraction",
                       absl::StrCat("must be in [0, 1), got ", af->start_fraction()));
      }
      break;
    }
    case v1::FreezePolicy::kGeometric: {
      v1::FreezePolicy::Geometric* g = freeze->mutable_geometric();
      if (!g->has_alpha()) g->set_alpha(1.0 / 3);
      if (!(g->alpha() > 0 && g->alpha() < 1)) {
        return Invalid("freeze_policy.geometric.alpha",
                       absl::StrCat("must be in (0, 1), got ", g->alpha()));
      }
      break;
    }
    case v1::FreezePolicy::kLinear: {
      v1::FreezePolicy::Linear* l = freeze->mutable_linear();
      if (!l->has_freeze_start()) l->set_freeze_start(0.5);
      if (!l->has_freeze_level()) l->set_freeze_level(1.0);
      if (!l->has_evaluations_per_epoch()) l->set_evaluations_per_epoch(5);
      if (!(l->freeze_start() >= 0 && l->freeze_start() < 1)) {
        return Invalid("freeze_policy.linear.freeze_start",
                       absl::StrCat("must be in [0, 1), got ", l->freeze_start()));
      }
      if (!(l->freeze_level() > 0 && l->freeze_level() <= 1)) {
        return Invalid("freeze_policy.linear.freeze_level",
                       absl::StrCat("must be in (0, 1], got ", l->freeze_level()));
      }
      if (l->evaluations_per_epoch() < 1 || l->evaluations_per_epoch() > 1000) {
        return Invalid(
            "freeze_policy.linear.evaluations_per_epoch",
            absl::StrCat("must be between 1 and 1000, got ", l->evaluations_per_epoch()));
      }
      break;
    }
  }

  // The activation cache.
  v1::ActivationCache* cache = spec->mutable_activation_cache();
  if (!v1::ActivationCache::Dtype_IsValid(cache->dtype())) {
    return Invalid("activation_cache.dtype", absl::StrCat("unknown value ", cache->dtype()));
  }
  if (cache->enabled()) {
    if (cache->dtype() == v1::ActivationCache::DTYPE_UNSPECIFIED) {
      cache->set_dtype(v1::ActivationCache::DTYPE_BF16);
    }
    if (freeze->has_none() || (freeze->has_static_() && freeze->static_().frozen_layers() == 0)) {
      return Invalid("activation_cache.enabled",
                     "needs a freeze policy that freezes layers (static with frozen_layers > 0, "
                     "or autofreeze): the cache stores the frozen layers' outputs");
    }
  }

  // Placement.
  if (!v1::DeviceRequest::Kind_IsValid(spec->device().kind())) {
    return Invalid("device.kind", absl::StrCat("unknown value ", spec->device().kind()));
  }
  if (spec->device().kind() != v1::DeviceRequest::KIND_CUDA && spec->device().cuda_index() != 0) {
    return Invalid("device.cuda_index", "is only meaningful with kind CUDA");
  }
  if (spec->devices() == 0) spec->set_devices(1);
  if (spec->devices() < 0 || spec->devices() > kMaxDevices) {
    return Invalid("devices", absl::StrCat("must be between 1 and ", kMaxDevices, ", got ",
                                           spec->devices()));
  }
  if (spec->efficiency().enabled()) {
    v1::Efficiency* e = spec->mutable_efficiency();
    if (!e->has_max_step_ratio()) e->set_max_step_ratio(1.0);
    if (!std::isfinite(e->max_step_ratio()) || e->max_step_ratio() <= 0) {
      return Invalid("efficiency.max_step_ratio",
                     absl::StrCat("must be a finite number > 0, got ", e->max_step_ratio()));
    }
    if (!e->has_measure_steps()) e->set_measure_steps(8);
    if (e->measure_steps() < 1 || e->measure_steps() > 100000) {
      return Invalid("efficiency.measure_steps",
                     absl::StrCat("must be between 1 and 100000, got ", e->measure_steps()));
    }
  }
  if (spec->devices() > spec->hyperparameters().batch_size()) {
    return Invalid("devices", absl::StrCat("each of the ", spec->devices(),
                                           " replicas trains on a share of every batch, so "
                                           "hyperparameters.batch_size must be at least ",
                                           spec->devices(), ", got ",
                                           spec->hyperparameters().batch_size()));
  }
  if (options_.check_device)
    RETURN_IF_ERROR(options_.check_device(spec->device(), spec->devices()));
  if (spec->priority() < -kMaxPriority || spec->priority() > kMaxPriority) {
    return Invalid("priority", absl::StrCat("must be between ", -kMaxPriority, " and ",
                                            kMaxPriority, ", got ", spec->priority()));
  }

  // Naming.
  if (spec->display_name().size() > kMaxDisplayName || !Printable(spec->display_name())) {
    return Invalid("display_name",
                   absl::StrCat("must be at most ", kMaxDisplayName, " printable characters"));
  }
  if (spec->labels_size() > kMaxLabels) {
    return Invalid("labels",
                   absl::StrCat("at most ", kMaxLabels, " labels, got ", spec->labels_size()));
  }
  for (const auto& [key, value] : spec->labels()) {
    if (!ValidLabelKey(key)) {
      return Invalid("labels", absl::StrCat("key ", QuoteUserText(key),
                                            " must be 1 to 63 letters, digits, '-', '_', '.' "
                                            "or '/', starting with a letter or digit"));
    }
    if (value.size() > kMaxLabelValue || !Printable(value)) {
      return Invalid(
          absl::StrCat("labels[", UserTextPrefix(key), "]"),
          absl::StrCat("the value must be at most ", kMaxLabelValue, " printable characters"));
    }
  }

  // Last, as it reads the datasets whole: what the job would find wrong
  // when it starts, found now.
  // (An uploaded dataset's errors name its id and file name, not where the
  // daemon keeps it: training::DatasetName.)
  absl::StatusOr<std::shared_ptr<const DatasetSummary>> train =
      datasets_.Read(spec->train_dataset());
  if (!train.ok()) return Invalid("train_dataset", std::string(train.status().message()));
  if ((*train)->labels.size() < 2) {
    return Invalid("train_dataset",
                   absl::StrCat(training::DatasetName(spec->train_dataset()),
                                ": every row has the same label; a classifier needs two or more"));
  }
  if ((*train)->labels.size() > 2) {
    RETURN_IF_ERROR(check_memory(static_cast<int64_t>((*train)->labels.size())));
  }
  // A fine-tuned checkpoint's classifier is loaded as it is: its rows must
  // be the training file's labels (the loader refuses any other shape).
  if (model.classifier_labels.has_value() &&
      *model.classifier_labels != static_cast<int64_t>((*train)->labels.size())) {
    return Invalid(model_field,
                   absl::StrCat(QuoteUserText(model_name, kMaxQuotedPathBytes), ": its classifier is for ",
                                *model.classifier_labels,
                                " labels, and ", training::DatasetName(spec->train_dataset()),
                                " has ", (*train)->labels.size(), " labels"));
  }
  if (spec->has_validation_dataset()) {
    absl::StatusOr<std::shared_ptr<const DatasetSummary>> validation =
        datasets_.Read(spec->validation_dataset());
    if (!validation.ok()) {
      return Invalid("validation_dataset", std::string(validation.status().message()));
    }
    if (absl::Status s = DatasetChecker::CheckLabels(
            training::DatasetName(spec->validation_dataset()), **validation, **train);
        !s.ok()) {
      return Invalid("validation_dataset", std::string(s.message()));
    }
  }
  return absl::OkStatus();
}

}  // namespace ftd::core
