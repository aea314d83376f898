#include "server/metrics/metrics_http_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/fs_util.h"
#include "common/sha256.h"
#include "server/metrics/http_request.h"

namespace ftd::metrics {
namespace {

// What no token hashes to: scrapes are all refused.
constexpr char kRefuseAll[] = "-";

// The scrape token file's version and the digest of the token in it
// (kRefuseAll when it is gone or empty).
std::pair<std::string, std::string> ReadTokenFile(const std::string& path) {
  std::string version = FileVersion(path);
  if (version.empty()) return {"gone", kRefuseAll};
  absl::StatusOr<std::string> text = ReadFile(path);
  const std::string token =
      text.ok() ? std::string(absl::StripAsciiWhitespace(*text)) : std::string();
  return {std::move(version), token.empty() ? std::string(kRefuseAll) : Sha256::Hex(token)};
}

std::string Response(int code, const std::string& reason, const std::string& content_type,
                     const std::string& body, bool head = false) {
  return absl::StrCat("HTTP/1.1 ", code, " ", reason, "\r\nContent-Type: ", content_type,
                      "\r\nContent-Length: ", body.size(), "\r\nConnection: close\r\n\r\n",
                      head ? "" : body);
}

}  // namespace

struct MetricsHttpServer::Connection {
  int fd = -1;
  std::unique_ptr<SSL, decltype(&SSL_free)> ssl{nullptr, &SSL_free};  // with TLS
  short want = POLLIN;  // what the next step waits for
  std::string in;
  std::string out;  // the answer, once the request is read
  size_t sent = 0;
  std::chrono::steady_clock::time_point deadline;
};

namespace {

// What a TLS read or write that did not complete waits for; 0: it failed
// (or the peer closed).
short TlsWait(SSL* ssl, int result) {
  switch (SSL_get_error(ssl, result)) {
    case SSL_ERROR_WANT_READ:
      return POLLIN;
    case SSL_ERROR_WANT_WRITE:
      return POLLOUT;
    default:
      ERR_clear_error();
      return 0;
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::Start(
    const std::string& address, const Metrics* metrics) {
  return Start(address, metrics, Options());
}

absl::StatusOr<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::Start(
    const std::string& address, const Metrics* metrics, Options options) {
  if (!options.token_file.empty() && ReadTokenFile(options.token_file).second == kRefuseAll) {
    return absl::InvalidArgumentError(absl::StrCat("metrics_token_file: \"", options.token_file,
                                                   "\" is missing, unreadable or empty"));
  }
  const size_t colon = address.rfind(':');
  uint32_t port = 0;
  if (colon == std::string::npos || !absl::SimpleAtoi(address.substr(colon + 1), &port) ||
      port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("metrics_address: \"", address, "\" is not host:port"));
  }
  std::string host = address.substr(0, colon);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (host.empty() || host == "0.0.0.0") {
    addr.sin_addr.s_addr = htonl(INADDR_ANY);
    if (host.empty()) host = "0.0.0.0";
  } else if (host == "localhost") {
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  } else if (inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "metrics_address: \"", host, "\" is not an IPv4 address (such as 127.0.0.1 or 0.0.0.0)"));
  }

  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return absl::UnavailableError(absl::StrCat("metrics_address: ", strerror(errno)));
  const int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 || listen(fd, 64) != 0) {
    const std::string reason = strerror(errno);
    close(fd);
    return absl::UnavailableError(
        absl::StrCat("metrics_address: cannot listen on \"", address, "\": ", reason));
  }
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  const int wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake < 0) {
    close(fd);
    return absl::UnavailableError(absl::StrCat("metrics: eventfd: ", strerror(errno)));
  }
  return std::unique_ptr<MetricsHttpServer>(new MetricsHttpServer(
      fd, wake, absl::StrCat(host, ":", ntohs(addr.sin_port)), metrics, std::move(options)));
}

MetricsHttpServer::MetricsHttpServer(int listen_fd, int wake_fd, std::string address,
                                     const Metrics* metrics, Options options)
    : listen_fd_(listen_fd),
      wake_fd_(wake_fd),
      address_(std::move(address)),
      metrics_(metrics),
      options_(std::move(options)),
      thread_([this] { Serve(); }) {}

MetricsHttpServer::~MetricsHttpServer() {
  const uint64_t one = 1;
  (void)!write(wake_fd_, &one, sizeof(one));
  thread_.join();
  close(listen_fd_);
  close(wake_fd_);
}

void MetricsHttpServer::Serve() {
  using Clock = std::chrono::steady_clock;
  std::vector<Connection> connections;
  std::vector<pollfd> fds;
  while (true) {
    fds.assign({{wake_fd_, POLLIN, 0}, {listen_fd_, POLLIN, 0}});
    auto next_deadline = Clock::time_point::max();
    for (const Connection& c : connections) {
      fds.push_back({c.fd, c.want, 0});
      next_deadline = std::min(next_deadline, c.deadline);
    }
    int timeout = -1;
    if (!connections.empty()) {
      const int64_t left =
          std::chrono::duration_cast<std::chrono::milliseconds>(next_deadline - Clock::now())
              .count();
      timeout = static_cast<int>(std::max<int64_t>(0, left + 1));
    }
    if (poll(fds.data(), fds.size(), timeout) < 0 && errno != EINTR) break;
    if (fds[0].revents != 0) break;  // stopping
    // The open connections first; new ones join after.
    const auto now = Clock::now();
    std::vector<Connection> open;
    for (size_t i = 0; i < connections.size(); ++i) {
      Connection& c = connections[i];
      const short revents = fds[i + 2].revents;
      bool keep = now < c.deadline;  // past it: closed, whatever it was doing
      if (keep && (revents & (POLLERR | POLLNVAL)) != 0) keep = false;
      if (keep && (revents & (c.want | POLLHUP)) != 0) keep = c.out.empty() ? Read(c) : Write(c);
      if (keep) {
        open.push_back(std::move(c));
      } else {
        if (c.ssl != nullptr && c.sent == c.out.size() && !c.out.empty()) {
          SSL_shutdown(c.ssl.get());  // best effort: the close_notify, without waiting
          ERR_clear_error();
        }
        c.ssl.reset();
        close(c.fd);
      }
    }
    connections = std::move(open);
    if ((fds[1].revents & POLLIN) != 0) {
      while (true) {
        const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0) break;
        if (connections.size() >= options_.max_connections) {
          // Best effort, without waiting: the client learns why (over
          // plaintext; a TLS one would need a handshake first).
          if (options_.tls == nullptr) {
            const std::string busy = Response(503, "Service Unavailable", "text/plain",
                                              absl::StrCat("more than ", options_.max_connections,
                                                           " connections are open; try again\n"));
            (void)!send(fd, busy.data(), busy.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
          }
          close(fd);
          continue;
        }
        Connection c;
        c.fd = fd;
        if (options_.tls != nullptr) {
          c.ssl.reset(options_.tls->NewConnection(fd));
          if (c.ssl == nullptr) {
            close(fd);
            continue;
          }
        }
        c.deadline = Clock::now() + std::chrono::milliseconds(options_.connection_timeout_ms);
        connections.push_back(std::move(c));
      }
    }
  }
  for (const Connection& c : connections) close(c.fd);
}

bool MetricsHttpServer::Read(Connection& c) {
  char buffer[4096];
  while (true) {
    ssize_t n;
    if (c.ssl != nullptr) {
      ERR_clear_error();  // SSL_get_error reads the queue: only this call's
      const int r = SSL_read(c.ssl.get(), buffer, sizeof(buffer));
      if (r <= 0) {
        c.want = TlsWait(c.ssl.get(), r);  // the handshake or more of the request, later
        return c.want != 0;
      }
      n = r;
    } else {
      n = recv(c.fd, buffer, sizeof(buffer), 0);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        c.want = POLLIN;  // more later
        return true;
      }
      if (n <= 0) return false;  // closed or broken before its request ended
    }
    c.in.append(buffer, static_cast<size_t>(n));
    const size_t head_end = c.in.find("\r\n\r\n");
    if ((head_end == std::string::npos ? c.in.size() : head_end) > options_.max_request_bytes) {
      c.out = Response(
          431, "Request Header Fields Too Large", "text/plain",
          absl::StrCat("the request head is over ", options_.max_request_bytes, " bytes\n"));
      return Write(c);
    }
    if (head_end != std::string::npos) {
      c.out = Answer(c.in);
      return Write(c);
    }
  }
}

bool MetricsHttpServer::Write(Connection& c) {
  while (c.sent < c.out.size()) {
    if (c.ssl != nullptr) {
      ERR_clear_error();
      const int n = SSL_write(c.ssl.get(), c.out.data() + c.sent,
                              static_cast<int>(std::min<size_t>(c.out.size() - c.sent, 1 << 20)));
      if (n <= 0) {
        c.want = TlsWait(c.ssl.get(), n);
        return c.want != 0;
      }
      c.sent += static_cast<size_t>(n);
      continue;
    }
    const ssize_t n =
        send(c.fd, c.out.data() + c.sent, c.out.size() - c.sent, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      c.want = POLLOUT;  // when it can take more
      return true;
    }
    if (n <= 0) return false;
    c.sent += static_cast<size_t>(n);
  }
  return false;  // all sent: close
}

const std::string& MetricsHttpServer::TokenSha256() {
  if (options_.token_file.empty()) return options_.token_sha256;
  const absl::Time now = absl::Now();
  if (now - token_checked_ >= options_.token_reload_interval) {
    token_checked_ = now;
    auto [version, digest] = ReadTokenFile(options_.token_file);
    if (version != token_version_ || token_sha256_.empty()) {
      token_version_ = std::move(version);
      token_sha256_ = std::move(digest);
    }
  }
  return token_sha256_;
}

std::string MetricsHttpServer::Answer(const std::string& head) {
  absl::StatusOr<HttpRequest> request = ParseHttpRequestHead(head);
  if (!request.ok()) return Response(400, "Bad Request", "text/plain", "bad request line\n");
  if (request->path != "/metrics") {
    return Response(404, "Not Found", "text/plain", "ftd serves GET /metrics\n");
  }
  if (request->method != "GET" && request->method != "HEAD") {
    return Response(405, "Method Not Allowed", "text/plain", "use GET\n");
  }
  const std::string& token_sha256 = TokenSha256();
  if (!token_sha256.empty() &&
      (!request->bearer_token.has_value() || request->bearer_token->empty() ||
       Sha256::Hex(*request->bearer_token) != token_sha256)) {
    return Response(401, "Unauthorized", "text/plain",
                    "scrapes need \"Authorization: Bearer <token>\" (the daemon's "
                    "--metrics_token_file)\n");
  }
  return Response(200, "OK", "text/plain; version=0.0.4; charset=utf-8", metrics_->Serialize(),
                  request->method == "HEAD");
}

}  // namespace ftd::metrics
