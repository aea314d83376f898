// MetricsHttpServer: serves the metrics in Prometheus's text format at
// GET /metrics over HTTP/1.1, on its own address.
//
// Not prometheus-cpp's Exposer: the CivetWeb that Debian builds it on starts
// its threads with a fixed 100 KiB stack, and once LibTorch and OpenBLAS are
// loaded glibc needs more than that for static TLS alone (108 KiB here), so
// pthread_create fails with EINVAL and the Exposer cannot start in ftd. This
// server runs one thread with the default stack and answers one scrape at a
// time, which is what a scrape endpoint needs.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "server/metrics/metrics.h"

namespace ftd::metrics {

class MetricsHttpServer {
 public:
  // Listens on "host:port" (IPv4 host or "localhost"; port 0 picks a free
  // port) and serves `metrics`, which must outlive the server.
  // Errors: INVALID_ARGUMENT for an address that is not host:port,
  // UNAVAILABLE when it cannot be bound (naming the address).
  static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> Start(const std::string& address,
                                                                  const Metrics* metrics);
  // Stops serving and closes the socket.
  ~MetricsHttpServer();
  MetricsHttpServer(const MetricsHttpServer&) = delete;
  MetricsHttpServer& operator=(const MetricsHttpServer&) = delete;

  // "host:port" actually bound.
  const std::string& address() const { return address_; }

 private:
  MetricsHttpServer(int listen_fd, int wake_fd, std::string address, const Metrics* metrics);
  void Serve();
  void Handle(int fd);

  const int listen_fd_;
  const int wake_fd_;  // an eventfd that ends Serve()
  const std::string address_;
  const Metrics* const metrics_;
  std::thread thread_;
};

}  // namespace ftd::metrics
