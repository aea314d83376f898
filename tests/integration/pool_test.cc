// A pool of daemons on loopback addresses: the real ftd as a coordinator
// (--rendezvous_address) and as a worker (--join), one CPU device each,
// driven by the real ftctl.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/fs_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/ftd_daemon.h"
#include "tests/testing/process.h"
#include "tests/testing/temp_dir.h"
#include "tests/testing/tiny_bert.h"

namespace ftd {
namespace {

using ::ftd::testing::CommandResult;
using ::ftd::testing::FtdDaemon;
using ::ftd::testing::Process;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

class PoolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ftd::testing::WriteTinyBert(dir_.Sub("data/tiny"));
    ftd::testing::WriteSentimentCsv(dir_.Sub("data/train.csv"), 256, 1);
    ftd::testing::WriteSentimentCsv(dir_.Sub("data/valid.csv"), 64, 2);
  }

  std::unique_ptr<FtdDaemon> Start(const std::string& name, int cpu_devices,
                                   std::vector<std::string> flags = {}) {
    return std::make_unique<FtdDaemon>(FtdDaemon::Options{
        FTD_BINARY, FTCTL_BINARY, dir_.Sub(name + "-data"), dir_.Sub("data"), cpu_devices,
        dir_.Sub(name + ".log"), std::move(flags)});
  }
  std::unique_ptr<FtdDaemon> StartCoordinator() {
    return Start("coordinator", 1,
                 {"--rendezvous_address=127.0.0.1:0", "--pool_heartbeat_interval=200ms",
                  "--collective_timeout=60s"});
  }
  // A worker daemon attached to `coordinator` as `name`; waits until the
  // coordinator lists its device.
  // `as` names its log and data folder (default: `name`).
  std::unique_ptr<Process> StartWorker(const FtdDaemon& coordinator, const std::string& name,
                                       bool wait = true, std::string as = "") {
    if (as.empty()) as = name;
    auto worker = std::make_unique<Process>(
        std::vector<std::string>{FTD_BINARY, "--join=" + coordinator.address(),
                                 "--worker_name=" + name, "--cpu_devices=1",
                                 "--data_dir=" + dir_.Sub(as + "-data"), "--metrics_address=",
                                 "--collective_host=127.0.0.1", "--collective_timeout=60s"},
        dir_.Sub(as + ".log"));
    if (!wait) return worker;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (std::chrono::steady_clock::now() < deadline) {
      if (coordinator.Ftctl({"info"}).out.find(name + "/cpu:0") != std::string::npos) {
        return worker;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    ADD_FAILURE() << "worker " << name << " did not attach; see " << dir_.Sub(name + ".log");
    return worker;
  }

  std::vector<std::string> Submit(std::vector<std::string> extra) {
    std::vector<std::string> args = {"submit",
                                     "--upload=false",
                                     "--model=" + dir_.Sub("data/tiny"),
                                     "--train=" + dir_.Sub("data/train.csv"),
                                     "--validation=" + dir_.Sub("data/valid.csv"),
                                     "--batch_size=16",
                                     "--max_seq_length=16",
                                     "--learning_rate=0.003",
                                     "--device=cpu",
                                     "--devices=2"};
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
  }

  std::string Log(const std::string& name) {
    return ReadFile(dir_.Sub(name + ".log")).value_or("");
  }

  ftd::testing::TempDir dir_;
};

// Two daemons run one job together: the coordinator's device runs replica
// 0, the worker's replica 1 (fetching the model and datasets by digest),
// and the fine-tuned model is the one a single daemon with two devices
// writes, byte for byte.
TEST_F(PoolTest, ACoordinatorAndAWorkerRunOneJobAsOneDaemonDoes) {
  const std::vector<std::string> job = {"--epochs=3", "--freeze=autofreeze:50:4", "--watch"};
  {
    auto single = Start("single", 2);
    CommandResult r = single->Ftctl(Submit(job), std::chrono::seconds(240));
    ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
    ASSERT_THAT(r.out, HasSubstr("RUNNING -> SUCCEEDED"));
  }
  auto coordinator = StartCoordinator();
  auto worker = StartWorker(*coordinator, "w1");
  CommandResult info = coordinator->Ftctl({"info"});
  EXPECT_THAT(info.out, AllOf(HasSubstr("workers:"), HasSubstr("w1  collectives on 127.0.0.1"),
                              HasSubstr("w1/cpu:0  idle")));

  CommandResult r = coordinator->Ftctl(Submit(job), std::chrono::seconds(240));
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err << Log("coordinator") << Log("w1");
  EXPECT_THAT(r.out, AllOf(HasSubstr("QUEUED -> RUNNING: started on cpu:0, w1/cpu:0"),
                           HasSubstr("step 48/48 (100%) epoch 3/3"),
                           HasSubstr("RUNNING -> SUCCEEDED")));
  EXPECT_THAT(Log("w1"), AllOf(HasSubstr("attached to the coordinator"),
                               HasSubstr("running replica 1 of job-1 on cpu:0")));
  absl::StatusOr<std::string> pooled =
      ReadFile(dir_.Sub("coordinator-data/jobs/job-1/model/model.safetensors"));
  absl::StatusOr<std::string> alone =
      ReadFile(dir_.Sub("single-data/jobs/job-1/model/model.safetensors"));
  ASSERT_TRUE(pooled.ok() && alone.ok());
  EXPECT_TRUE(*pooled == *alone) << "the pool's model differs from one daemon's";
  // The worker keeps its copies of the inputs by digest, no job state.
  EXPECT_FALSE(std::filesystem::exists(dir_.Sub("w1-data/jobs")));
  EXPECT_TRUE(std::filesystem::is_directory(dir_.Sub("w1-data/pool/blobs")));

  // A second worker with the same name is refused and exits, naming why.
  auto twin = StartWorker(*coordinator, "w1", /*wait=*/false, "twin");
  EXPECT_EQ(twin->Wait(std::chrono::seconds(30)), 1);
  EXPECT_THAT(Log("twin"), AllOf(HasSubstr("refused worker w1"), HasSubstr("ALREADY_EXISTS"),
                                 HasSubstr("attached already")));
  EXPECT_THAT(Log("w1"), Not(HasSubstr("refused")));
  EXPECT_THAT(coordinator->Ftctl({"info"}).out, HasSubstr("w1/cpu:0"));
  worker->Signal(SIGTERM);
  EXPECT_EQ(worker->Wait(std::chrono::seconds(30)), 0);
}

// A worker killed in the middle of a job: the coordinator keeps serving,
// the job goes back to the queue with the reason and resumes from its
// checkpoint on the coordinator's own device, and succeeds.
TEST_F(PoolTest, AJobResumesOnTheCoordinatorWhenItsWorkerIsKilled) {
  ftd::testing::WriteSentimentCsv(dir_.Sub("data/train.csv"), 1024, 1);
  auto coordinator = StartCoordinator();
  auto worker = StartWorker(*coordinator, "w1");
  CommandResult submitted = coordinator->Ftctl(
      Submit({"--epochs=6", "--checkpoint_every_steps=8", "--name=long"}));
  ASSERT_EQ(submitted.exit_code, 0) << submitted.err;
  // Past a checkpoint, on both devices: the worker dies.
  bool killed = false;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (!killed && std::chrono::steady_clock::now() < deadline) {
    CommandResult get = coordinator->Ftctl({"get", "job-1"});
    if (get.out.find("checkpoint:  step") != std::string::npos &&
        get.out.find("RUNNING") != std::string::npos) {
      worker->Signal(SIGKILL);
      killed = true;
    } else {
      ASSERT_THAT(get.out, Not(HasSubstr("SUCCEEDED"))) << "the job ended before the kill";
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  ASSERT_TRUE(killed);
  CommandResult watch = coordinator->Ftctl({"watch", "job-1"}, std::chrono::seconds(240));
  EXPECT_EQ(watch.exit_code, 0) << watch.out << watch.err << Log("coordinator");
  CommandResult get = coordinator->Ftctl({"get", "job-1"});
  EXPECT_THAT(get.out, HasSubstr("SUCCEEDED"));
  CommandResult events = coordinator->Ftctl({"events", "job-1"});
  EXPECT_THAT(events.out,
              AllOf(HasSubstr("worker w1 left"), HasSubstr("resumes from its checkpoint on 1 device"),
                    HasSubstr("started on cpu:0"), HasSubstr("RUNNING -> SUCCEEDED")));
  // The coordinator served throughout, and lists no worker now.
  CommandResult info = coordinator->Ftctl({"info"});
  EXPECT_EQ(info.exit_code, 0);
  EXPECT_THAT(info.out, Not(HasSubstr("w1/cpu:0")));
}

// A coordinator restarted in the middle of a job: the job goes back to the
// queue with its checkpoint; the worker attaches again, and the job resumes
// on both daemons, the worker reading the checkpoint it fetched.
TEST_F(PoolTest, AJobResumesOnThePoolAfterTheCoordinatorRestarts) {
  ftd::testing::WriteSentimentCsv(dir_.Sub("data/train.csv"), 1024, 1);
  int port = 0;
  {
    // A free port for both of the coordinator's lives.
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    port = ntohs(addr.sin_port);
    ::close(fd);
  }
  const std::vector<std::string> flags = {
      "--rendezvous_address=127.0.0.1:0", "--pool_heartbeat_interval=200ms",
      "--collective_timeout=60s", absl::StrCat("--address=127.0.0.1:", port)};
  auto coordinator = Start("coordinator", 1, flags);
  auto worker = StartWorker(*coordinator, "w1");
  ASSERT_EQ(coordinator
                ->Ftctl(Submit({"--epochs=6", "--checkpoint_every_steps=8", "--name=restarted"}))
                .exit_code,
            0);
  bool stopped = false;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (!stopped && std::chrono::steady_clock::now() < deadline) {
    CommandResult get = coordinator->Ftctl({"get", "job-1"});
    if (get.out.find("checkpoint:  step") != std::string::npos &&
        get.out.find("RUNNING") != std::string::npos) {
      coordinator->process().Signal(SIGTERM);
      EXPECT_EQ(coordinator->process().Wait(std::chrono::seconds(120)), 0);
      stopped = true;
    } else {
      ASSERT_THAT(get.out, Not(HasSubstr("SUCCEEDED"))) << "the job ended before the restart";
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  ASSERT_TRUE(stopped);
  coordinator = Start("coordinator", 1, flags);
  ASSERT_TRUE(coordinator->started());
  CommandResult watch = coordinator->Ftctl({"watch", "job-1"}, std::chrono::seconds(240));
  EXPECT_EQ(watch.exit_code, 0) << watch.out << watch.err << Log("coordinator") << Log("w1");
  CommandResult events = coordinator->Ftctl({"events", "job-1"});
  EXPECT_THAT(events.out, AllOf(HasSubstr("the daemon is shutting down"),
                                HasSubstr("resumed from step"),
                                HasSubstr("RUNNING -> SUCCEEDED")));
  // Both lives ran on both daemons.
  size_t starts = 0;
  for (size_t at = 0; (at = events.out.find("started on cpu:0, w1/cpu:0", at)) != std::string::npos;
       ++at) {
    ++starts;
  }
  EXPECT_EQ(starts, 2u) << events.out;
  EXPECT_THAT(Log("w1"), HasSubstr("attached to the coordinator"));
}

}  // namespace
}  // namespace ftd
