// MetricsHttpServer: serves the metrics in Prometheus's text format at
// GET /metrics over HTTP/1.1, on its own address.
//
// Not prometheus-cpp's Exposer: the CivetWeb that Debian builds it on starts
// its threads with a fixed 100 KiB stack, and once LibTorch and OpenBLAS are
// loaded glibc needs more than that for static TLS alone (108 KiB here), so
// pthread_create fails with EINVAL and the Exposer cannot start in ftd. This
// server runs one thread with the default stack and serves its connections
// from one poll loop with non-blocking sockets, so that no client can hold it
// up: a connection has `Limits::connection_timeout_ms` for its request and
// the answer together, a request head at most `Limits::max_request_bytes`
// (431 beyond), and at most `Limits::max_connections` are open at once (a
// further one is answered 503 and closed).
#pragma once

#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "server/metrics/metrics.h"

namespace ftd::metrics {

class MetricsHttpServer {
 public:
  struct Limits {
    size_t max_connections = 64;
    size_t max_request_bytes = 16 * 1024;
    int connection_timeout_ms = 5000;
    // When set, a scrape must send "Authorization: Bearer TOKEN" for a
    // token whose SHA-256 (lower-case hex) this is; else 401.
    std::string token_sha256;
  };

  // Listens on "host:port" (IPv4 host or "localhost"; port 0 picks a free
  // port) and serves `metrics`, which must outlive the server.
  // Errors: INVALID_ARGUMENT for an address that is not host:port,
  // UNAVAILABLE when it cannot be bound (naming the address).
  static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> Start(const std::string& address,
                                                                  const Metrics* metrics);
  static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> Start(const std::string& address,
                                                                  const Metrics* metrics,
                                                                  Limits limits);
  // Stops serving and closes the socket.
  ~MetricsHttpServer();
  MetricsHttpServer(const MetricsHttpServer&) = delete;
  MetricsHttpServer& operator=(const MetricsHttpServer&) = delete;

  // "host:port" actually bound.
  const std::string& address() const { return address_; }

 private:
  struct Connection;
  MetricsHttpServer(int listen_fd, int wake_fd, std::string address, const Metrics* metrics,
                    Limits limits);
  void Serve();
  // Reads what `c` has sent; once its request head is complete, the answer
  // is queued and sent. False when the connection should close.
  bool Read(Connection& c);
  // Sends what it can of the answer. False when done or broken.
  bool Write(Connection& c);
  std::string Answer(const std::string& request) const;

  const int listen_fd_;
  const int wake_fd_;  // an eventfd that ends Serve()
  const std::string address_;
  const Metrics* const metrics_;
  const Limits limits_;
  std::thread thread_;
};

}  // namespace ftd::metrics
