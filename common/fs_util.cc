#include "common/fs_util.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace ftd {

namespace fs = std::filesystem;

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

absl::Status SyncPath(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return absl::UnavailableError(absl::StrCat("cannot open ", path, ": ", std::strerror(errno)));
  }
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0) {
    return absl::UnavailableError(absl::StrCat("cannot sync ", path, ": ", std::strerror(err)));
  }
  return absl::OkStatus();
}

absl::Status WriteFileAtomically(const std::string& path, const std::string& contents) {
  const std::string temp = path + ".tmp";
  {
    std::ofstream out(temp, std::ios::binary | std::ios::trunc);
    out << contents;
    out.flush();
    if (!out) return absl::UnavailableError(absl::StrCat("cannot write ", temp));
  }
  if (absl::Status s = SyncPath(temp); !s.ok()) return s;
  std::error_code ec;
  fs::rename(temp, path, ec);
  if (ec) return absl::UnavailableError(absl::StrCat("cannot rename ", temp, ": ", ec.message()));
  return SyncPath(fs::path(path).parent_path().string());
}

absl::Status ReplaceFolder(const std::string& staged, const std::string& path) {
  std::error_code ec;
  for (const auto& entry : fs::recursive_directory_iterator(staged, ec)) {
    if (entry.is_regular_file() || entry.is_directory()) {
      if (absl::Status s = SyncPath(entry.path().string()); !s.ok()) return s;
    }
  }
  if (ec) return absl::UnavailableError(absl::StrCat("cannot list ", staged, ": ", ec.message()));
  if (absl::Status s = SyncPath(staged); !s.ok()) return s;
  const std::string old = path + ".old";
  fs::remove_all(old, ec);
  if (fs::exists(path)) {
    fs::rename(path, old, ec);
    if (ec) return absl::UnavailableError(absl::StrCat("cannot move ", path, ": ", ec.message()));
  }
  fs::rename(staged, path, ec);
  if (ec) return absl::UnavailableError(absl::StrCat("cannot rename ", staged, ": ", ec.message()));
  const std::string parent = fs::path(path).parent_path().string();
  if (absl::Status s = SyncPath(parent); !s.ok()) return s;
  fs::remove_all(old, ec);
  return absl::OkStatus();
}

}  // namespace ftd
