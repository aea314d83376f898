#include "server/pool/input_cache.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/fs_util.h"
#include "common/sha256.h"
#include "server/pool/job_files.h"

namespace ftd::pool {

namespace fs = std::filesystem;

namespace {

bool IsSha256(const std::string& s) {
  return s.size() == 64 && std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

// The SHA-256 of the open file `fd`, read from its start.
std::string HashOf(int fd, int64_t* size) {
  ::lseek(fd, 0, SEEK_SET);
  Sha256 hash;
  std::string buffer(1 << 20, '\0');
  *size = 0;
  while (true) {
    const ssize_t n = ::read(fd, buffer.data(), buffer.size());
    if (n <= 0) break;
    hash.Update(std::string_view(buffer.data(), static_cast<size_t>(n)));
    *size += n;
  }
  return hash.FinishHex();
}

// A replica's id as a folder name.
std::string FolderName(const std::string& id) {
  std::string out;
  for (char c : id) {
    const bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                       c == '-' || c == '_';
    out += plain ? c : '_';
  }
  return out.substr(0, 200);
}

}  // namespace

absl::StatusOr<std::unique_ptr<InputCache>> InputCache::Open(Options options) {
  std::error_code ec;
  fs::remove_all(fs::path(options.dir) / "runs", ec);
  fs::create_directories(fs::path(options.dir) / "blobs", ec);
  if (!ec) fs::create_directories(fs::path(options.dir) / "runs", ec);
  if (ec) {
    return absl::UnavailableError(
        absl::StrCat("cannot create the input cache in \"", options.dir, "\": ", ec.message()));
  }
  // Fetches that a crash interrupted.
  for (const fs::directory_entry& entry : fs::directory_iterator(fs::path(options.dir) / "blobs", ec)) {
    if (entry.path().filename().string().rfind(".tmp-", 0) == 0) fs::remove(entry.path(), ec);
  }
  return std::unique_ptr<InputCache>(new InputCache(std::move(options)));
}

std::string InputCache::RunDir(const std::string& id) const {
  return (fs::path(options_.dir) / "runs" / FolderName(id)).string();
}

absl::StatusOr<std::string> InputCache::Copy(const v1::InputFile& file) {
  const fs::path blobs = fs::path(options_.dir) / "blobs";
  const fs::path path = blobs / file.sha256();
  std::error_code ec;
  if (fs::exists(path, ec)) {
    // Used now: the least recently used go first.
    fs::last_write_time(path, fs::file_time_type::clock::now(), ec);
    return path.string();
  }
  const std::string tmp =
      (blobs / absl::StrCat(".tmp-", file.sha256(), "-",
                            std::hash<std::thread::id>()(std::this_thread::get_id())))
          .string();
  const int fd = ::open(tmp.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return IoError(errno, absl::StrCat("cannot write \"", tmp, "\""));
  absl::Status fetched = options_.fetch(file.sha256(), file.size(), fd);
  int64_t size = 0;
  const std::string digest = fetched.ok() ? HashOf(fd, &size) : "";
  if (fetched.ok() && (digest != file.sha256() || size != file.size())) {
    fetched = absl::DataLossError(absl::StrCat(
        file.name(), ": the coordinator's file changed while it was fetched (", size,
        " bytes with SHA-256 ", digest, "; expected ", file.size(), " with ", file.sha256(), ")"));
  }
  if (fetched.ok() && ::fsync(fd) != 0) {
    fetched = IoError(errno, absl::StrCat("cannot write \"", tmp, "\""));
  }
  ::close(fd);
  if (fetched.ok()) {
    fs::rename(tmp, path, ec);
    if (ec) fetched = absl::UnavailableError(absl::StrCat("cannot rename \"", tmp, "\": ", ec.message()));
  }
  if (!fetched.ok()) {
    fs::remove(tmp, ec);
    return fetched;
  }
  if (absl::Status synced = SyncPath(blobs.string()); !synced.ok()) return synced;
  return path.string();
}

absl::StatusOr<InputCache::Layout> InputCache::Prepare(const std::string& id,
                                                       const std::vector<v1::InputFile>& files) {
  const fs::path run = RunDir(id);
  Layout layout;
  layout.model_dir = (run / "model").string();
  layout.checkpoint_dir = (run / "checkpoints").string();
  layout.output_dir = (run / "out").string();
  std::error_code ec;
  fs::remove_all(run, ec);
  for (const char* sub : {"model", "train", "validation", "checkpoints", "out"}) {
    fs::create_directories(run / sub, ec);
  }
  if (ec) {
    return absl::UnavailableError(
        absl::StrCat("cannot create \"", run.string(), "\": ", ec.message()));
  }
  absl::MutexLock lock(&mu_);
  for (const v1::InputFile& file : files) {
    const bool checkpoint = file.role() == v1::InputFile::ROLE_CHECKPOINT;
    if (!ValidInputName(file.name(), checkpoint) || !IsSha256(file.sha256()) || file.size() < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("run.files: an input named with ", file.name().size(),
                       " bytes is not a file name and digest a worker writes"));
    }
    fs::path to;
    switch (file.role()) {
      case v1::InputFile::ROLE_MODEL:
        to = run / "model" / file.name();
        break;
      case v1::InputFile::ROLE_TRAIN:
        to = run / "train" / file.name();
        layout.train_path = to.string();
        break;
      case v1::InputFile::ROLE_VALIDATION:
        to = run / "validation" / file.name();
        layout.validation_path = to.string();
        break;
      case v1::InputFile::ROLE_CHECKPOINT:
        to = run / "checkpoints" / file.name();
        fs::create_directories(to.parent_path(), ec);
        break;
      default:
        return absl::InvalidArgumentError(
            absl::StrCat("run.files: ", file.name(), " has no role a worker knows"));
    }
    absl::StatusOr<std::string> copy = Copy(file);
    if (!copy.ok()) return copy.status();
    fs::create_hard_link(*copy, to, ec);
    if (ec) {
      ec.clear();
      fs::copy_file(*copy, to, fs::copy_options::overwrite_existing, ec);
    }
    if (ec) {
      return absl::UnavailableError(
          absl::StrCat("cannot place \"", to.string(), "\": ", ec.message()));
    }
  }
  if (layout.train_path.empty()) {
    return absl::InvalidArgumentError("run.files: the replica was sent no training dataset");
  }
  EvictLocked();
  return layout;
}

void InputCache::Release(const std::string& id) {
  std::error_code ec;
  fs::remove_all(RunDir(id), ec);
}

int64_t InputCache::bytes() const {
  absl::MutexLock lock(&mu_);
  int64_t total = 0;
  std::error_code ec;
  for (const fs::directory_entry& entry :
       fs::directory_iterator(fs::path(options_.dir) / "blobs", ec)) {
    if (entry.is_regular_file(ec)) total += static_cast<int64_t>(entry.file_size(ec));
  }
  return total;
}

void InputCache::EvictLocked() {
  struct Blob {
    fs::path path;
    int64_t size;
    fs::file_time_type used;
    bool linked;
  };
  std::vector<Blob> blobs;
  int64_t total = 0;
  std::error_code ec;
  for (const fs::directory_entry& entry :
       fs::directory_iterator(fs::path(options_.dir) / "blobs", ec)) {
    struct stat st;
    if (::lstat(entry.path().c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
    if (entry.path().filename().string().rfind(".tmp-", 0) == 0) continue;
    // A replica's folder links to it: in use.
    blobs.push_back({entry.path(), static_cast<int64_t>(st.st_size),
                     fs::last_write_time(entry.path(), ec), st.st_nlink > 1});
    total += static_cast<int64_t>(st.st_size);
  }
  if (total <= options_.max_bytes) return;
  std::sort(blobs.begin(), blobs.end(),
            [](const Blob& a, const Blob& b) { return a.used < b.used; });
  for (const Blob& blob : blobs) {
    if (total <= options_.max_bytes) break;
    if (blob.linked) continue;
    if (fs::remove(blob.path, ec)) total -= blob.size;
  }
}

}  // namespace ftd::pool
