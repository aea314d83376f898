#include "server/security/authenticator.h"

#include <sys/stat.h>

#include <algorithm>
#include <ctime>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/fs_util.h"
#include "common/log.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "server/core/error_details.h"
#include "openssl/pem.h"
#include "openssl/x509.h"

namespace ftd::security {
namespace {

absl::Status Unauthenticated(const std::string& message, const std::string& reason) {
  return core::WithReason(absl::UnauthenticatedError(message), reason, {});
}

bool IsDigest(absl::string_view s) {
  return s.size() == 64 && std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

}  // namespace

bool Authenticator::ValidTenant(absl::string_view name) {
  if (name.empty() || name.size() > 63 || !absl::ascii_isalnum(name[0])) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.';
  });
}

absl::StatusOr<std::map<std::string, Authenticator::Identity>> Authenticator::Parse(
    const std::string& path, const std::string& text) {
  std::map<std::string, Identity> tokens;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_number;
    line = line.substr(0, line.find('#'));
    std::vector<absl::string_view> fields =
        absl::StrSplit(line, absl::ByAnyChar(" \t\r"), absl::SkipEmpty());
    if (fields.empty()) continue;
    auto bad = [&](const std::string& why) {
      return absl::InvalidArgumentError(
          absl::StrCat("tokens_file: ", path, ":", line_number, ": ", why));
    };
    if (fields.size() != 3) return bad("expected SHA256HEX TENANT ROLE");
    if (!IsDigest(fields[0])) {
      return bad("the first field must be a token's SHA-256 in lower-case hex, not the token");
    }
    if (!ValidTenant(fields[1])) {
      return bad("the tenant must be 1 to 63 of a-z, 0-9, '-', '_', '.'");
    }
    if (fields[2] != "admin" && fields[2] != "user") return bad("the role must be admin or user");
    if (!tokens
             .emplace(std::string(fields[0]),
                      Identity{std::string(fields[1]), fields[2] == "admin"})
             .second) {
      return bad("this token's digest comes twice");
    }
  }
  return tokens;
}

Authenticator::FileVersion Authenticator::VersionOf(const std::string& path) {
  FileVersion version;
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return version;
  version.size = st.st_size;
  version.mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
  version.inode = st.st_ino;
  return version;
}

absl::StatusOr<std::unique_ptr<Authenticator>> Authenticator::Create(Options options) {
  for (const std::string& tenant : options.admin_tenants) {
    if (!ValidTenant(tenant)) {
      return absl::InvalidArgumentError(
          absl::StrCat("admin_tenants: \"", tenant, "\" is not a tenant name"));
    }
  }
  std::unique_ptr<Authenticator> auth(new Authenticator(std::move(options)));
  if (!auth->options_.tokens_file.empty()) {
    absl::MutexLock lock(&auth->mu_);
    auth->version_ = VersionOf(auth->options_.tokens_file);
    absl::StatusOr<std::string> text = ReadFile(auth->options_.tokens_file);
    if (!text.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("tokens_file: cannot read \"",
                                                     auth->options_.tokens_file,
                                                     "\": ", text.status().message()));
    }
    ASSIGN_OR_RETURN(auth->tokens_, Parse(auth->options_.tokens_file, *text));
    auth->next_check_ = auth->options_.now() + auth->options_.reload_interval;
  }
  return auth;
}

void Authenticator::ReloadIfChangedLocked() {
  const absl::Time now = options_.now();
  if (options_.tokens_file.empty() || now < next_check_) return;
  next_check_ = now + options_.reload_interval;
  const FileVersion version = VersionOf(options_.tokens_file);
  if (version == version_) return;
  if (version.size < 0) {
    // Gone: fail closed, every token refused until it is back.
    version_ = version;
    tokens_.clear();
    Log(LogLevel::kWarning, "the tokens file is gone; every token is refused until it is back");
    return;
  }
  absl::StatusOr<std::string> text = ReadFile(options_.tokens_file);
  absl::StatusOr<std::map<std::string, Identity>> tokens =
      text.ok() ? Parse(options_.tokens_file, *text)
                : absl::StatusOr<std::map<std::string, Identity>>(text.status());
  if (!tokens.ok()) {
    // Tried again only once the file changes again.
    version_ = version;
    Log(LogLevel::kWarning, absl::StrCat("the new tokens file is refused, the previous tokens "
                                         "stay in force: ",
                                         tokens.status().message()));
    return;
  }
  version_ = version;
  tokens_ = *std::move(tokens);
  Log(LogLevel::kInfo, absl::StrCat("tokens file re-read: ", tokens_.size(), " tokens"));
}

absl::StatusOr<core::Caller> Authenticator::Authenticate(absl::string_view authorization,
                                                         absl::string_view common_name) {
  if (!authorization.empty()) {
    constexpr absl::string_view kBearer = "Bearer ";
    if (!absl::StartsWith(authorization, kBearer) || authorization.size() == kBearer.size()) {
      return Unauthenticated("the authorization metadata must be \"Bearer <token>\"",
                             "INVALID_TOKEN");
    }
    const absl::string_view token = authorization.substr(kBearer.size());
    const std::string digest = Sha256::Hex(std::string_view(token.data(), token.size()));
    absl::MutexLock lock(&mu_);
    ReloadIfChangedLocked();
    auto it = tokens_.find(digest);
    if (it == tokens_.end()) {
      return Unauthenticated("the token is not valid (unknown, or revoked)", "INVALID_TOKEN");
    }
    return core::Caller{it->second.tenant, it->second.admin};
  }
  if (options_.certificate_tenants && !common_name.empty()) {
    if (!ValidTenant(common_name)) {
      return Unauthenticated("the client certificate's common name is not a tenant name",
                             "INVALID_CERTIFICATE");
    }
    const std::string tenant(common_name);
    const bool admin = std::find(options_.admin_tenants.begin(), options_.admin_tenants.end(),
                                 tenant) != options_.admin_tenants.end();
    return core::Caller{tenant, admin};
  }
  return Unauthenticated(
      "this daemon needs credentials: send the metadata \"authorization: Bearer <token>\" "
      "(ftctl: --token_file or $FTD_TOKEN)",
      "MISSING_CREDENTIALS");
}

namespace {

// When the PEM certificate `pem` stops being valid; never where it cannot
// be read (gRPC verified it already).
absl::Time CertificateExpiry(absl::string_view pem) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  if (bio == nullptr) return absl::InfiniteFuture();
  X509* cert = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  if (cert == nullptr) return absl::InfiniteFuture();
  absl::Time expiry = absl::InfiniteFuture();
  std::tm tm{};
  if (ASN1_TIME_to_tm(X509_get0_notAfter(cert), &tm) == 1) {
    expiry = absl::FromCivil(absl::CivilSecond(tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                                               tm.tm_hour, tm.tm_min, tm.tm_sec),
                             absl::UTCTimeZone());
  }
  X509_free(cert);
  return expiry;
}

}  // namespace

CallCredential CredentialOf(const grpc::ServerContextBase& context) {
  CallCredential credential;
  const auto& metadata = context.client_metadata();
  if (auto it = metadata.find("authorization"); it != metadata.end()) {
    credential.authorization.assign(it->second.data(), it->second.size());
  }
  const std::shared_ptr<const grpc::AuthContext> peer = context.auth_context();
  if (peer != nullptr && peer->IsPeerAuthenticated()) {
    const std::vector<grpc::string_ref> names = peer->FindPropertyValues("x509_common_name");
    if (!names.empty()) credential.common_name.assign(names[0].data(), names[0].size());
    const std::vector<grpc::string_ref> pem = peer->FindPropertyValues("x509_pem_cert");
    if (!pem.empty()) {
      credential.certificate_expiry =
          CertificateExpiry(absl::string_view(pem[0].data(), pem[0].size()));
    }
  }
  return credential;
}

absl::StatusOr<core::Caller> AuthenticateCredential(Authenticator* auth,
                                                    const CallCredential& credential,
                                                    absl::Time now) {
  if (auth == nullptr) return core::Caller{};
  if (credential.authorization.empty() && !credential.common_name.empty() &&
      now >= credential.certificate_expiry) {
    return Unauthenticated("the client certificate has expired", "INVALID_CERTIFICATE");
  }
  return auth->Authenticate(credential.authorization, credential.common_name);
}

absl::StatusOr<core::Caller> AuthenticateCall(Authenticator* auth,
                                              const grpc::ServerContextBase& context) {
  if (auth == nullptr) return core::Caller{};
  return AuthenticateCredential(auth, CredentialOf(context), auth->Now());
}

}  // namespace ftd::security
