#include "common/pem.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/fs_util.h"

namespace ftd {

absl::StatusOr<std::string> ReadPem(const std::string& flag, const std::string& path,
                                    const std::string& what) {
  absl::StatusOr<std::string> content = ReadFile(path);
  if (!content.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": cannot read \"", path, "\": ", content.status().message()));
  }
  // "-----BEGIN CERTIFICATE-----", "-----BEGIN PRIVATE KEY-----",
  // "-----BEGIN RSA PRIVATE KEY-----", "-----BEGIN EC PRIVATE KEY-----".
  const bool found = what == "PRIVATE KEY"
                         ? absl::StrContains(*content, "PRIVATE KEY-----")
                         : absl::StrContains(*content, absl::StrCat("-----BEGIN ", what, "-----"));
  if (!found) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": \"", path, "\" holds no PEM ", absl::AsciiStrToLower(what)));
  }
  return content;
}

}  // namespace ftd
