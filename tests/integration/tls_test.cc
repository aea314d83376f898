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
#include "tests/testing/ftd_daemon.h"
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
    fs::create_directories(dir_.Sub("certs"));
    fs::create_directories(dir_.Sub("data"));
    MakeCa("ca");
    MakeCa("other-ca");
    MakeLeaf("server", "ca", "ftd.test", "serverAuth", 365);
    MakeLeaf("client", "ca", "alice", "clientAuth", 365);
    MakeLeaf("stranger", "other-ca", "mallory", "clientAuth", 365);
    MakeLeaf("expired", "ca", "bob", "clientAuth", -1);
    MakeLeaf("server2", "other-ca", "ftd.test", "serverAuth", 365);
  }

  std::string Cert(const std::string& name) { return dir_.Sub("certs/" + name + ".pem"); }
  std::string Key(const std::string& name) { return dir_.Sub("certs/" + name + ".key"); }

  void OpenSsl(std::vector<std::string> args) {
    args.insert(args.begin(), FTD_OPENSSL);
    CommandResult r = ftd::testing::RunCommand(args);
    ASSERT_EQ(r.exit_code, 0) << "openssl " << args[1] << ": " << r.err;
  }
  void MakeCa(const std::string& name) {
    OpenSsl({"req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", Key(name), "-out", Cert(name), "-days", "3650", "-subj", "/CN=" + name});
  }
  // A certificate for `cn` signed by `ca`, valid `days` from now (-1: it
  // has expired).
  void MakeLeaf(const std::string& name, const std::string& ca, const std::string& cn,
                const std::string& usage, int days) {
    const std::string csr = dir_.Sub("certs/" + name + ".csr");
    const std::string ext = dir_.Sub("certs/" + name + ".ext");
    ftd::testing::WriteFile(ext, absl::StrCat("subjectAltName=DNS:", cn,
                                              ",IP:127.0.0.1\nextendedKeyUsage=", usage, "\n"));
    OpenSsl({"req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", Key(name), "-out", csr, "-subj", "/CN=" + cn});
    OpenSsl({"x509", "-req", "-in", csr, "-CA", Cert(ca), "-CAkey", Key(ca), "-CAcreateserial",
             "-out", Cert(name), "-days", absl::StrCat(days), "-extfile", ext});
  }

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
