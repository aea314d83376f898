// The daemon, in this process, on a real RocksDB whose file system fails
// writes and syncs on demand (tests/testing/faulty_file_system.h), driven by
// the real ftctl: a submission the store cannot write is refused
// (RESOURCE_EXHAUSTED for a full disk) and never shows up; listing and
// getting go on; a job that ends during the fault is recorded once the
// fault clears; and after a restart exactly the acknowledged jobs are there,
// in their states.
#include <algorithm>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/daemon/daemon.h"
#include "server/training/engine/bert_trainer.h"
#include "tests/testing/faulty_file_system.h"
#include "tests/testing/process.h"
#include "tests/testing/temp_dir.h"
#include "tests/testing/tiny_bert.h"

namespace ftd {
namespace {

using ::ftd::testing::CommandResult;
using ::ftd::testing::FaultyFileSystem;
using ::testing::HasSubstr;

class DaemonFaultsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ftd::testing::WriteTinyBert(dir_.Sub("data/tiny"));
    ftd::testing::WriteSentimentCsv(dir_.Sub("data/train.csv"), 128, 1);
  }

  void Start() {
    daemon_.reset();
    daemon::Daemon::Options options;
    options.address = "127.0.0.1:0";
    options.metrics_address = "";
    options.data_dir = dir_.Sub("ftd-data");
    options.data_roots = {dir_.Sub("data")};
    options.devices = {scheduler::Device{scheduler::Device::Kind::kCpu, 0, "cpu", 0}};
    options.storage_env = faults_.env();
    options.make_trainer = [](storage::ActivationStore* store,
                              training::parallel::RemoteReplicas*) {
      training::BertTrainer::Options trainer;
      trainer.activation_store = store;
      return std::make_unique<training::BertTrainer>(trainer);
    };
    absl::StatusOr<std::unique_ptr<daemon::Daemon>> started = daemon::Daemon::Start(options);
    ASSERT_TRUE(started.ok()) << started.status();
    daemon_ = *std::move(started);
  }

  CommandResult Ftctl(std::vector<std::string> args) {
    args.insert(args.begin(), {FTCTL_BINARY, "--address=" + daemon_->address(), "--timeout=20"});
    return ftd::testing::RunCommand(args, std::chrono::seconds(60));
  }

  std::vector<std::string> Submit(const std::string& name, int epochs) {
    return {"submit",
            "--upload=false",
            "--model=" + dir_.Sub("data/tiny"),
            "--train=" + dir_.Sub("data/train.csv"),
            "--epochs=" + std::to_string(epochs),
            "--batch_size=16",
            "--max_seq_length=16",
            "--name=" + name,
            "--request_id=" + name};
  }

  // Submits as a client would after a refusal: again, with its request id,
  // until acknowledged; every refusal meanwhile is a full disk or
  // unavailable.
  CommandResult SubmitUntilAcknowledged(const std::string& name, int epochs) {
    CommandResult r;
    for (int i = 0; i < 100; ++i) {
      r = Ftctl(Submit(name, epochs));
      if (r.exit_code == 0) return r;
      EXPECT_THAT(r.err,
                  ::testing::AnyOf(HasSubstr("RESOURCE_EXHAUSTED"), HasSubstr("UNAVAILABLE")))
          << r.err;
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    return r;
  }

  FaultyFileSystem faults_;  // outlives the daemon
  ftd::testing::TempDir dir_;
  std::unique_ptr<daemon::Daemon> daemon_;
};

TEST_F(DaemonFaultsTest, AFullDiskRefusesWhatItCannotKeepAndTheDaemonRecovers) {
  Start();
  CommandResult first = Ftctl(Submit("first", 1));
  ASSERT_EQ(first.exit_code, 0) << first.err;
  ASSERT_EQ(Ftctl({"watch", "job-1"}).exit_code, 0);

  // The disk fills: a submission is refused and says why; reads go on.
  faults_.Set(FaultyFileSystem::Fault::kNoSpace);
  CommandResult refused = Ftctl(Submit("refused", 1));
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_THAT(refused.err, HasSubstr("RESOURCE_EXHAUSTED"));
  CommandResult list = Ftctl({"list"});
  EXPECT_EQ(list.exit_code, 0) << list.err;
  EXPECT_THAT(list.out, HasSubstr("job-1"));
  EXPECT_THAT(Ftctl({"get", "job-1"}).out, HasSubstr("SUCCEEDED"));
  EXPECT_EQ(Ftctl({"health"}).exit_code, 0);

  // It clears: the client's retry is acknowledged, and the job runs.
  faults_.Set(FaultyFileSystem::Fault::kNone);
  CommandResult second = SubmitUntilAcknowledged("second", 40);
  ASSERT_EQ(second.exit_code, 0) << second.err;
  // Refused submissions' numbers are not given again (one may still be in
  // RocksDB's log): the id is the one the acknowledgement names.
  // "submitted job-8 (QUEUED)"
  const size_t at = second.out.find("job-");
  ASSERT_NE(at, std::string::npos) << second.out;
  const std::string id = second.out.substr(at, second.out.find(' ', at) - at);
  for (int i = 0; i < 100 && Ftctl({"get", id}).out.find("RUNNING") == std::string::npos; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  // A fault while it trains: its progress is not kept, its end is, once
  // the fault clears.
  faults_.Set(FaultyFileSystem::Fault::kIoError);
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  EXPECT_THAT(Ftctl({"get", "job-1"}).out, HasSubstr("SUCCEEDED"));
  faults_.Set(FaultyFileSystem::Fault::kNone);
  CommandResult watch = Ftctl({"watch", id});
  EXPECT_EQ(watch.exit_code, 0) << watch.out << watch.err;
  EXPECT_GT(faults_.refused(), 0);

  // After a restart: exactly what was acknowledged, in its state.
  Start();
  CommandResult after = Ftctl({"list", "--all"});
  ASSERT_EQ(after.exit_code, 0) << after.err;
  EXPECT_THAT(after.out, HasSubstr("job-1"));
  EXPECT_THAT(after.out, HasSubstr(id + " "));
  EXPECT_EQ(std::count(after.out.begin(), after.out.end(), '\n'), 3)
      << after.out;  // header, 2 jobs
  EXPECT_THAT(after.out, ::testing::Not(HasSubstr("refused")));
  EXPECT_THAT(Ftctl({"get", id}).out, HasSubstr("SUCCEEDED"));
}

}  // namespace
}  // namespace ftd
