// The transport with the real daemon and ftctl, and certificates made here
// with openssl: TLS verified against a CA and the server's name, mutual TLS
// refusing clients without a certificate, with one from another CA or an
// expired one, a rotated certificate picked up without a restart, and no
// plaintext off loopback unless asked for.
#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/certificates.h"
#include "tests/testing/ftd_daemon.h"
#include "tests/testing/https_get.h"
#include "tests/testing/process.h"
#include "tests/testing/temp_dir.h"

namespace ftd {
namespace {

namespace fs = std::filesystem;
using ::ftd::testing::CommandResult;
using ::ftd::testing::FtdDaemon;
using ::testing::HasSubstr;

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fs::create_directories(dir_.Sub("data"));
    certs_.MakeCa("ca");
    certs_.MakeCa("other-ca");
    certs_.MakeLeaf("server", "ca", "ftd.test", "serverAuth", 365);
    certs_.MakeLeaf("client", "ca", "alice", "clientAuth", 365);
    certs_.MakeLeaf("stranger", "other-ca", "mallory", "clientAuth", 365);
    certs_.MakeLeaf("expired", "ca", "bob", "clientAuth", -1);
    certs_.MakeLeaf("server2", "other-ca", "ftd.test", "serverAuth", 365);
  }

  std::string Cert(const std::string& name) { return certs_.Cert(name); }
  std::string Key(const std::string& name) { return certs_.Key(name); }

  std::unique_ptr<FtdDaemon> Start(std::vector<std::string> flags) {
    return std::make_unique<FtdDaemon>(FtdDaemon::Options{FTD_BINARY, FTCTL_BINARY,
                                                          dir_.Sub("ftd-data"), dir_.Sub("data"), 0,
                                                          dir_.Sub("ftd.log"), flags});
  }

  // `ftctl info` over the given connection flags.
  CommandResult Info(const FtdDaemon& daemon, std::vector<std::string> flags) {
    flags.insert(flags.begin(), {FTCTL_BINARY, "--address=" + daemon.address(), "--timeout=5"});
    flags.push_back("info");
    return ftd::testing::RunCommand(flags);
  }

  ftd::testing::TempDir dir_;
  ftd::testing::Certificates certs_{dir_.Sub("certs"), FTD_OPENSSL};
};

TEST_F(TlsTest, TlsIsVerifiedAgainstTheCaAndTheServersName) {
  auto daemon = Start({"--tls_cert=" + Cert("server"), "--tls_key=" + Key("server")});
  ASSERT_TRUE(daemon->started());
  CommandResult ok = Info(*daemon, {"--tls_ca=" + Cert("ca"), "--tls_server_name=ftd.test"});
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
  EXPECT_THAT(ok.out, HasSubstr("version"));
  // The address's own IP is in the certificate too.
  EXPECT_EQ(Info(*daemon, {"--tls_ca=" + Cert("ca")}).exit_code, 0);
  // Another CA, another name, or plaintext: refused.
  CommandResult other_ca = Info(*daemon, {"--tls_ca=" + Cert("other-ca")});
  EXPECT_EQ(other_ca.exit_code, 1);
  EXPECT_THAT(other_ca.err, HasSubstr("UNAVAILABLE"));
  EXPECT_EQ(Info(*daemon, {"--tls_ca=" + Cert("ca"), "--tls_server_name=evil.test"}).exit_code, 1);
  EXPECT_EQ(Info(*daemon, {}).exit_code, 1);
  // A missing file is a usage error naming the flag.
  CommandResult missing = Info(*daemon, {"--tls_ca=" + dir_.Sub("nope.pem")});
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_THAT(missing.err, HasSubstr("--tls_ca: cannot read"));
  std::ifstream log(dir_.Sub("ftd.log"));
  std::string text((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
  EXPECT_THAT(text, HasSubstr("(TLS; "));

  // The metrics endpoint serves HTTPS with the same certificate.
  const size_t url = ok.out.find("https://");
  ASSERT_NE(url, std::string::npos) << ok.out;
  const std::string metrics = ok.out.substr(url + 8, ok.out.find("/metrics", url) - url - 8);
  ftd::testing::HttpsResult scrape = ftd::testing::HttpsGet(
      metrics, "GET /metrics HTTP/1.1\r\n\r\n", ftd::testing::HttpsOptions{Cert("ca")});
  EXPECT_TRUE(scrape.connected);
  EXPECT_THAT(scrape.answer, HasSubstr("ftd_build_info"));
  EXPECT_FALSE(ftd::testing::HttpsGet(metrics, "GET /metrics HTTP/1.1\r\n\r\n",
                                      ftd::testing::HttpsOptions{Cert("other-ca")})
                   .connected);
}

// --metrics_tls=false keeps the metrics endpoint on plaintext HTTP.
TEST_F(TlsTest, TheMetricsEndpointCanStayOnHttp) {
  auto daemon =
      Start({"--tls_cert=" + Cert("server"), "--tls_key=" + Key("server"), "--metrics_tls=false"});
  ASSERT_TRUE(daemon->started());
  CommandResult info = Info(*daemon, {"--tls_ca=" + Cert("ca"), "--tls_server_name=ftd.test"});
  EXPECT_THAT(info.out, HasSubstr("metrics:     http://127.0.0.1:"));
  // Scrapers' certificates need HTTPS.
  CommandResult refused = ftd::testing::RunCommand(
      {FTD_BINARY, "--data_dir=" + dir_.Sub("ftd-data-2"), "--data_roots=" + dir_.Sub("data"),
       "--cpu_slots=0", "--address=127.0.0.1:0", "--metrics_address=127.0.0.1:0",
       "--tls_cert=" + Cert("server"), "--tls_key=" + Key("server"), "--metrics_tls=false",
       "--metrics_tls_client_ca=" + Cert("ca")});
  EXPECT_NE(refused.exit_code, 0);
  EXPECT_THAT(refused.err, HasSubstr("metrics_tls_client_ca: scrapers' certificates need"));
}

TEST_F(TlsTest, MutualTlsRefusesClientsWithoutAGoodCertificate) {
  auto daemon = Start({"--tls_cert=" + Cert("server"), "--tls_key=" + Key("server"),
                       "--tls_client_ca=" + Cert("ca")});
  ASSERT_TRUE(daemon->started());
  const std::vector<std::string> server = {"--tls_ca=" + Cert("ca"), "--tls_server_name=ftd.test"};
  auto with = [&](const std::string& client) {
    std::vector<std::string> flags = server;
    flags.push_back("--tls_cert=" + Cert(client));
    flags.push_back("--tls_key=" + Key(client));
    return flags;
  };
  CommandResult alice = Info(*daemon, with("client"));
  EXPECT_EQ(alice.exit_code, 0) << alice.err;
  for (const char* refused : {"stranger", "expired"}) {
    CommandResult r = Info(*daemon, with(refused));
    EXPECT_EQ(r.exit_code, 1) << refused;
    EXPECT_THAT(r.err, HasSubstr("UNAVAILABLE")) << refused;
  }
  EXPECT_EQ(Info(*daemon, server).exit_code, 1);  // no certificate at all
}

// A rotated certificate (a Kubernetes secret updated in place) is served
// without a restart.
TEST_F(TlsTest, ARotatedCertificateIsPickedUp) {
  fs::copy_file(Cert("server"), dir_.Sub("live.pem"));
  fs::copy_file(Key("server"), dir_.Sub("live.key"));
  auto daemon = Start({"--tls_cert=" + dir_.Sub("live.pem"), "--tls_key=" + dir_.Sub("live.key"),
                       "--tls_reload_interval=1s"});
  ASSERT_TRUE(daemon->started());
  const std::vector<std::string> new_ca = {"--tls_ca=" + Cert("other-ca"),
                                           "--tls_server_name=ftd.test"};
  EXPECT_EQ(Info(*daemon, new_ca).exit_code, 1);
  // Written to temporary names and renamed, as a secret's update is.
  fs::copy_file(Cert("server2"), dir_.Sub("live.pem.new"));
  fs::copy_file(Key("server2"), dir_.Sub("live.key.new"));
  fs::rename(dir_.Sub("live.key.new"), dir_.Sub("live.key"));
  fs::rename(dir_.Sub("live.pem.new"), dir_.Sub("live.pem"));
  int code = 1;
  for (int i = 0; i < 40 && code != 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
    code = Info(*daemon, new_ca).exit_code;
  }
  EXPECT_EQ(code, 0) << "the rotated certificate was not picked up";
}

TEST_F(TlsTest, PlaintextIsForLoopbackUnlessAllowedAndBadFilesStopTheStart) {
  auto run = [&](std::vector<std::string> flags) {
    flags.insert(flags.begin(),
                 {FTD_BINARY, "--data_dir=" + dir_.Sub("ftd-data"),
                  "--data_roots=" + dir_.Sub("data"), "--cpu_slots=0", "--metrics_address="});
    return ftd::testing::RunCommand(flags);
  };
  CommandResult open = run({"--address=0.0.0.0:0"});
  EXPECT_NE(open.exit_code, 0);
  EXPECT_THAT(open.err, HasSubstr("is not a loopback address"));
  EXPECT_THAT(open.err, HasSubstr("--allow_insecure"));
  CommandResult half = run({"--address=127.0.0.1:0", "--tls_cert=" + Cert("server")});
  EXPECT_NE(half.exit_code, 0);
  EXPECT_THAT(half.err, HasSubstr("tls_key: --tls_cert needs --tls_key too"));
  CommandResult not_pem =
      run({"--address=127.0.0.1:0", "--tls_cert=" + dir_.Sub("certs/server.ext"),
           "--tls_key=" + Key("server")});
  EXPECT_NE(not_pem.exit_code, 0);
  EXPECT_THAT(not_pem.err, HasSubstr("holds no PEM certificate"));
  EXPECT_THAT(not_pem.err, ::testing::Not(HasSubstr("subjectAltName")));  // never its contents

  auto allowed = Start({"--address=0.0.0.0:0", "--allow_insecure"});
  ASSERT_TRUE(allowed->started());
}

}  // namespace
}  // namespace ftd
