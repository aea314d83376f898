#include "server/pool/job_files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "common/fs_util.h"
#include "common/sha256.h"

namespace ftd::pool {

namespace fs = std::filesystem;

namespace {

constexpr int kMaxModelFiles = 256;

bool PlainName(const std::string& name) {
  if (name.empty() || name.size() > 128 || name[0] == '.') return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '.' || c == '-' || c == '_';
  });
}

// The file's SHA-256 and size, read without following a link.
absl::Status Describe(const std::string& path, v1::InputFile* file) {
  const int fd = OpenNoLinks(fs::absolute(path).string(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return absl::UnavailableError(absl::StrCat("cannot read \"", path, "\""));
  Sha256 hash;
  std::string buffer(1 << 20, '\0');
  int64_t size = 0;
  while (true) {
    const ssize_t n = ::read(fd, buffer.data(), buffer.size());
    if (n < 0) {
      ::close(fd);
      return absl::UnavailableError(absl::StrCat("cannot read \"", path, "\""));
    }
    if (n == 0) break;
    hash.Update(std::string_view(buffer.data(), static_cast<size_t>(n)));
    size += n;
  }
  ::close(fd);
  file->set_sha256(hash.FinishHex());
  file->set_size(size);
  return absl::OkStatus();
}

bool IsRegularFile(const fs::path& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

absl::Status Add(v1::InputFile::Role role, const std::string& name, const fs::path& path,
                 std::vector<WorkerPool::OfferedFile>* out) {
  WorkerPool::OfferedFile offered;
  offered.file.set_role(role);
  offered.file.set_name(name);
  offered.path = path.string();
  if (absl::Status s = Describe(offered.path, &offered.file); !s.ok()) return s;
  out->push_back(std::move(offered));
  return absl::OkStatus();
}

}  // namespace

bool ValidInputName(const std::string& name, bool checkpoint) {
  if (!checkpoint) return PlainName(name);
  const size_t slash = name.find('/');
  return slash != std::string::npos && PlainName(name.substr(0, slash)) &&
         PlainName(name.substr(slash + 1));
}

absl::StatusOr<std::vector<WorkerPool::OfferedFile>> JobFiles(const ftd::v1::JobSpec& spec,
                                                              const std::string& checkpoint_dir) {
  std::vector<WorkerPool::OfferedFile> files;
  std::error_code ec;
  std::vector<fs::path> model_files;
  for (const fs::directory_entry& entry : fs::directory_iterator(spec.base_model(), ec)) {
    const std::string name = entry.path().filename().string();
    if (!PlainName(name) || !IsRegularFile(entry.path())) continue;
    model_files.push_back(entry.path());
  }
  if (ec) {
    return absl::UnavailableError(
        absl::StrCat("base_model: cannot list \"", spec.base_model(), "\": ", ec.message()));
  }
  if (static_cast<int>(model_files.size()) > kMaxModelFiles) {
    return absl::FailedPreconditionError(
        absl::StrCat("base_model: \"", spec.base_model(), "\" holds ", model_files.size(),
                     " files; a job on several hosts ships at most ", kMaxModelFiles));
  }
  std::sort(model_files.begin(), model_files.end());
  for (const fs::path& path : model_files) {
    if (absl::Status s = Add(v1::InputFile::ROLE_MODEL, path.filename().string(), path, &files);
        !s.ok()) {
      return s;
    }
  }
  for (const auto& [role, dataset] :
       {std::pair<v1::InputFile::Role, const ftd::v1::Dataset*>{v1::InputFile::ROLE_TRAIN,
                                                                &spec.train_dataset()},
        {v1::InputFile::ROLE_VALIDATION,
         spec.has_validation_dataset() ? &spec.validation_dataset() : nullptr}}) {
    if (dataset == nullptr || dataset->path().empty()) continue;
    const fs::path path(dataset->path());
    std::string name = path.filename().string();
    if (!PlainName(name)) name = role == v1::InputFile::ROLE_TRAIN ? "train" : "validation";
    if (absl::Status s = Add(role, name, path, &files); !s.ok()) return s;
  }
  if (!checkpoint_dir.empty() && fs::is_directory(checkpoint_dir, ec)) {
    for (const fs::directory_entry& folder : fs::directory_iterator(checkpoint_dir, ec)) {
      const std::string step = folder.path().filename().string();
      // Staged (hidden) folders are not checkpoints yet.
      if (!PlainName(step) || !folder.is_directory(ec) || folder.is_symlink(ec)) continue;
      for (const fs::directory_entry& entry : fs::directory_iterator(folder.path(), ec)) {
        const std::string name = entry.path().filename().string();
        if (!PlainName(name) || !IsRegularFile(entry.path())) continue;
        // A checkpoint deleted meanwhile (the job's newer one replaced it)
        // is left out; the worker reads the others.
        if (absl::Status s =
                Add(v1::InputFile::ROLE_CHECKPOINT, step + "/" + name, entry.path(), &files);
            !s.ok() && fs::exists(entry.path())) {
          return s;
        }
      }
    }
  }
  return files;
}

}  // namespace ftd::pool
