// A server-side OpenSSL context for endpoints gRPC does not serve (the
// metrics endpoint), built from the same PEM files as the gRPC port's TLS and
// re-read when they change, as gRPC's file watcher does for the gRPC port.
#pragma once

#include <openssl/ssl.h>

#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace ftd::security {

class TlsServerContext {
 public:
  struct Files {
    // The certificate chain and its private key (both needed), and when
    // set, the CA whose certificates clients must present.
    std::string cert_file;
    std::string key_file;
    std::string client_ca_file;
    // How often the files are looked at for a new version.
    absl::Duration reload_interval = absl::Minutes(1);
  };

  // Errors: INVALID_ARGUMENT naming the file and why it does not load (never
  // quoting it). `flag` names the option the files came from in messages.
  static absl::StatusOr<std::unique_ptr<TlsServerContext>> Load(const std::string& flag,
                                                                const Files& files);

  // A new server-side connection for `fd` (non-blocking, handshake not yet
  // done), from the files' newest version that loads: when reload_interval
  // has passed since the last look and a file changed, it is loaded; one that
  // does not load is logged (once a version) and the one before kept.
  // Null when OpenSSL cannot make one.
  SSL* NewConnection(int fd);

 private:
  using ContextPtr = std::unique_ptr<SSL_CTX, void (*)(SSL_CTX*)>;
  TlsServerContext(std::string flag, Files files, ContextPtr context, std::string version);
  static absl::StatusOr<ContextPtr> Build(const std::string& flag, const Files& files);
  // Size, modification time and inode of each file, for noticing a change.
  std::string Version() const;

  const std::string flag_;
  const Files files_;
  absl::Mutex mu_;
  ContextPtr context_ ABSL_GUARDED_BY(mu_);
  std::string version_ ABSL_GUARDED_BY(mu_);  // of the files last looked at
  absl::Time last_look_ ABSL_GUARDED_BY(mu_);
};

}  // namespace ftd::security
