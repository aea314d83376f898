// A blocking HTTPS request for tests, with OpenSSL: the server's certificate
// verified against a CA and a name, a client certificate when given.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <memory>
#include <string>

#include "absl/strings/numbers.h"

namespace ftd::testing {

struct HttpsOptions {
  std::string ca_file;
  std::string server_name = "ftd.test";
  std::string cert_file;  // the client's, optional
  std::string key_file;
};

struct HttpsResult {
  bool connected = false;  // the TLS handshake completed (server verified)
  std::string answer;      // what came back before the server closed
};

// Sends `request` to "127.0.0.1:port" (`address`) over TLS and reads the
// answer (3 s at most for each read).
inline HttpsResult HttpsGet(const std::string& address, const std::string& request,
                            const HttpsOptions& options) {
  HttpsResult result;
  int port = 0;
  if (!absl::SimpleAtoi(address.substr(address.rfind(':') + 1), &port)) return result;
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  timeval timeout{3, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return result;
  }
  std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> context(SSL_CTX_new(TLS_client_method()),
                                                            &SSL_CTX_free);
  SSL_CTX_load_verify_locations(context.get(), options.ca_file.c_str(), nullptr);
  SSL_CTX_set_verify(context.get(), SSL_VERIFY_PEER, nullptr);
  if (!options.cert_file.empty()) {
    SSL_CTX_use_certificate_chain_file(context.get(), options.cert_file.c_str());
    SSL_CTX_use_PrivateKey_file(context.get(), options.key_file.c_str(), SSL_FILETYPE_PEM);
  }
  std::unique_ptr<SSL, decltype(&SSL_free)> ssl(SSL_new(context.get()), &SSL_free);
  SSL_set_fd(ssl.get(), fd);
  SSL_set_tlsext_host_name(ssl.get(), options.server_name.c_str());
  SSL_set1_host(ssl.get(), options.server_name.c_str());
  if (SSL_connect(ssl.get()) == 1) {
    result.connected = true;
    if (SSL_write(ssl.get(), request.data(), static_cast<int>(request.size())) > 0) {
      char buffer[4096];
      int n;
      while ((n = SSL_read(ssl.get(), buffer, sizeof(buffer))) > 0) {
        result.answer.append(buffer, static_cast<size_t>(n));
      }
    }
  }
  ERR_clear_error();
  ssl.reset();
  close(fd);
  return result;
}

}  // namespace ftd::testing
