// The channel to the daemon: plaintext, TLS (verifying the server's
// certificate and name against a CA) or mutual TLS (presenting a client
// certificate too).
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "grpcpp/channel.h"

namespace ftd::client {

struct ConnectionOptions {
  std::string address;
  // TLS, verified against the system's CAs unless `ca_file` is given.
  bool tls = false;
  // PEM files. With `ca_file` the connection is TLS, verified against it;
  // `cert_file` and `key_file` (both or neither) are the client's
  // certificate for mutual TLS.
  std::string ca_file;
  std::string cert_file;
  std::string key_file;
  // The name the server's certificate must carry, when it is not the
  // address's host.
  std::string server_name;
};

// Errors: INVALID_ARGUMENT naming the flag of a file that is missing or not
// PEM, or of a certificate without its key.
absl::StatusOr<std::shared_ptr<grpc::Channel>> Connect(const ConnectionOptions& options);

}  // namespace ftd::client
