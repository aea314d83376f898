// A Node.js client written from protos/ alone (tests/node/client.mjs, with
// @grpc/grpc-js from npm) against the real daemon: it uploads, submits,
// watches and downloads; what it downloaded is the job's model, byte for
// byte.
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/fs_util.h"
#include "common/sha256.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/ftd_daemon.h"
#include "tests/testing/node_package.h"
#include "tests/testing/temp_dir.h"
#include "tests/testing/tiny_bert.h"

namespace ftd {
namespace {

namespace fs = std::filesystem;
using ::ftd::testing::CommandResult;
using ::ftd::testing::FtdDaemon;
using ::testing::AllOf;
using ::testing::HasSubstr;

// The client's npm packages (tests/node/package-lock.json), installed once
// into the build folder.
std::string InstallClient() {
  return ftd::testing::InstallNodePackage(FTD_SOURCE_DIR, FTD_NODE_WORK_DIR, FTD_NPM,
                                          {"client.mjs"});
}

TEST(NodeClientTest, UploadsSubmitsWatchesAndDownloadsFromTheProtoAlone) {
  ftd::testing::TempDir dir;
  ftd::testing::WriteTinyBert(dir.Sub("client/tiny"));
  ftd::testing::WriteSentimentCsv(dir.Sub("client/train.csv"), 256, 1);
  ftd::testing::WriteSentimentCsv(dir.Sub("client/valid.csv"), 128, 2);
  fs::create_directories(dir.Sub("roots"));
  // Not skipped without them: CI installs them (scripts/install-deps.sh),
  // and a skip would hide a missing install.
  ASSERT_TRUE(fs::exists(FTD_NODE) && fs::exists(FTD_NPM))
      << "node and npm are needed (scripts/install-deps.sh installs them); found \"" << FTD_NODE
      << "\" and \"" << FTD_NPM << "\"";
  const std::string work = InstallClient();
  ASSERT_FALSE(::testing::Test::HasFailure());
  // The client's files lie outside the daemon's data roots: only uploads
  // bring them in.
  FtdDaemon daemon(
      {FTD_BINARY, FTCTL_BINARY, dir.Sub("ftd-data"), dir.Sub("roots"), 1, dir.Sub("ftd.log"), {}});
  ASSERT_TRUE(daemon.started());

  CommandResult node = ftd::testing::RunCommand(
      {FTD_NODE, work + "/client.mjs", "--address=" + daemon.address(),
       std::string("--protos=") + FTD_SOURCE_DIR + "/protos", "--model=" + dir.Sub("client/tiny"),
       "--train=" + dir.Sub("client/train.csv"), "--validation=" + dir.Sub("client/valid.csv"),
       "--out=" + dir.Sub("client/out")},
      std::chrono::seconds(120));
  ASSERT_EQ(node.exit_code, 0) << node.out << node.err;
  const std::string& summary = node.out;
  std::cout << "node client: " << summary;
  EXPECT_THAT(
      summary,
      AllOf(HasSubstr(R"("files":["file-1","file-2","file-3"])"), HasSubstr(R"("model_layers":2)"),
            HasSubstr(R"("train_rows":256)"), HasSubstr(R"("job_id":"job-1")"),
            HasSubstr(R"("submitted_state":"JOB_STATE_QUEUED")"), HasSubstr(R"("idempotent":true)"),
            HasSubstr(R"("states":["JOB_STATE_QUEUED","JOB_STATE_RUNNING",)"
                      R"("JOB_STATE_SUCCEEDED"])"),
            HasSubstr(R"("evaluations":6)"), HasSubstr(R"("state":"JOB_STATE_SUCCEEDED")"),
            HasSubstr(R"("request_id":"node-client-1")")));
  EXPECT_THAT(summary, HasSubstr(R"("bad_request":{"code":"INVALID_ARGUMENT",)"
                                 R"("field":"hyperparameters.epochs","reason":"INVALID_FIELD"})"));
  EXPECT_THAT(summary, HasSubstr(R"("health":"SERVING")"));
  for (const char* version : {"v1", "v1alpha"}) {
    EXPECT_THAT(summary,
                HasSubstr(absl::StrCat(R"("reflection_)", version, R"(":["ftd.v1.FineTuning")")))
        << version;
  }
  // What it wrote is the job's model.
  for (const char* name : {"config.json", "vocab.txt", "model.safetensors"}) {
    absl::StatusOr<std::string> downloaded = ReadFile(dir.Sub(std::string("client/out/") + name));
    ASSERT_TRUE(downloaded.ok()) << name << ": " << downloaded.status();
    EXPECT_EQ(*downloaded, *ReadFile(dir.Sub(std::string("ftd-data/jobs/job-1/model/") + name)))
        << name;
    EXPECT_THAT(summary, HasSubstr(Sha256::Hex(*downloaded))) << name;
  }
}

}  // namespace
}  // namespace ftd
