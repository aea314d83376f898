// MetricsHttpServer: serves the metrics in Prometheus's text format at
// GET /metrics over HTTP/1.1, on its own address.
//
// Not prometheus-cpp's Exposer: the CivetWeb that Debian builds it on starts
// its threads with a fixed 100 KiB stack, and once LibTorch and OpenBLAS are
// loaded glibc needs more than that for static TLS alone (108 KiB here), so
// pthread_create fails with EINVAL and the Exposer cannot start in ftd. This
// server runs one thread with the default stack and serves its connections
// from one poll loop with non-blocking sockets, so that no client can hold it
// up: a connection has `Options::connection_timeout_ms` for its request and
// the answer together, a request head at most `Options::max_request_bytes`
// (431 beyond), and at most `Options::max_connections` are open at once (a
// further one is answered 503 and closed). With `Options::tls` it serves
// HTTPS only (the handshake counts within the connection's time; a
// connection past the limit is closed without an answer).
#pragma once

#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/metrics/metrics.h"
#include "server/security/tls_context.h"

namespace ftd::metrics {

class MetricsHttpServer {
 public:
  struct Options {
    size_t max_connections = 64;
    size_t max_request_bytes = 16 * 1024;
    int connection_timeout_ms = 5000;
    // When set, a scrape must send "Authorization: Bearer TOKEN" for a
    // token whose SHA-256 (lower-case hex) this is; else 401.
    std::string token_sha256;
    // Or the file holding that token, re-read when it changes (looked at no
    // more often than token_reload_interval): a new token takes over, and a
    // file gone or empty refuses every scrape until it holds one again.
    std::string token_file;
    absl::Duration token_reload_interval = absl::Seconds(10);
    // When set, connections are TLS from this context (shared with no one
    // else's writes: the server only makes connections from it).
    std::shared_ptr<security::TlsServerContext> tls;
  };

  // Listens on "host:port" (IPv4 host or "localhost"; port 0 picks a free
  // port) and serves `metrics`, which must outlive the server.
  // Errors: INVALID_ARGUMENT for an address that is not host:port,
  // UNAVAILABLE when it cannot be bound (naming the address).
  static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> Start(const std::string& address,
                                                                  const Metrics* metrics);
  static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> Start(const std::string& address,
                                                                  const Metrics* metrics,
                                                                  Options options);
  // Stops serving and closes the socket.
  ~MetricsHttpServer();
  MetricsHttpServer(const MetricsHttpServer&) = delete;
  MetricsHttpServer& operator=(const MetricsHttpServer&) = delete;

  // "host:port" actually bound.
  const std::string& address() const { return address_; }

 private:
  struct Connection;
  MetricsHttpServer(int listen_fd, int wake_fd, std::string address, const Metrics* metrics,
                    Options options);
  void Serve();
  // Reads what `c` has sent (the TLS handshake first); once its request head
  // is complete, the answer is queued and sent. Sets what `c` waits for
  // next. False when the connection should close.
  bool Read(Connection& c);
  // Sends what it can of the answer. False when done or broken.
  bool Write(Connection& c);
  std::string Answer(const std::string& request);
  // The digest scrapes must match now (Serve's thread only); empty: none
  // is asked for; kRefuseAll: the token file is gone or empty.
  const std::string& TokenSha256();

  const int listen_fd_;
  const int wake_fd_;  // an eventfd that ends Serve()
  const std::string address_;
  const Metrics* const metrics_;
  const Options options_;
  // The token file's digest and version (size, time, inode) as last read.
  std::string token_sha256_;
  std::string token_version_;
  absl::Time token_checked_ = absl::InfinitePast();
  std::thread thread_;
};

}  // namespace ftd::metrics
