#include "server/security/transport.h"

#include "absl/strings/str_cat.h"
#include "common/address.h"
#include "common/pem.h"
#include "common/status_macros.h"
#include "grpcpp/security/tls_certificate_provider.h"
#include "grpcpp/security/tls_credentials_options.h"

namespace ftd::security {

absl::StatusOr<Transport> ServerTransport(const TransportOptions& options,
                                          const std::string& address) {
  Transport transport;
  if (options.cert_file.empty() != options.key_file.empty()) {
    return absl::InvalidArgumentError(options.cert_file.empty()
                                          ? "tls_cert: --tls_key needs --tls_cert too"
                                          : "tls_key: --tls_cert needs --tls_key too");
  }
  if (options.cert_file.empty()) {
    if (!options.client_ca_file.empty()) {
      return absl::InvalidArgumentError(
          "tls_client_ca: client certificates need TLS: give --tls_cert and --tls_key too");
    }
    if (!options.allow_insecure && !IsLoopbackAddress(address)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "address: \"", address,
          "\" is not a loopback address, and plaintext there lets anyone who reaches it use "
          "the daemon; serve TLS (--tls_cert, --tls_key) or say --allow_insecure"));
    }
    transport.credentials = grpc::InsecureServerCredentials();
    transport.description = IsLoopbackAddress(address)
                                ? "plaintext (loopback only)"
                                : "PLAINTEXT on a non-loopback address (--allow_insecure): "
                                  "anyone who reaches it can use the daemon";
    return transport;
  }
  // Read once here for a clear error now; gRPC re-reads them as they change.
  RETURN_IF_ERROR(ReadPem("tls_cert", options.cert_file, "CERTIFICATE").status());
  RETURN_IF_ERROR(ReadPem("tls_key", options.key_file, "PRIVATE KEY").status());
  if (!options.client_ca_file.empty()) {
    RETURN_IF_ERROR(ReadPem("tls_client_ca", options.client_ca_file, "CERTIFICATE").status());
  }
  const unsigned int refresh = static_cast<unsigned int>(
      std::max<int64_t>(1, absl::ToInt64Seconds(options.reload_interval)));
  auto provider = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
      options.key_file, options.cert_file, options.client_ca_file, refresh);
  grpc::experimental::TlsServerCredentialsOptions tls(provider);
  tls.watch_identity_key_cert_pairs();
  if (options.client_ca_file.empty()) {
    tls.set_cert_request_type(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
    transport.description = "TLS";
  } else {
    tls.watch_root_certs();
    tls.set_cert_request_type(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
    transport.description = "mutual TLS (client certificates required)";
  }
  transport.credentials = grpc::experimental::TlsServerCredentials(tls);
  transport.tls = true;
  return transport;
}

}  // namespace ftd::security
