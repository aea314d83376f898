#include "server/metrics/metrics_http_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/sha256.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/certificates.h"
#include "tests/testing/https_get.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace ftd::metrics {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;
using ::ftd::testing::StatusIs;
using Clock = std::chrono::steady_clock;

// A client socket connected to the server.
int Connect(const std::string& address) {
  const size_t colon = address.rfind(':');
  int port = 0;
  EXPECT_TRUE(absl::SimpleAtoi(address.substr(colon + 1), &port));
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  return fd;
}

// Everything the server sends until it closes, or what came within `ms`.
std::string ReadAll(int fd, int ms = 3000) {
  std::string out;
  const auto deadline = Clock::now() + std::chrono::milliseconds(ms);
  while (Clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    const int left = static_cast<int>(
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count());
    if (poll(&p, 1, std::max(left, 1)) <= 0) break;
    char buffer[4096];
    const ssize_t n = recv(fd, buffer, sizeof(buffer), 0);
    if (n <= 0) break;
    out.append(buffer, static_cast<size_t>(n));
  }
  return out;
}

std::string Get(const std::string& address, const std::string& request) {
  const int fd = Connect(address);
  EXPECT_EQ(send(fd, request.data(), request.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(request.size()));
  std::string answer = ReadAll(fd);
  close(fd);
  return answer;
}

class MetricsHttpServerTest : public ::testing::Test {
 protected:
  Metrics metrics_{Metrics::Options{"test", absl::Minutes(5), [] { return absl::Now(); }}};
};

// Clients that connect and send nothing do not hold up a scrape.
TEST_F(MetricsHttpServerTest, IdleConnectionsDoNotHoldUpAScrape) {
  ASSERT_OK_AND_ASSIGN(auto server, MetricsHttpServer::Start("127.0.0.1:0", &metrics_));
  std::vector<int> idle;
  for (int i = 0; i < 3; ++i) idle.push_back(Connect(server->address()));
  const auto start = Clock::now();
  const std::string answer = Get(server->address(), "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_THAT(answer, StartsWith("HTTP/1.1 200 OK"));
  EXPECT_THAT(answer, HasSubstr("ftd_build_info"));
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(1));
  for (int fd : idle) close(fd);
}

// With a token, a scrape without it (or with another) is 401 and gets no
// metrics; the header's name is matched in any case.
TEST_F(MetricsHttpServerTest, AScrapeTokenIsRequiredWhenSet) {
  MetricsHttpServer::Options limits;
  limits.token_sha256 = Sha256::Hex("scrape-secret");
  ASSERT_OK_AND_ASSIGN(auto server, MetricsHttpServer::Start("127.0.0.1:0", &metrics_, limits));
  for (const char* headers :
       {"", "Authorization: Bearer wrong\r\n", "Authorization: Basic scrape-secret\r\n"}) {
    const std::string answer =
        Get(server->address(), absl::StrCat("GET /metrics HTTP/1.1\r\n", headers, "\r\n"));
    EXPECT_THAT(answer, AllOf(StartsWith("HTTP/1.1 401"), Not(HasSubstr("ftd_build_info"))))
        << headers;
  }
  EXPECT_THAT(Get(server->address(),
                  "GET /metrics HTTP/1.1\r\nauthorization: Bearer scrape-secret\r\n\r\n"),
              AllOf(StartsWith("HTTP/1.1 200 OK"), HasSubstr("ftd_build_info")));
}

// The scrape token's file is re-read as it changes (a rotated Secret): the
// new token takes over from the next scrape; a file gone refuses them all.
TEST_F(MetricsHttpServerTest, TheScrapeTokenFileIsReReadWhenItChanges) {
  ftd::testing::TempDir dir;
  auto write = [&](const std::string& token) {
    ftd::testing::WriteFile(dir.Sub("token.new"), token + "\n");
    std::filesystem::rename(dir.Sub("token.new"), dir.Sub("token"));
  };
  auto scrape = [](const std::string& address, const std::string& token) {
    return Get(address, "GET /metrics HTTP/1.1\r\nAuthorization: Bearer " + token + "\r\n\r\n");
  };
  MetricsHttpServer::Options options;
  options.token_file = dir.Sub("token");
  options.token_reload_interval = absl::ZeroDuration();
  EXPECT_THAT(MetricsHttpServer::Start("127.0.0.1:0", &metrics_, options).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("metrics_token_file")));
  write("first-secret");
  ASSERT_OK_AND_ASSIGN(auto server, MetricsHttpServer::Start("127.0.0.1:0", &metrics_, options));
  EXPECT_THAT(scrape(server->address(), "first-secret"), StartsWith("HTTP/1.1 200"));
  write("second-secret");
  EXPECT_THAT(scrape(server->address(), "first-secret"), StartsWith("HTTP/1.1 401"));
  EXPECT_THAT(scrape(server->address(), "second-secret"), StartsWith("HTTP/1.1 200"));
  std::filesystem::remove(dir.Sub("token"));
  EXPECT_THAT(scrape(server->address(), "second-secret"), StartsWith("HTTP/1.1 401"));
  EXPECT_THAT(scrape(server->address(), "-"), StartsWith("HTTP/1.1 401"));
  write("third-secret");
  EXPECT_THAT(scrape(server->address(), "third-secret"), StartsWith("HTTP/1.1 200"));
}

TEST_F(MetricsHttpServerTest, ConnectionsRequestsAndTimeAreLimited) {
  MetricsHttpServer::Options limits;
  limits.max_connections = 2;
  limits.max_request_bytes = 1024;
  limits.connection_timeout_ms = 300;
  ASSERT_OK_AND_ASSIGN(auto server, MetricsHttpServer::Start("127.0.0.1:0", &metrics_, limits));
  const int a = Connect(server->address());
  const int b = Connect(server->address());
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // both accepted
  EXPECT_THAT(Get(server->address(), "GET /metrics HTTP/1.1\r\n\r\n"),
              AllOf(StartsWith("HTTP/1.1 503"), HasSubstr("more than 2 connections")));
  // An idle connection is closed at its deadline.
  const auto start = Clock::now();
  EXPECT_EQ(ReadAll(a, 2000), "");
  EXPECT_LT(Clock::now() - start, std::chrono::milliseconds(1500));
  close(a);
  close(b);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_THAT(Get(server->address(),
                  "GET /metrics HTTP/1.1\r\nX-Long: " + std::string(2000, 'x') + "\r\n\r\n"),
              StartsWith("HTTP/1.1 431"));
  EXPECT_THAT(Get(server->address(), "GET /other HTTP/1.1\r\n\r\n"), StartsWith("HTTP/1.1 404"));
  EXPECT_THAT(Get(server->address(), "POST /metrics HTTP/1.1\r\n\r\n"), StartsWith("HTTP/1.1 405"));
}

// Stopping does not wait for a client that never finishes its request.
TEST_F(MetricsHttpServerTest, StopsAtOnceWithAClientConnected) {
  ASSERT_OK_AND_ASSIGN(auto server, MetricsHttpServer::Start("127.0.0.1:0", &metrics_));
  const int fd = Connect(server->address());
  const std::string partial = "GET /metrics HTTP/1.1\r\n";
  send(fd, partial.data(), partial.size(), MSG_NOSIGNAL);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  const auto start = Clock::now();
  server.reset();
  EXPECT_LT(Clock::now() - start, std::chrono::milliseconds(500));
  close(fd);
}

class MetricsHttpsTest : public MetricsHttpServerTest {
 protected:
  void SetUp() override {
    certs_.MakeCa("ca");
    certs_.MakeCa("other-ca");
    certs_.MakeLeaf("server", "ca", "ftd.test", "serverAuth", 365);
    certs_.MakeLeaf("server2", "other-ca", "ftd.test", "serverAuth", 365);
    certs_.MakeLeaf("scraper", "ca", "prometheus", "clientAuth", 365);
    certs_.MakeLeaf("stranger", "other-ca", "prometheus", "clientAuth", 365);
    // The files the server serves, replaced as a rotated secret is.
    std::filesystem::copy_file(certs_.Cert("server"), dir_.Sub("tls.crt"));
    std::filesystem::copy_file(certs_.Key("server"), dir_.Sub("tls.key"));
  }
  void Rotate(const std::string& name) {
    std::filesystem::copy_file(certs_.Cert(name), dir_.Sub("tls.crt.new"));
    std::filesystem::copy_file(certs_.Key(name), dir_.Sub("tls.key.new"));
    std::filesystem::rename(dir_.Sub("tls.crt.new"), dir_.Sub("tls.crt"));
    std::filesystem::rename(dir_.Sub("tls.key.new"), dir_.Sub("tls.key"));
  }
  security::TlsServerContext::Files Files(const std::string& client_ca = "") {
    return {dir_.Sub("tls.crt"), dir_.Sub("tls.key"), client_ca, absl::ZeroDuration()};
  }
  ftd::testing::HttpsResult Scrape(const std::string& address, const std::string& ca,
                                   const std::string& client = "") {
    ftd::testing::HttpsOptions options{certs_.Cert(ca)};
    if (!client.empty()) {
      options.cert_file = certs_.Cert(client);
      options.key_file = certs_.Key(client);
    }
    return ftd::testing::HttpsGet(address, "GET /metrics HTTP/1.1\r\n\r\n", options);
  }

  ftd::testing::TempDir dir_;
  ftd::testing::Certificates certs_{dir_.Sub("certs"), FTD_OPENSSL};
};

// HTTPS from the files, verified against the CA and the name; plaintext
// gets no metrics; a rotated certificate is served from the next connection
// on, and a broken new version leaves the one before in service.
TEST_F(MetricsHttpsTest, ServesHttpsAndPicksUpARotatedCertificate) {
  MetricsHttpServer::Options options;
  ASSERT_OK_AND_ASSIGN(options.tls, security::TlsServerContext::Load("metrics_tls", Files()));
  ASSERT_OK_AND_ASSIGN(auto server, MetricsHttpServer::Start("127.0.0.1:0", &metrics_, options));
  ftd::testing::HttpsResult ok = Scrape(server->address(), "ca");
  EXPECT_TRUE(ok.connected);
  EXPECT_THAT(ok.answer, AllOf(StartsWith("HTTP/1.1 200 OK"), HasSubstr("ftd_build_info")));
  EXPECT_FALSE(Scrape(server->address(), "other-ca").connected);
  EXPECT_THAT(Get(server->address(), "GET /metrics HTTP/1.1\r\n\r\n"),
              Not(HasSubstr("ftd_build_info")));

  Rotate("server2");
  EXPECT_FALSE(Scrape(server->address(), "ca").connected);
  ok = Scrape(server->address(), "other-ca");
  EXPECT_TRUE(ok.connected);
  EXPECT_THAT(ok.answer, StartsWith("HTTP/1.1 200 OK"));

  // A key that is not the certificate's: the version before stays.
  std::filesystem::copy_file(certs_.Key("server"), dir_.Sub("tls.key.new"));
  std::filesystem::rename(dir_.Sub("tls.key.new"), dir_.Sub("tls.key"));
  EXPECT_TRUE(Scrape(server->address(), "other-ca").connected);
}

// A client that opens a connection and never says hello holds no one up.
TEST_F(MetricsHttpsTest, AStalledHandshakeDoesNotHoldUpAScrape) {
  MetricsHttpServer::Options options;
  options.connection_timeout_ms = 300;
  ASSERT_OK_AND_ASSIGN(options.tls, security::TlsServerContext::Load("metrics_tls", Files()));
  ASSERT_OK_AND_ASSIGN(auto server, MetricsHttpServer::Start("127.0.0.1:0", &metrics_, options));
  const int idle = Connect(server->address());
  const auto start = Clock::now();
  EXPECT_THAT(Scrape(server->address(), "ca").answer, StartsWith("HTTP/1.1 200 OK"));
  EXPECT_LT(Clock::now() - start, std::chrono::milliseconds(250));
  EXPECT_EQ(ReadAll(idle, 2000), "");  // closed at its deadline
  close(idle);
}

// With a client CA, a scraper must present a certificate it signed.
TEST_F(MetricsHttpsTest, ScrapersCertificatesAreRequiredWhenAsked) {
  MetricsHttpServer::Options options;
  ASSERT_OK_AND_ASSIGN(options.tls,
                       security::TlsServerContext::Load("metrics_tls", Files(certs_.Cert("ca"))));
  ASSERT_OK_AND_ASSIGN(auto server, MetricsHttpServer::Start("127.0.0.1:0", &metrics_, options));
  EXPECT_THAT(Scrape(server->address(), "ca", "scraper").answer, StartsWith("HTTP/1.1 200 OK"));
  EXPECT_THAT(Scrape(server->address(), "ca").answer, Not(HasSubstr("ftd_build_info")));
  EXPECT_THAT(Scrape(server->address(), "ca", "stranger").answer, Not(HasSubstr("ftd_build_info")));
}

// Files that do not load are named, never quoted.
TEST_F(MetricsHttpsTest, FilesThatDoNotLoadAreNamed) {
  security::TlsServerContext::Files mismatched = Files();
  mismatched.key_file = certs_.Key("server2");
  EXPECT_THAT(security::TlsServerContext::Load("metrics_tls", mismatched).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("metrics_tls: \"" + mismatched.key_file + "\""),
                             HasSubstr("not the key of"))));
  security::TlsServerContext::Files missing = Files();
  missing.cert_file = dir_.Sub("nope.crt");
  EXPECT_THAT(security::TlsServerContext::Load("metrics_tls", missing).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("nope.crt")));
  ftd::testing::WriteFile(dir_.Sub("garbage.pem"),
                          "-----BEGIN CERTIFICATE-----\nsecret-looking-bytes\n"
                          "-----END CERTIFICATE-----\n");
  security::TlsServerContext::Files garbage = Files();
  garbage.cert_file = dir_.Sub("garbage.pem");
  absl::Status status = security::TlsServerContext::Load("metrics_tls", garbage).status();
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("does not load")));
  EXPECT_THAT(status.message(), Not(HasSubstr("secret-looking")));
}

}  // namespace
}  // namespace ftd::metrics
