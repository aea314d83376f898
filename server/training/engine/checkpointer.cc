#include "server/training/engine/checkpointer.h"

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/fs_util.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "server/training/model/checkpoint.h"
#include "server/training/model/safetensors.h"

namespace ftd::training {
namespace {

namespace fs = std::filesystem;

constexpr char kMagic[] = "ftd-checkpoint/1\n";
constexpr size_t kMagicSize = sizeof(kMagic) - 1;
constexpr char kPrefix[] = "step-";
constexpr char kStaging[] = ".staging-";
constexpr char kStateFile[] = "state.pb";
constexpr char kTensorsFile[] = "tensors.safetensors";

constexpr char kOldSuffix[] = ".old";  // ReplaceFolder's name for the folder it replaces

std::string FolderName(int64_t step) { return absl::StrFormat("%s%012d", kPrefix, step); }

// "step-" and digits: a checkpoint's folder.
bool IsFolderName(const std::string& name) {
  const size_t n = sizeof(kPrefix) - 1;
  return name.size() > n && name.compare(0, n, kPrefix) == 0 &&
         std::all_of(name.begin() + n, name.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// A checkpoint's folder that a save of the same step had moved aside when it
// stopped (between ReplaceFolder's two renames): the folder's name, or "".
std::string MovedAside(const std::string& name) {
  const size_t n = sizeof(kOldSuffix) - 1;
  if (name.size() <= n || name.compare(name.size() - n, n, kOldSuffix) != 0) return "";
  std::string base = name.substr(0, name.size() - n);
  return IsFolderName(base) ? base : "";
}

// The file's SHA-256 (hex), read in chunks.
absl::StatusOr<std::string> FileSha256(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::UnavailableError(absl::StrCat("cannot read ", path));
  Sha256 hash;
  std::string buffer(1 << 20, '\0');
  while (in) {
    in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    hash.Update(std::string_view(buffer.data(), static_cast<size_t>(in.gcount())));
  }
  if (in.bad()) return absl::UnavailableError(absl::StrCat("cannot read ", path));
  return hash.FinishHex();
}

int64_t FolderBytes(const fs::path& folder) {
  int64_t bytes = 0;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(folder, ec)) {
    if (entry.is_regular_file(ec)) bytes += static_cast<int64_t>(entry.file_size(ec));
  }
  return bytes;
}

v1::Checkpoint Info(const internal::TrainingCheckpoint& state, int64_t bytes) {
  v1::Checkpoint info;
  info.set_step(state.step());
  info.set_epoch(state.epoch());
  *info.mutable_time() = state.time();
  info.set_bytes(bytes);
  info.set_reason(state.reason());
  return info;
}

absl::StatusOr<internal::TrainingCheckpoint> ReadState(const std::string& path) {
  ASSIGN_OR_RETURN(std::string contents, ReadFile(path));
  if (contents.size() < kMagicSize + 64 + 1 || contents.compare(0, kMagicSize, kMagic) != 0) {
    return absl::DataLossError(absl::StrCat(kStateFile, " is not an ftd checkpoint state"));
  }
  const std::string digest = contents.substr(kMagicSize, 64);
  const std::string_view payload = std::string_view(contents).substr(kMagicSize + 65);
  if (contents[kMagicSize + 64] != '\n' || Sha256::Hex(payload) != digest) {
    return absl::DataLossError(absl::StrCat(kStateFile, " fails its checksum"));
  }
  internal::TrainingCheckpoint state;
  if (!state.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
    return absl::DataLossError(absl::StrCat(kStateFile, " does not parse"));
  }
  return state;
}

}  // namespace

absl::StatusOr<v1::Checkpoint> Checkpointer::Save(
    internal::TrainingCheckpoint state,
    const std::vector<std::pair<std::string, torch::Tensor>>& tensors) {
  std::error_code ec;
  const bool made = !fs::exists(dir_, ec);
  fs::create_directories(dir_, ec);
  if (ec) {
    return absl::UnavailableError(absl::StrCat("cannot create ", dir_, ": ", ec.message()));
  }
  // The checkpoints' folder's entry is synced before a checkpoint in it is
  // relied on.
  if (made) RETURN_IF_ERROR(SyncPath(fs::path(dir_).parent_path().string()));
  // What an interrupted save left: its staged folder, and a folder it had
  // moved aside (put back when nothing replaced it, else deleted).
  for (const auto& entry : fs::directory_iterator(dir_, ec)) {
    const std::string entry_name = entry.path().filename().string();
    if (entry_name.rfind(kStaging, 0) == 0) {
      fs::remove_all(entry.path(), ec);
    } else if (const std::string base = MovedAside(entry_name); !base.empty()) {
      std::error_code exists_ec;
      if (fs::exists(fs::path(dir_) / base, exists_ec)) {
        fs::remove_all(entry.path(), ec);
      } else {
        fs::rename(entry.path(), fs::path(dir_) / base, ec);
      }
    }
  }
  const std::string name = FolderName(state.step());
  const fs::path staged = fs::path(dir_) / (kStaging + name);
  fs::create_directories(staged, ec);
  if (ec) {
    return absl::UnavailableError(
        absl::StrCat("cannot create ", staged.string(), ": ", ec.message()));
  }

  // The tensors, on the CPU, as F32.
  std::vector<torch::Tensor> held;
  std::vector<TensorToWrite> writes;
  held.reserve(tensors.size());
  for (const auto& [tensor_name, tensor] : tensors) {
    if (tensor.scalar_type() != torch::kFloat) {
      return absl::InvalidArgumentError(
          absl::StrCat("checkpoint tensor ", tensor_name, " is not float32"));
    }
    held.push_back(tensor.detach().to(torch::kCPU).contiguous());
    const torch::Tensor& t = held.back();
    TensorToWrite w;
    w.name = tensor_name;
    w.dtype = DType::kF32;
    w.shape.assign(t.sizes().begin(), t.sizes().end());
    w.bytes = std::string_view(static_cast<const char*>(t.data_ptr()),
                               static_cast<size_t>(t.numel()) * sizeof(float));
    writes.push_back(std::move(w));
  }
  const std::string tensors_path = (staged / kTensorsFile).string();
  RETURN_IF_ERROR(WriteSafetensors(tensors_path, writes, {{"format", "ftd-checkpoint"}}));
  held.clear();
  ASSIGN_OR_RETURN(std::string tensors_sha, FileSha256(tensors_path));
  state.set_tensors_sha256(tensors_sha);

  std::string payload;
  if (!state.SerializeToString(&payload)) {
    return absl::InternalError("the checkpoint state does not serialize");
  }
  std::string contents = absl::StrCat(kMagic, Sha256::Hex(payload), "\n", payload);
  {
    const std::string state_path = (staged / kStateFile).string();
    std::ofstream out(state_path, std::ios::binary | std::ios::trunc);
    out.write(contents.data(), static_cast<std::streamsize>(contents.size()));
    out.close();
    if (!out) {
      const int err = errno;
      fs::remove_all(staged, ec);
      return IoError(err != 0 ? err : EIO, absl::StrCat("cannot write ", state_path));
    }
  }
  const fs::path final_path = fs::path(dir_) / name;
  if (absl::Status s = ReplaceFolder(staged.string(), final_path.string()); !s.ok()) {
    fs::remove_all(staged, ec);
    return s;
  }
  const v1::Checkpoint info = Info(state, FolderBytes(final_path));

  // Keep the newest `keep_`.
  std::vector<std::string> folders = Folders();
  for (size_t i = 0; i + static_cast<size_t>(keep_) < folders.size(); ++i) {
    fs::remove_all(fs::path(dir_) / folders[i], ec);
  }
  SyncPath(dir_).IgnoreError();
  return info;
}

std::vector<std::string> Checkpointer::Folders() const {
  std::vector<std::string> names;
  std::vector<std::pair<std::string, std::string>> aside;  // (base, name)
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir_, ec)) {
    const std::string name = entry.path().filename().string();
    if (!entry.is_directory(ec) || entry.is_symlink(ec)) continue;
    if (IsFolderName(name)) {
      names.push_back(name);
    } else if (std::string base = MovedAside(name); !base.empty()) {
      aside.emplace_back(std::move(base), name);
    }
  }
  // A folder moved aside by a save that stopped counts as its step's
  // checkpoint while nothing took its place (the next save puts it back).
  for (const auto& [base, name] : aside) {
    if (std::find(names.begin(), names.end(), base) == names.end()) names.push_back(name);
  }
  std::sort(names.begin(), names.end());  // zero-padded steps: oldest first
  return names;
}

absl::StatusOr<Checkpointer::Loaded> Checkpointer::Load(const std::string& folder,
                                                        const std::string& run_digest) const {
  const fs::path path = fs::path(dir_) / folder;
  ASSIGN_OR_RETURN(internal::TrainingCheckpoint state, ReadState((path / kStateFile).string()));
  if (state.format() != 1) {
    return absl::DataLossError(absl::StrCat("unknown checkpoint format ", state.format()));
  }
  if (state.run_digest() != run_digest) {
    return absl::FailedPreconditionError(
        "it belongs to another run (the spec, model or data changed)");
  }
  const std::string tensors_path = (path / kTensorsFile).string();
  ASSIGN_OR_RETURN(std::string sha, FileSha256(tensors_path));
  if (sha != state.tensors_sha256()) {
    return absl::DataLossError(absl::StrCat(kTensorsFile, " fails its checksum"));
  }
  ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> file, SafetensorsFile::Open(tensors_path));
  Loaded loaded;
  for (const TensorInfo& info : file->tensors()) {
    ASSIGN_OR_RETURN(torch::Tensor t, ToTensor(*file, info));
    loaded.tensors[info.name] = std::move(t);
  }
  loaded.info = Info(state, FolderBytes(path));
  loaded.state = std::move(state);
  return loaded;
}

Checkpointer::LoadResult Checkpointer::LoadLatest(const std::string& run_digest) const {
  LoadResult result;
  std::vector<std::string> folders = Folders();
  for (auto it = folders.rbegin(); it != folders.rend(); ++it) {
    absl::StatusOr<Loaded> loaded = Load(*it, run_digest);
    if (loaded.ok()) {
      result.checkpoint = *std::move(loaded);
      break;
    }
    result.skipped.push_back(absl::StrCat(*it, ": ", loaded.status().message()));
  }
  return result;
}

std::vector<v1::Checkpoint> Checkpointer::List() const {
  std::vector<v1::Checkpoint> out;
  for (const std::string& folder : Folders()) {
    const fs::path path = fs::path(dir_) / folder;
    absl::StatusOr<internal::TrainingCheckpoint> state = ReadState((path / kStateFile).string());
    if (state.ok()) out.push_back(Info(*state, FolderBytes(path)));
  }
  return out;
}

absl::Status Checkpointer::RemoveAll() {
  std::error_code ec;
  fs::remove_all(dir_, ec);
  if (ec) return absl::UnavailableError(absl::StrCat("cannot delete ", dir_, ": ", ec.message()));
  const fs::path parent = fs::path(dir_).parent_path();
  if (fs::exists(parent)) return SyncPath(parent.string());
  return absl::OkStatus();
}

}  // namespace ftd::training
