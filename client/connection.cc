#include "client/connection.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/fs_util.h"
#include "common/status_macros.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"

namespace ftd::client {
namespace {

absl::StatusOr<std::string> ReadPemFile(const std::string& flag, const std::string& path,
                                        const std::string& marker) {
  absl::StatusOr<std::string> content = ReadFile(path);
  if (!content.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", flag, ": cannot read \"", path, "\": ", content.status().message()));
  }
  if (!absl::StrContains(*content, marker)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", flag, ": \"", path, "\" is not a PEM file of the right kind"));
  }
  return content;
}

}  // namespace

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
    ASSIGN_OR_RETURN(ssl.pem_root_certs,
                     ReadPemFile("tls_ca", options.ca_file, "-----BEGIN CERTIFICATE-----"));
  }
  if (!options.cert_file.empty()) {
    ASSIGN_OR_RETURN(ssl.pem_cert_chain,
                     ReadPemFile("tls_cert", options.cert_file, "-----BEGIN CERTIFICATE-----"));
    ASSIGN_OR_RETURN(ssl.pem_private_key,
                     ReadPemFile("tls_key", options.key_file, "PRIVATE KEY-----"));
  }
  if (!options.server_name.empty()) {
    arguments.SetSslTargetNameOverride(options.server_name);
  }
  return grpc::CreateCustomChannel(options.address, grpc::SslCredentials(ssl), arguments);
}

}  // namespace ftd::client
