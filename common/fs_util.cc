#include "common/fs_util.h"

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

}  // namespace ftd
