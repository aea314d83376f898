#include "common/fs_util.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace ftd {

namespace fs = std::filesystem;

std::string FileVersion(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return "";
  return absl::StrCat(st.st_ino, ":", st.st_size, ":", st.st_mtim.tv_sec, ".", st.st_mtim.tv_nsec);
}

absl::StatusOr<std::string> CanonicalPath(const std::string& path) {
  if (path.empty()) return absl::InvalidArgumentError("the path is empty");
  fs::path p(path);
  if (!p.is_absolute()) {
    return absl::InvalidArgumentError(absl::StrCat("\"", path, "\" is not an absolute path"));
  }
  std::error_code ec;
  fs::path canonical = fs::weakly_canonical(p, ec);
  if (ec) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot resolve \"", path, "\": ", ec.message()));
  }
  return canonical.lexically_normal().string();
}

bool IsWithin(const std::string& path, const std::string& root) {
  fs::path p = fs::path(path).lexically_normal();
  fs::path r = fs::path(root).lexically_normal();
  auto pi = p.begin();
  for (auto ri = r.begin(); ri != r.end(); ++ri) {
    if (ri->empty()) continue;  // a trailing separator
    if (pi == p.end() || *pi != *ri) return false;
    ++pi;
  }
  return true;
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::error_code ec;
  fs::file_status st = fs::status(path, ec);
  if (ec || !fs::exists(st)) {
    return absl::NotFoundError(absl::StrCat("\"", path, "\" does not exist"));
  }
  if (!fs::is_regular_file(st)) {
    return absl::FailedPreconditionError(absl::StrCat("\"", path, "\" is not a regular file"));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::UnavailableError(
        absl::StrCat("cannot open \"", path, "\": ", std::strerror(errno)));
  }
  std::ostringstream out;
  out << in.rdbuf();
  if (in.bad()) return absl::UnavailableError(absl::StrCat("cannot read \"", path, "\""));
  return out.str();
}

int OpenNoLinks(const std::string& path, int flags) {
  if (path.empty() || path[0] != '/')
    return ::openat(AT_FDCWD, path.c_str(), flags | O_NOFOLLOW | O_CLOEXEC);
  // Component by component from "/", none followed if it is a link: a
  // canonical path has none, so a link met is one swapped in since.
  int dir = ::open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0) return -1;
  std::vector<std::string> parts;
  for (absl::string_view part : absl::StrSplit(path, '/', absl::SkipEmpty())) {
    parts.emplace_back(part);
  }
  if (parts.empty()) return dir;
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    const int next =
        ::openat(dir, parts[i].c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    const int err = errno;
    ::close(dir);
    if (next < 0) {
      errno = err == ENOTDIR ? ELOOP : err;  // a link to a folder reads as "not a folder"
      return -1;
    }
    dir = next;
  }
  const int fd = ::openat(dir, parts.back().c_str(), flags | O_NOFOLLOW | O_CLOEXEC);
  const int err = errno;
  ::close(dir);
  errno = err;
  return fd;
}

absl::StatusOr<std::string> ReadFileNoFollow(const std::string& path, int64_t max_bytes) {
  // O_NONBLOCK: a FIFO put in a regular file's place does not block the
  // open; it is then refused as not a regular file.
  const int fd = OpenNoLinks(path, O_RDONLY | O_NONBLOCK);
  if (fd < 0) {
    if (errno == ENOENT) return absl::NotFoundError(absl::StrCat("\"", path, "\" does not exist"));
    if (errno == ELOOP) {
      return absl::FailedPreconditionError(
          absl::StrCat("\"", path,
                       "\" is, or lies in, a symbolic link; ftd reads a model's and "
                       "a dataset's files only through regular folders"));
    }
    return absl::UnavailableError(
        absl::StrCat("cannot open \"", path, "\": ", std::strerror(errno)));
  }
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return absl::FailedPreconditionError(absl::StrCat("\"", path, "\" is not a regular file"));
  }
  if (st.st_size > max_bytes) {
    ::close(fd);
    return absl::FailedPreconditionError(absl::StrCat("\"", path, "\" is ", st.st_size >> 20,
                                                      " MiB, more than the ", max_bytes >> 20,
                                                      " MiB ftd reads of such a file"));
  }
  std::string content;
  content.resize(static_cast<size_t>(st.st_size));
  size_t done = 0;
  while (done < content.size()) {
    const ssize_t n = ::read(fd, content.data() + done, content.size() - done);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  ::close(fd);
  if (done != content.size()) {
    return absl::UnavailableError(absl::StrCat("cannot read \"", path, "\""));
  }
  return content;
}

absl::Status IoError(int err, const std::string& what) {
  const std::string message = absl::StrCat(what, ": ", std::strerror(err));
  // A full disk, a quota, or the process's file size limit.
  if (err == ENOSPC || err == EDQUOT || err == EFBIG) return absl::ResourceExhaustedError(message);
  return absl::UnavailableError(message);
}

absl::Status SyncPath(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return IoError(errno, absl::StrCat("cannot open ", path));
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0) return IoError(err, absl::StrCat("cannot sync ", path));
  return absl::OkStatus();
}

absl::Status WriteAll(int fd, std::string_view data, const std::string& path) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return IoError(errno, absl::StrCat("cannot write ", path));
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

absl::Status WriteFileAtomically(const std::string& path, const std::string& contents) {
  const std::string temp = path + ".tmp";
  // A stale temporary (a crash mid-write) goes; a link planted in its place
  // is removed, not followed.
  ::unlink(temp.c_str());
  const int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (fd < 0) return IoError(errno, absl::StrCat("cannot create ", temp));
  absl::Status status = WriteAll(fd, contents, temp);
  if (status.ok() && ::fsync(fd) != 0) status = IoError(errno, absl::StrCat("cannot sync ", temp));
  if (::close(fd) != 0 && status.ok()) status = IoError(errno, absl::StrCat("cannot close ", temp));
  if (!status.ok()) {
    ::unlink(temp.c_str());
    return status;
  }
  std::error_code ec;
  fs::rename(temp, path, ec);
  if (ec) return IoError(ec.value(), absl::StrCat("cannot rename ", temp));
  return SyncPath(fs::path(path).parent_path().string());
}

absl::Status ReplaceFolder(const std::string& staged, const std::string& path) {
  std::error_code ec;
  for (const auto& entry : fs::recursive_directory_iterator(staged, ec)) {
    if (entry.is_regular_file() || entry.is_directory()) {
      if (absl::Status s = SyncPath(entry.path().string()); !s.ok()) return s;
    }
  }
  if (ec) return IoError(ec.value(), absl::StrCat("cannot list ", staged));
  if (absl::Status s = SyncPath(staged); !s.ok()) return s;
  const std::string old = path + ".old";
  fs::remove_all(old, ec);
  if (fs::exists(path)) {
    fs::rename(path, old, ec);
    if (ec) return IoError(ec.value(), absl::StrCat("cannot move ", path));
  }
  fs::rename(staged, path, ec);
  if (ec) return IoError(ec.value(), absl::StrCat("cannot rename ", staged));
  const std::string parent = fs::path(path).parent_path().string();
  if (absl::Status s = SyncPath(parent); !s.ok()) return s;
  fs::remove_all(old, ec);
  return absl::OkStatus();
}

}  // namespace ftd
