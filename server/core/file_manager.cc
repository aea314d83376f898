#include "server/core/file_manager.h"

#include <algorithm>
#include <filesystem>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/quote.h"
#include "common/fs_util.h"
#include "common/log.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "common/utf8.h"
#include "server/core/error_details.h"
#include "server/core/model_check.h"
#include "server/training/data/text_dataset.h"
#include "server/training/model/safetensors.h"
#include "server/training/model/shard_index.h"

namespace ftd::core {
namespace {

namespace fs = std::filesystem;

constexpr int kDefaultPageSize = 100;
constexpr int kMaxPageSize = 1000;
// A dataset is parsed whole to describe it: at most this many bytes.
constexpr int64_t kMaxDescribedDatasetBytes = training::kMaxDatasetBytes;

std::string Mib(int64_t bytes) {
  if (bytes >= (int64_t{1} << 30)) return absl::StrFormat("%.1f GiB", bytes / 1073741824.0);
  return absl::StrFormat("%.1f MiB", bytes / 1048576.0);
}

bool ValidName(const std::string& name) {
  if (name.empty() || name.size() > FileManager::kMaxNameBytes || name[0] == '.') return false;
  for (char c : name) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '-' && c != '_') {
      return false;
    }
  }
  return true;
}

bool ValidDigest(const std::string& hex) {
  if (hex.size() != 64) return false;
  for (char c : hex) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

absl::Status Exhausted(const std::string& reason, const std::string& message, int64_t limit) {
  return WithReason(absl::ResourceExhaustedError(message), reason,
                    {{"limit", absl::StrCat(limit)}});
}

v1::DatasetFormat FormatFromName(const std::string& name) {
  const std::string ext = absl::AsciiStrToLower(fs::path(name).extension().string());
  if (ext == ".csv") return v1::DATASET_FORMAT_CSV;
  if (ext == ".jsonl" || ext == ".ndjson") return v1::DATASET_FORMAT_JSONL;
  return v1::DATASET_FORMAT_UNSPECIFIED;
}

// What another tenant's file is to a caller: the same as none.
absl::Status NoFile(const std::string& file_id) {
  return absl::NotFoundError(absl::StrCat("no file ", QuoteUserText(file_id)));
}

}  // namespace

std::vector<std::string> FileIdsOf(const v1::JobSpec& spec) {
  std::vector<std::string> ids;
  if (!spec.base_model_file_id().empty()) ids.push_back(spec.base_model_file_id());
  if (!spec.train_dataset().file_id().empty()) ids.push_back(spec.train_dataset().file_id());
  if (spec.has_validation_dataset() && !spec.validation_dataset().file_id().empty()) {
    ids.push_back(spec.validation_dataset().file_id());
  }
  return ids;
}

// --- Upload -----------------------------------------------------------------

FileManager::Upload::Upload(FileManager* manager, v1::UploadFileRequest::Header header,
                            std::string tenant, std::unique_ptr<storage::FileStore::Upload> staged)
    : manager_(manager), header_(std::move(header)), tenant_(std::move(tenant)) {
  absl::MutexLock manager_lock(&manager_->mu_);
  absl::MutexLock lock(&mu_);
  staged_ = std::move(staged);
  reserved_bytes_ = staged_->total();
  last_activity_ = manager_->options_.now();
  manager_->live_.insert(this);
}

FileManager::Upload::~Upload() {
  std::unique_ptr<storage::FileStore::Upload> staged;  // removed after the locks go
  absl::MutexLock manager_lock(&manager_->mu_);
  absl::MutexLock lock(&mu_);
  manager_->live_.erase(this);
  if (!dropped_) {
    --manager_->uploads_;
    manager_->reserved_bytes_ -= reserved_bytes_;
    manager_->tenant_reserved_[tenant_] -= reserved_bytes_;
    --manager_->tenant_uploads_[tenant_];
  }
  staged = std::move(staged_);
}

absl::Status FileManager::Upload::DroppedError() const {
  return WithReason(
      absl::AbortedError(absl::StrCat(
          "the upload sent nothing for ",
          absl::FormatDuration(manager_->options_.upload_idle_timeout),
          " (--upload_idle_timeout) and was dropped to make room for another; nothing was "
          "kept; upload again")),
      "UPLOAD_IDLE",
      {{"idle_timeout", absl::FormatDuration(manager_->options_.upload_idle_timeout)}});
}

absl::Status FileManager::Upload::Write(std::string_view chunk) {
  absl::MutexLock lock(&mu_);
  if (dropped_) return DroppedError();
  if (staged_ == nullptr) return absl::FailedPreconditionError("the upload has ended");
  last_activity_ = manager_->options_.now();
  absl::Status written = staged_->Write(chunk);
  if (written.ok()) return written;
  const std::optional<size_t> entry = staged_->failed_entry();
  staged_.reset();  // nothing of it is kept
  if (written.code() != absl::StatusCode::kInvalidArgument) return written;
  return InvalidField(entry.has_value() ? absl::StrCat("header.entries[", *entry, "].sha256")
                                        : std::string("chunk"),
                      std::string(written.message()));
}

absl::Status FileManager::Upload::CheckContent(v1::File* file) const {
  const auto& entries = header_.entries();
  if (header_.kind() == v1::FILE_KIND_DATASET) {
    const std::string& name = entries[0].name();
    if (entries[0].size() > kMaxDescribedDatasetBytes) {
      return InvalidField("header.entries[0].size", absl::StrCat("a dataset may have at most ",
                                                                 Mib(kMaxDescribedDatasetBytes)));
    }
    ASSIGN_OR_RETURN(std::string content, ReadFile(staged_->StagedPath(0)));
    const v1::DatasetFormat format = header_.format() != v1::DATASET_FORMAT_UNSPECIFIED
                                         ? header_.format()
                                         : FormatFromName(name);
    absl::StatusOr<training::DatasetShape> shape =
        training::DescribeTextDataset(format, name, content);
    if (!shape.ok())
      return InvalidField("header.entries[0]", std::string(shape.status().message()));
    v1::File::DatasetInfo* info = file->mutable_dataset();
    info->set_format(format);
    info->set_rows(shape->rows);
    for (const std::string& column : shape->columns) info->add_columns(column);
    file->set_sha256(entries[0].sha256());
    return absl::OkStatus();
  }

  // A model: its config, vocabulary and weights as a job reads them (the
  // same check as at submit), an error naming the entry at fault.
  const std::string folder = fs::path(staged_->StagedPath(0)).parent_path().string();
  std::map<std::string, std::string> entry_fields;
  for (int i = 0; i < entries.size(); ++i) {
    entry_fields[entries[i].name()] = absl::StrCat("header.entries[", i, "]");
  }
  ASSIGN_OR_RETURN(ModelConfig config, CheckModelFolder(folder, "header.entries",
                                                        header_.display_name(), entry_fields));
  const int64_t parameters = config.parameters;
  v1::File::ModelInfo* info = file->mutable_model();
  info->set_model_type(config.model_type.empty() ? "bert" : config.model_type);
  info->set_layers(config.num_hidden_layers);
  info->set_hidden_size(static_cast<int32_t>(config.shape.hidden_size));
  info->set_vocab_size(static_cast<int32_t>(config.shape.vocab_size));
  info->set_max_position_embeddings(config.max_position_embeddings);
  info->set_parameters(parameters);
  Sha256 digest;
  for (const v1::FileEntry& e : entries)
    digest.Update(absl::StrCat(e.name(), " ", e.sha256(), "\n"));
  file->set_sha256(digest.FinishHex());
  return absl::OkStatus();
}

absl::StatusOr<v1::File> FileManager::Upload::Finish() {
  absl::MutexLock lock(&mu_);
  if (dropped_) return DroppedError();
  if (staged_ == nullptr) return absl::FailedPreconditionError("the upload has ended");
  if (!staged_->complete()) {
    return absl::InvalidArgumentError(absl::StrCat("the upload ended after ", staged_->received(),
                                                   " of the ", staged_->total(),
                                                   " bytes its header declares; nothing was kept"));
  }
  v1::File file;
  file.set_kind(header_.kind());
  file.set_tenant(tenant_);
  file.set_display_name(header_.display_name());
  // A file too large for the memory left to parse fails this upload, not
  // the daemon.
  try {
    RETURN_IF_ERROR(CheckContent(&file));
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError(
        "the daemon has not the memory to check this file now; nothing was kept");
  }
  ASSIGN_OR_RETURN(v1::File stored, manager_->options_.store->Commit(std::move(staged_), file));
  Log(LogLevel::kInfo,
      absl::StrCat(stored.id(), ": uploaded (",
                   header_.kind() == v1::FILE_KIND_MODEL ? "model" : "dataset", ", ",
                   stored.entries_size(), " files, ", Mib(stored.bytes()), ")"));
  return stored;
}

// --- FileManager --------------------------------------------------------------

absl::StatusOr<std::unique_ptr<FileManager::Upload>> FileManager::BeginUpload(
    v1::UploadFileRequest::Header header, const Caller& caller) {
  const bool dataset = header.kind() == v1::FILE_KIND_DATASET;
  if (!dataset && header.kind() != v1::FILE_KIND_MODEL) {
    return InvalidField("header.kind", "must be FILE_KIND_DATASET or FILE_KIND_MODEL");
  }
  if (header.entries().empty()) return InvalidField("header.entries", "is required");
  if (dataset && header.entries_size() != 1) {
    return InvalidField("header.entries",
                        absl::StrCat("a dataset is one file, got ", header.entries_size()));
  }
  if (header.entries_size() > kMaxEntries) {
    return InvalidField("header.entries", absl::StrCat("a model may have at most ", kMaxEntries,
                                                       " files, got ", header.entries_size()));
  }
  std::set<std::string> names;
  int64_t total = 0;
  for (int i = 0; i < header.entries_size(); ++i) {
    const v1::FileEntry& e = header.entries(i);
    const std::string field = absl::StrCat("header.entries[", i, "]");
    if (!ValidName(e.name())) {
      return InvalidField(field + ".name",
                          absl::StrCat("must be a plain file name of at most ", kMaxNameBytes,
                                       " letters, digits, '.', '-' and '_', not starting with "
                                       "'.'"));
    }
    if (!names.insert(e.name()).second) {
      return InvalidField(field + ".name", absl::StrCat("\"", e.name(), "\" comes twice"));
    }
    if (e.size() < 0) return InvalidField(field + ".size", "must not be negative");
    if (e.size() > options_.max_file_bytes) {
      return Exhausted("FILE_TOO_LARGE",
                       absl::StrCat(field, ".size: \"", e.name(), "\" has ", Mib(e.size()),
                                    "; the daemon takes files of at most ",
                                    Mib(options_.max_file_bytes), " (--max_file_mb)"),
                       options_.max_file_bytes);
    }
    if (!ValidDigest(e.sha256())) {
      return InvalidField(field + ".sha256", "must be the SHA-256 of the file in lower-case hex");
    }
    total += e.size();
  }
  if (dataset) {
    if (header.format() == v1::DATASET_FORMAT_UNSPECIFIED) {
      if (FormatFromName(header.entries(0).name()) == v1::DATASET_FORMAT_UNSPECIFIED) {
        return InvalidField("header.format",
                            absl::StrCat("cannot tell the format of \"", header.entries(0).name(),
                                         "\" from its extension; name CSV or JSONL"));
      }
    } else if (header.format() != v1::DATASET_FORMAT_CSV &&
               header.format() != v1::DATASET_FORMAT_JSONL) {
      return InvalidField("header.format", absl::StrCat("unknown value ", header.format()));
    }
  } else {
    if (header.format() != v1::DATASET_FORMAT_UNSPECIFIED) {
      return InvalidField("header.format", "is for datasets");
    }
    for (const char* required : {"config.json", "vocab.txt"}) {
      if (names.count(required) == 0) {
        return InvalidField("header.entries", absl::StrCat("a model needs ", required));
      }
    }
    if (names.count("model.safetensors") == 0 && names.count("model.safetensors.index.json") == 0) {
      return InvalidField("header.entries",
                          "a model needs its weights: model.safetensors, or "
                          "model.safetensors.index.json and the shards it names");
    }
  }
  if (header.display_name().empty()) {
    header.set_display_name(dataset ? header.entries(0).name() : "model");
  }
  if (header.display_name().size() > kMaxDisplayName || !Printable(header.display_name())) {
    return InvalidField("header.display_name",
                        absl::StrCat("must be at most ", kMaxDisplayName, " printable characters"));
  }

  // Staged bytes of dropped uploads, removed once mu_ is released.
  std::vector<std::unique_ptr<storage::FileStore::Upload>> dropped;
  {
    absl::MutexLock lock(&mu_);
    if (uploads_ >= options_.max_uploads) DropIdleUploadsLocked(&dropped);
    // The tenant's own limits first: a tenant at its own learns nothing of
    // whether the daemon's are reached too.
    if (options_.max_tenant_uploads > 0 &&
        tenant_uploads_[caller.tenant] >= options_.max_tenant_uploads) {
      return Exhausted(
          "TENANT_TOO_MANY_UPLOADS",
          absl::StrCat("tenant \"", caller.tenant, "\" has ", tenant_uploads_[caller.tenant],
                       " uploads under way, the most one tenant may "
                       "(--max_uploads_per_tenant); try again when one has ended"),
          options_.max_tenant_uploads);
    }
    const TenantUsage usage = options_.max_tenant_files > 0 || options_.max_tenant_bytes > 0
                                  ? UsageOf(caller.tenant)
                                  : TenantUsage();
    if (options_.max_tenant_files > 0) {
      const int64_t files = usage.files + tenant_uploads_[caller.tenant];
      if (files >= options_.max_tenant_files) {
        return Exhausted("TENANT_TOO_MANY_FILES",
                         absl::StrCat("tenant \"", caller.tenant, "\" keeps ", files,
                                      " files, the most one tenant may (--max_files_per_tenant); "
                                      "delete some first"),
                         options_.max_tenant_files);
      }
    }
    if (options_.max_tenant_bytes > 0) {
      const int64_t held = usage.bytes + tenant_reserved_[caller.tenant];
      if (held + total > options_.max_tenant_bytes) {
        return Exhausted(
            "TENANT_STORAGE_FULL",
            absl::StrCat("the upload has ", Mib(total), "; tenant \"", caller.tenant, "\" holds ",
                         Mib(held), " of the ", Mib(options_.max_tenant_bytes),
                         " one tenant may (--max_files_mb_per_tenant); delete files "
                         "first"),
            options_.max_tenant_bytes);
      }
    }
    if (uploads_ >= options_.max_uploads) {
      return Exhausted("TOO_MANY_UPLOADS",
                       absl::StrCat(options_.max_uploads,
                                    " uploads are under way, the daemon's limit (--max_uploads); "
                                    "try again when one has ended"),
                       options_.max_uploads);
    }
    if (options_.max_files > 0 &&
        static_cast<int64_t>(options_.store->size()) + uploads_ >= options_.max_files) {
      return Exhausted("TOO_MANY_FILES",
                       absl::StrCat("the daemon keeps at most ", options_.max_files,
                                    " files (--max_files); delete some first"),
                       options_.max_files);
    }
    const int64_t stored = options_.store->stored_bytes();
    if (options_.max_stored_bytes > 0 &&
        stored + reserved_bytes_ + total > options_.max_stored_bytes) {
      DropIdleUploadsLocked(&dropped);
    }
    if (options_.max_stored_bytes > 0 &&
        stored + reserved_bytes_ + total > options_.max_stored_bytes) {
      // The daemon's totals for admins only: they tell of other tenants.
      return Exhausted(
          "STORAGE_FULL",
          caller.admin
              ? absl::StrCat("the upload has ", Mib(total), "; ", Mib(stored + reserved_bytes_),
                             " of ", Mib(options_.max_stored_bytes),
                             " (--max_files_mb) are stored or being uploaded; delete files first")
              : absl::StrCat("the upload has ", Mib(total),
                             "; the daemon's storage for uploads (--max_files_mb) is full"),
          options_.max_stored_bytes);
    }
    ++uploads_;
    reserved_bytes_ += total;
    tenant_reserved_[caller.tenant] += total;
    ++tenant_uploads_[caller.tenant];
  }
  std::vector<v1::FileEntry> entries(header.entries().begin(), header.entries().end());
  absl::StatusOr<std::unique_ptr<storage::FileStore::Upload>> staged =
      options_.store->BeginUpload(std::move(entries));
  if (!staged.ok()) {
    absl::MutexLock lock(&mu_);
    --uploads_;
    reserved_bytes_ -= total;
    tenant_reserved_[caller.tenant] -= total;
    --tenant_uploads_[caller.tenant];
    return staged.status();
  }
  return std::unique_ptr<Upload>(
      new Upload(this, std::move(header), caller.tenant, *std::move(staged)));
}

FileManager::TenantUsage FileManager::UsageOf(const std::string& tenant) const {
  TenantUsage usage;
  for (const v1::File& file : options_.store->List()) {
    if (file.tenant() != tenant) continue;
    ++usage.files;
    usage.bytes += file.bytes();
  }
  return usage;
}

void FileManager::DropIdleUploadsLocked(
    std::vector<std::unique_ptr<storage::FileStore::Upload>>* dropped_staging) {
  if (options_.upload_idle_timeout <= absl::ZeroDuration()) return;
  const absl::Time now = options_.now();
  for (Upload* upload : live_) {
    // One busy writing or finishing is not idle: not waited for.
    if (!upload->mu_.TryLock()) continue;
    if (!upload->dropped_ && now - upload->last_activity_ >= options_.upload_idle_timeout) {
      upload->dropped_ = true;
      dropped_staging->push_back(std::move(upload->staged_));  // its staged bytes go
      --uploads_;
      reserved_bytes_ -= upload->reserved_bytes_;
      tenant_reserved_[upload->tenant_] -= upload->reserved_bytes_;
      --tenant_uploads_[upload->tenant_];
      upload->reserved_bytes_ = 0;
      Log(LogLevel::kWarning,
          absl::StrCat("an upload (", upload->header_.display_name(), ") sent nothing for ",
                       absl::FormatDuration(now - upload->last_activity_),
                       " and was dropped to make room for another"));
    }
    upload->mu_.Unlock();
  }
}

std::vector<std::string> FileManager::UsersLocked(const std::string& file_id) const {
  auto it = pins_.find(file_id);
  if (it == pins_.end()) return {};
  return std::vector<std::string>(it->second.begin(), it->second.end());
}

absl::StatusOr<v1::File> FileManager::Get(const std::string& file_id, const Caller& caller) const {
  ASSIGN_OR_RETURN(v1::File file, options_.store->Get(file_id));
  if (!caller.CanSee(file.tenant())) return NoFile(file_id);
  absl::MutexLock lock(&mu_);
  for (const std::string& job : UsersLocked(file_id)) file.add_in_use_by(job);
  return file;
}

absl::StatusOr<v1::ListFilesResponse> FileManager::List(const v1::ListFilesRequest& request,
                                                        const Caller& caller) const {
  if (request.page_size() < 0 || request.page_size() > kMaxPageSize) {
    return InvalidField("page_size", absl::StrCat("must be between 0 and ", kMaxPageSize, ", got ",
                                                  request.page_size()));
  }
  const int page_size = request.page_size() == 0 ? kDefaultPageSize : request.page_size();
  uint64_t before = 0;  // 0: from the newest
  if (!request.page_token().empty() &&
      (!absl::SimpleAtoi(request.page_token(), &before) || before == 0)) {
    return InvalidField("page_token", "is not a token from a previous page");
  }
  v1::ListFilesResponse response;
  absl::MutexLock lock(&mu_);
  for (v1::File& file : options_.store->List()) {
    const uint64_t n = storage::FileNumber(file.id());
    if (before != 0 && n >= before) continue;
    if (request.kind() != v1::FILE_KIND_UNSPECIFIED && file.kind() != request.kind()) continue;
    if (!caller.CanSee(file.tenant())) continue;
    if (response.files_size() == page_size) {
      response.set_next_page_token(
          absl::StrCat(storage::FileNumber(response.files().rbegin()->id())));
      break;
    }
    for (const std::string& job : UsersLocked(file.id())) file.add_in_use_by(job);
    *response.add_files() = std::move(file);
  }
  if (caller.admin) {
    response.set_stored_bytes(options_.store->stored_bytes());
    response.set_capacity_bytes(options_.max_stored_bytes);
  } else {
    // A user's own (the daemon's total, shared content counted once, would
    // tell whether another tenant holds a file it uploads).
    response.set_stored_bytes(UsageOf(caller.tenant).bytes);
    response.set_capacity_bytes(options_.max_tenant_bytes > 0 ? options_.max_tenant_bytes
                                                              : options_.max_stored_bytes);
  }
  return response;
}

absl::StatusOr<v1::DeleteFileResponse> FileManager::Delete(const std::string& file_id,
                                                           const Caller& caller) {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(const v1::File file, options_.store->Get(file_id));
  if (!caller.CanSee(file.tenant())) return NoFile(file_id);
  if (std::vector<std::string> users = UsersLocked(file_id); !users.empty()) {
    return WithReason(absl::FailedPreconditionError(absl::StrCat(
                          file_id, " is in use by ", absl::StrJoin(users, ", "),
                          users.size() == 1 ? ", which has" : ", which have", " not ended; cancel ",
                          users.size() == 1 ? "it" : "them", " or wait")),
                      "FILE_IN_USE", {{"job_id", users[0]}});
  }
  ASSIGN_OR_RETURN(int64_t freed, options_.store->Delete(file_id));
  Log(LogLevel::kInfo, absl::StrCat(file_id, ": deleted (", Mib(freed), " freed)"));
  v1::DeleteFileResponse response;
  // To a user, what its own usage went down by: whether another tenant
  // stores the same bytes (so that the disk got less back) is not its to
  // know.
  response.set_bytes_freed(caller.admin ? freed : file.bytes());
  return response;
}

absl::StatusOr<FileManager::Resolved> FileManager::Resolve(const std::string& field,
                                                           const std::string& file_id,
                                                           v1::FileKind kind,
                                                           const Caller& caller) const {
  absl::StatusOr<v1::File> file = options_.store->Get(file_id);
  if (!file.ok() || !caller.CanSee(file->tenant())) {
    return InvalidField(field, absl::StrCat("no uploaded file ", QuoteUserText(file_id)));
  }
  if (file->kind() != kind) {
    return InvalidField(
        field,
        absl::StrCat(file_id, " is a ", file->kind() == v1::FILE_KIND_MODEL ? "model" : "dataset",
                     ", not a ", kind == v1::FILE_KIND_MODEL ? "model" : "dataset"));
  }
  Resolved resolved;
  resolved.path = options_.store->ObjectPath(file_id);
  if (kind == v1::FILE_KIND_DATASET) {
    resolved.path = (fs::path(resolved.path) / file->entries(0).name()).string();
  }
  resolved.file = *std::move(file);
  return resolved;
}

absl::Status FileManager::Pin(const std::string& job_id, const std::vector<std::string>& file_ids) {
  absl::MutexLock lock(&mu_);
  for (const std::string& id : file_ids) {
    if (!options_.store->Get(id).ok()) {
      return InvalidField("file_id", absl::StrCat(id, " was deleted"));
    }
  }
  for (const std::string& id : file_ids) pins_[id].insert(job_id);
  return absl::OkStatus();
}

void FileManager::Unpin(const std::string& job_id) {
  absl::MutexLock lock(&mu_);
  for (auto it = pins_.begin(); it != pins_.end();) {
    it->second.erase(job_id);
    it = it->second.empty() ? pins_.erase(it) : std::next(it);
  }
}

void FileManager::MovePins(const std::string& from, const std::string& to) {
  absl::MutexLock lock(&mu_);
  for (auto& [id, jobs] : pins_) {
    if (jobs.erase(from) > 0) jobs.insert(to);
  }
}

}  // namespace ftd::core
