#include "server/core/output_reader.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "absl/strings/str_cat.h"
#include "common/fs_util.h"
#include "common/log.h"
#include "common/sha256.h"

namespace ftd::core {
namespace {

absl::Status OpenError(int err, const std::string& path) {
  if (err == ENOENT) return absl::NotFoundError(absl::StrCat(path, " does not exist"));
  if (err == ELOOP || err == ENOTDIR) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, " is a symbolic link or not what it should be; it is not served"));
  }
  return IoError(err, absl::StrCat("cannot open ", path));
}

}  // namespace

OutputReader::~OutputReader() {
  for (int fd : fds_) ::close(fd);
}

absl::StatusOr<std::unique_ptr<OutputReader>> OutputReader::Open(const std::string& folder,
                                                                 const std::string& file_name) {
  std::unique_ptr<OutputReader> reader(new OutputReader());
  reader->folder_ = folder;
  const int dir = ::open(folder.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (dir < 0) return OpenError(errno, folder);
  std::vector<std::string> names;
  if (!file_name.empty()) {
    names.push_back(file_name);
  } else {
    const int listed = ::dup(dir);
    DIR* d = listed < 0 ? nullptr : ::fdopendir(listed);
    if (d == nullptr) {
      const int err = errno;
      if (listed >= 0) ::close(listed);
      ::close(dir);
      return IoError(err, absl::StrCat("cannot list ", folder));
    }
    while (dirent* e = ::readdir(d)) {
      const std::string name = e->d_name;
      if (name == "." || name == "..") continue;
      names.push_back(name);
    }
    ::closedir(d);
    std::sort(names.begin(), names.end());
  }
  for (const std::string& name : names) {
    const std::string path = absl::StrCat(folder, "/", name);
    const int fd = ::openat(dir, name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    struct stat st;
    if (fd < 0 || ::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
      const int err = fd < 0 ? errno : 0;
      if (fd >= 0) ::close(fd);
      if (!file_name.empty()) {
        ::close(dir);
        return err == 0 ? absl::FailedPreconditionError(
                              absl::StrCat(path, " is not a regular file; it is not served"))
                        : OpenError(err, path);
      }
      Log(LogLevel::kWarning,
          absl::StrCat(path, " is not a regular file (a symbolic link?); left out of downloads"));
      continue;
    }
    reader->fds_.push_back(fd);
    // The digest, read through the descriptor the bytes will come from.
    Sha256 digest;
    std::string buffer(1 << 20, '\0');
    int64_t size = 0;
    while (true) {
      const ssize_t n = ::pread(fd, buffer.data(), buffer.size(), size);
      if (n < 0) {
        if (errno == EINTR) continue;
        const int err = errno;
        ::close(dir);
        return IoError(err, absl::StrCat("cannot read ", path));
      }
      if (n == 0) break;
      digest.Update(std::string_view(buffer.data(), static_cast<size_t>(n)));
      size += n;
    }
    v1::FileEntry entry;
    entry.set_name(name);
    entry.set_size(size);
    entry.set_sha256(digest.FinishHex());
    reader->entries_.push_back(std::move(entry));
  }
  ::close(dir);
  return reader;
}

absl::StatusOr<std::string> OutputReader::Next(size_t max_bytes) {
  std::string out;
  while (current_ < entries_.size() && out.size() < max_bytes) {
    const int64_t left = entries_[current_].size() - offset_;
    if (left == 0) {
      ++current_;
      offset_ = 0;
      continue;
    }
    const size_t want = static_cast<size_t>(std::min<int64_t>(left, max_bytes - out.size()));
    const size_t at = out.size();
    out.resize(at + want);
    const ssize_t n = ::pread(fds_[current_], out.data() + at, want, offset_);
    if (n < 0) {
      if (errno == EINTR) {
        out.resize(at);
        continue;
      }
      return IoError(errno, absl::StrCat("cannot read ", folder_, "/", entries_[current_].name()));
    }
    if (n == 0) {
      return absl::DataLossError(
          absl::StrCat(folder_, "/", entries_[current_].name(), " shrank while being sent"));
    }
    out.resize(at + static_cast<size_t>(n));
    offset_ += n;
  }
  return out;
}

}  // namespace ftd::core
