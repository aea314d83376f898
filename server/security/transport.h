// How the daemon's gRPC port is served: TLS from certificate files that are
// re-read when they change (rotated Kubernetes secrets), mutual TLS when a
// client CA is given, or plaintext, which only a loopback address gets
// unless the operator says otherwise (--allow_insecure).
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/security/server_credentials.h"

namespace ftd::security {

struct TransportOptions {
  // PEM files: the server's certificate chain and private key (both or
  // neither), and the CA whose certificates clients must present (mutual
  // TLS; needs the first two).
  std::string cert_file;
  std::string key_file;
  std::string client_ca_file;
  // How often the files are checked for a new version.
  absl::Duration reload_interval = absl::Minutes(1);
  // Serve plaintext on an address that is not loopback.
  bool allow_insecure = false;
};

struct Transport {
  std::shared_ptr<grpc::ServerCredentials> credentials;
  // For the start-up log line: "TLS", "mutual TLS" or "plaintext ...".
  std::string description;
  bool tls = false;
};

// The credentials for listening on `address` ("host:port"). Errors:
// INVALID_ARGUMENT naming the flag (tls_cert, tls_key, tls_client_ca: a file
// that is missing, unreadable or not PEM; one without the other; plaintext
// on a non-loopback address without allow_insecure). Never quotes a file.
absl::StatusOr<Transport> ServerTransport(const TransportOptions& options,
                                          const std::string& address);

}  // namespace ftd::security
