#include "client/connection.h"

#include "common/pem.h"
#include "common/status_macros.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"

namespace ftd::client {
absl::StatusOr<std::shared_ptr<grpc::Channel>> Connect(const ConnectionOptions& options) {
  grpc::ChannelArguments arguments;
  const bool tls = options.tls || !options.ca_file.empty() || !options.cert_file.empty();
  if (!tls) {
    return grpc::CreateCustomChannel(options.address, grpc::InsecureChannelCredentials(),
                                     arguments);
  }
  if (options.cert_file.empty() != options.key_file.empty()) {
    return absl::InvalidArgumentError(options.cert_file.empty()
                                          ? "--tls_key: needs --tls_cert too"
                                          : "--tls_cert: needs --tls_key too");
  }
  grpc::SslCredentialsOptions ssl;
  if (!options.ca_file.empty()) {
    ASSIGN_OR_RETURN(ssl.pem_root_certs, ReadPem("--tls_ca", options.ca_file, "CERTIFICATE"));
  }
  if (!options.cert_file.empty()) {
    ASSIGN_OR_RETURN(ssl.pem_cert_chain, ReadPem("--tls_cert", options.cert_file, "CERTIFICATE"));
    ASSIGN_OR_RETURN(ssl.pem_private_key, ReadPem("--tls_key", options.key_file, "PRIVATE KEY"));
  }
  if (!options.server_name.empty()) {
    arguments.SetSslTargetNameOverride(options.server_name);
  }
  return grpc::CreateCustomChannel(options.address, grpc::SslCredentials(ssl), arguments);
}

}  // namespace ftd::client
