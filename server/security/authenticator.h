// Who is calling: a bearer token looked up in the tokens file, or (with
// mutual TLS, when allowed) the verified client certificate's common name.
//
// The tokens file has one token a line, as `SHA256HEX TENANT ROLE` (the
// token's SHA-256 in hex, the tenant it acts for, `admin` or `user`); `#`
// starts a comment. Only digests are kept: the tokens themselves are never
// stored or logged. The file is re-read when it changes; a version that does
// not parse is refused (logged, with its line number) and the one before
// stays in force.
//
// Thread-safe.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/server_context.h"
#include "server/core/caller.h"

namespace ftd::security {

class Authenticator {
 public:
  struct Options {
    std::string tokens_file;
    // How often the tokens file is checked for a new version.
    absl::Duration reload_interval = absl::Seconds(10);
    // A call without a token but with a verified client certificate acts
    // for the tenant its common name names (mutual TLS only).
    bool certificate_tenants = false;
    // Tenants named by certificates that are admins.
    std::vector<std::string> admin_tenants;
    std::function<absl::Time()> now = [] { return absl::Now(); };
  };

  // Errors: INVALID_ARGUMENT naming the tokens file and the line that does
  // not parse (never its contents).
  static absl::StatusOr<std::unique_ptr<Authenticator>> Create(Options options);

  // `authorization`: the call's "authorization" metadata ("Bearer TOKEN"),
  // empty without; `common_name`: its verified client certificate's CN,
  // empty without. Errors: UNAUTHENTICATED with reason MISSING_CREDENTIALS
  // or INVALID_TOKEN.
  absl::StatusOr<core::Caller> Authenticate(absl::string_view authorization,
                                            absl::string_view common_name);

  // How often the tokens file is checked: a stream opened with a token
  // that is revoked ends within this (server/api/open_streams.h).
  absl::Duration reload_interval() const { return options_.reload_interval; }
  absl::Time Now() const { return options_.now(); }

  // A valid tenant name: 1 to 63 of a-z, 0-9, '-', '_', '.', starting with a
  // letter or digit.
  static bool ValidTenant(absl::string_view name);

 private:
  struct Identity {
    std::string tenant;
    bool admin = false;
  };
  struct FileVersion {
    int64_t size = -1;
    int64_t mtime_ns = 0;
    uint64_t inode = 0;
    bool operator==(const FileVersion& o) const {
      return size == o.size && mtime_ns == o.mtime_ns && inode == o.inode;
    }
  };

  explicit Authenticator(Options options) : options_(std::move(options)) {}
  static absl::StatusOr<std::map<std::string, Identity>> Parse(const std::string& path,
                                                               const std::string& text);
  static FileVersion VersionOf(const std::string& path);
  void ReloadIfChangedLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Options options_;
  absl::Mutex mu_;
  // SHA-256 hex of a token -> who it is.
  std::map<std::string, Identity> tokens_ ABSL_GUARDED_BY(mu_);
  FileVersion version_ ABSL_GUARDED_BY(mu_);
  absl::Time next_check_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
};

// What a call presented, kept by a stream so that it can be checked again
// while the stream is open (a revoked token, an expired certificate). Holds
// the bearer token in memory only; never logged.
struct CallCredential {
  // The "authorization" metadata; empty without.
  std::string authorization;
  // The verified client certificate's common name, and when that
  // certificate stops being valid; empty and never without one.
  std::string common_name;
  absl::Time certificate_expiry = absl::InfiniteFuture();
};

// The credential `context`'s call presented.
CallCredential CredentialOf(const grpc::ServerContextBase& context);

// The caller `credential` names through `auth` (reading the tokens file
// again if it changed); without authentication (`auth` nullptr) the admin
// of tenant "". Errors: as Authenticate's, and UNAUTHENTICATED
// (INVALID_CERTIFICATE) once the client certificate has expired.
absl::StatusOr<core::Caller> AuthenticateCredential(Authenticator* auth,
                                                    const CallCredential& credential,
                                                    absl::Time now);

// The caller of a gRPC call: its "authorization" metadata and verified
// client certificate through `auth`; without authentication (`auth`
// nullptr) the admin of tenant "".
absl::StatusOr<core::Caller> AuthenticateCall(Authenticator* auth,
                                              const grpc::ServerContextBase& context);

}  // namespace ftd::security
