// Certificates made for a test with the openssl command: CAs and leaves
// signed by them, valid or expired, as PEM files in a folder.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/testing/process.h"
#include "tests/testing/temp_dir.h"

namespace ftd::testing {

class Certificates {
 public:
  // Files go to `folder` (created); `openssl` is the command's path.
  Certificates(std::string folder, std::string openssl)
      : folder_(std::move(folder)), openssl_(std::move(openssl)) {
    std::filesystem::create_directories(folder_);
  }

  std::string Cert(const std::string& name) const { return folder_ + "/" + name + ".pem"; }
  std::string Key(const std::string& name) const { return folder_ + "/" + name + ".key"; }

  // A self-signed CA.
  void MakeCa(const std::string& name) {
    OpenSsl({"req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", Key(name), "-out", Cert(name), "-days", "3650", "-subj", "/CN=" + name});
  }
  // A certificate for `cn` (also its DNS name, with IP 127.0.0.1) signed by
  // `ca`, for `usage` (serverAuth, clientAuth), valid `days` from now (-1:
  // it has expired).
  void MakeLeaf(const std::string& name, const std::string& ca, const std::string& cn,
                const std::string& usage, int days) {
    const std::string csr = folder_ + "/" + name + ".csr";
    const std::string ext = folder_ + "/" + name + ".ext";
    WriteFile(ext, absl::StrCat("subjectAltName=DNS:", cn,
                                ",IP:127.0.0.1\nextendedKeyUsage=", usage, "\n"));
    OpenSsl({"req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", Key(name), "-out", csr, "-subj", "/CN=" + cn});
    OpenSsl({"x509", "-req", "-in", csr, "-CA", Cert(ca), "-CAkey", Key(ca), "-CAcreateserial",
             "-out", Cert(name), "-days", absl::StrCat(days), "-extfile", ext});
  }

 private:
  void OpenSsl(std::vector<std::string> args) {
    args.insert(args.begin(), openssl_);
    CommandResult r = RunCommand(args);
    ASSERT_EQ(r.exit_code, 0) << "openssl " << args[1] << ": " << r.err;
  }

  const std::string folder_;
  const std::string openssl_;
};

}  // namespace ftd::testing
