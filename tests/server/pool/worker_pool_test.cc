#include "server/pool/worker_pool.h"

#include <atomic>
#include <chrono>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/training/trainer.h"
#include "tests/testing/status_matchers.h"

namespace ftd::pool {
namespace {

using ::ftd::testing::StatusIs;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// A worker's stream that records what the pool sent.
class FakeStream final : public WorkerStream {
 public:
  bool Send(const v1::CoordinatorMessage& message) override {
    absl::MutexLock lock(&mu_);
    if (broken_) return false;
    sent_.push_back(message);
    return true;
  }
  void Cancel() override { cancelled_ = true; }
  std::vector<v1::CoordinatorMessage> sent() {
    absl::MutexLock lock(&mu_);
    return sent_;
  }
  void Break() {
    absl::MutexLock lock(&mu_);
    broken_ = true;
  }
  std::atomic<bool> cancelled_{false};

 private:
  absl::Mutex mu_;
  std::vector<v1::CoordinatorMessage> sent_;
  bool broken_ = false;
};

v1::Hello Hello(const std::string& name, std::vector<std::string> devices = {"cpu:0"},
                const std::string& version = "1.2.3") {
  v1::Hello hello;
  hello.set_name(name);
  hello.set_version(version);
  hello.set_collective_host("10.0.0.7");
  for (const std::string& d : devices) hello.add_devices()->set_name(d);
  return hello;
}

class WorkerPoolTest : public ::testing::Test {
 protected:
  WorkerPool::Options Options() {
    WorkerPool::Options options;
    options.version = "1.2.3";
    options.add_devices = [this](const std::vector<scheduler::Device>& devices) {
      absl::MutexLock lock(&mu_);
      for (const scheduler::Device& d : devices) devices_.push_back(d.name());
    };
    options.remove_worker = [this](const std::string& worker) {
      absl::MutexLock lock(&mu_);
      removed_.push_back(worker);
    };
    options.heartbeat_interval = absl::Milliseconds(50);
    options.max_workers = 2;
    return options;
  }
  std::vector<std::string> devices() {
    absl::MutexLock lock(&mu_);
    return devices_;
  }
  std::vector<std::string> removed() {
    absl::MutexLock lock(&mu_);
    return removed_;
  }

  absl::Mutex mu_;
  std::vector<std::string> devices_, removed_;
};

// A worker is welcomed, then its devices join the scheduler; bad hellos,
// another version, a name attached already and one worker too many are
// refused, each naming why.
TEST_F(WorkerPoolTest, AttachWelcomesAWorkerAndRefusesBadOnes) {
  WorkerPool pool(Options());
  FakeStream a;
  ASSERT_OK(pool.Attach(Hello("worker-1", {"cpu:0", "cuda:1"}), &a));
  ASSERT_EQ(a.sent().size(), 1u);
  EXPECT_EQ(a.sent()[0].welcome().version(), "1.2.3");
  EXPECT_EQ(a.sent()[0].welcome().heartbeat_interval_ms(), 50);
  EXPECT_THAT(devices(), ElementsAre("worker-1/cpu:0", "worker-1/cuda:1"));
  std::vector<ftd::v1::Worker> workers = pool.Workers();
  ASSERT_EQ(workers.size(), 1u);
  EXPECT_EQ(workers[0].name(), "worker-1");
  EXPECT_EQ(workers[0].collective_host(), "10.0.0.7");
  EXPECT_THAT(workers[0].devices(), ElementsAre("worker-1/cpu:0", "worker-1/cuda:1"));

  FakeStream b;
  EXPECT_THAT(pool.Attach(Hello("worker-1"), &b),
              StatusIs(absl::StatusCode::kAlreadyExists,
                       AllOf(HasSubstr("worker-1 is attached already"), HasSubstr("--worker_name"))));
  EXPECT_THAT(pool.Attach(Hello("worker-2", {"cpu:0"}, "1.2.4"), &b),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr("runs ftd \"1.2.4\""), HasSubstr("coordinator runs 1.2.3"))));
  EXPECT_THAT(pool.Attach(Hello("a/b"), &b),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("hello.name")));
  EXPECT_THAT(pool.Attach(Hello("worker-2", {}), &b),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("hello.devices")));
  EXPECT_THAT(pool.Attach(Hello("worker-2", {"tpu:0"}), &b),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("hello.devices[0].name")));
  EXPECT_THAT(pool.Attach(Hello("worker-2", {"cpu:0", "cpu:0"}), &b),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("offered twice")));
  v1::Hello silent = Hello("worker-2");
  silent.clear_collective_host();
  EXPECT_THAT(pool.Attach(silent, &b),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("hello.collective_host")));
  EXPECT_TRUE(b.sent().empty());
  ASSERT_OK(pool.Attach(Hello("worker-2"), &b));
  FakeStream c;
  EXPECT_THAT(pool.Attach(Hello("worker-3"), &c),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("--max_workers")));
  // Heartbeats keep both attached.
  for (int i = 0; i < 6; ++i) {
    pool.Heartbeat("worker-1");
    pool.Heartbeat("worker-2");
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  EXPECT_EQ(pool.Workers().size(), 2u);
  EXPECT_TRUE(removed().empty());
}

// A replica placed on a worker: the worker is sent it, may fetch its files
// (and only those) while it runs, and its end is what Wait returns.
TEST_F(WorkerPoolTest, AReplicaRunsOnItsWorkerAndEndsAsItSays) {
  WorkerPool pool(Options());
  FakeStream stream;
  ASSERT_OK(pool.Attach(Hello("w1"), &stream));
  v1::RunReplica run;
  run.set_job_id("job-4");
  run.set_rank(1);
  WorkerPool::OfferedFile file;
  file.file.set_name("config.json");
  file.file.set_sha256(std::string(64, 'a'));
  file.path = "/data/model/config.json";
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<WorkerPool::Replica> replica,
                       pool.Run("w1", run, {file}));
  ASSERT_EQ(stream.sent().size(), 2u);
  const v1::RunReplica sent = stream.sent()[1].run();
  EXPECT_EQ(sent.job_id(), "job-4");
  EXPECT_FALSE(sent.run_id().empty());
  EXPECT_THAT(pool.OfferedPath("w1", std::string(64, 'a')),
              ::ftd::testing::IsOkAndHolds(std::string("/data/model/config.json")));
  // Not another worker's, not another file.
  EXPECT_THAT(pool.OfferedPath("w2", std::string(64, 'a')),
              StatusIs(absl::StatusCode::kNotFound, ::testing::_));
  EXPECT_THAT(pool.OfferedPath("w1", std::string(64, 'b')),
              StatusIs(absl::StatusCode::kNotFound, ::testing::_));
  EXPECT_THAT(replica->Wait(absl::Milliseconds(20)),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("did not report")));

  // Another worker cannot end it; its own can.
  v1::ReplicaEnded ended;
  ended.set_run_id(sent.run_id());
  ended.set_code(static_cast<int>(absl::StatusCode::kInvalidArgument));
  ended.set_message("train.csv: row 3 has no label");
  pool.ReplicaEnded("w2", ended);
  EXPECT_FALSE(replica->Wait(absl::Milliseconds(1)).code() == absl::StatusCode::kInvalidArgument);
  pool.ReplicaEnded("w1", ended);
  absl::Status end = replica->Wait(absl::Seconds(1));
  EXPECT_THAT(end, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("row 3")));
  EXPECT_FALSE(training::IsDeviceLost(end));
  // Ended: its files are no longer offered.
  EXPECT_THAT(pool.OfferedPath("w1", std::string(64, 'a')),
              StatusIs(absl::StatusCode::kNotFound, ::testing::_));
  // Stop reaches the worker.
  replica->Stop();
  ASSERT_EQ(stream.sent().size(), 3u);
  EXPECT_EQ(stream.sent()[2].stop().run_id(), sent.run_id());

  // On a worker not attached: lost at once.
  absl::StatusOr<std::unique_ptr<WorkerPool::Replica>> nowhere = pool.Run("w9", run, {});
  EXPECT_TRUE(training::IsDeviceLost(nowhere.status())) << nowhere.status();
}

// A worker that leaves (its stream ends, or it falls silent) takes its
// devices out of the scheduler, and its replicas end DeviceLost with the
// reason.
TEST_F(WorkerPoolTest, AWorkerThatLeavesLosesItsReplicas) {
  WorkerPool pool(Options());
  FakeStream one, two;
  ASSERT_OK(pool.Attach(Hello("w1"), &one));
  ASSERT_OK(pool.Attach(Hello("w2"), &two));
  v1::RunReplica run;
  run.set_job_id("job-1");
  ASSERT_OK_AND_ASSIGN(auto on_one, pool.Run("w1", run, {}));
  ASSERT_OK_AND_ASSIGN(auto on_two, pool.Run("w2", run, {}));

  // A stale stream's end does not detach the worker attached now.
  FakeStream stale;
  pool.Detach("w1", "its connection closed", &stale);
  EXPECT_EQ(pool.Workers().size(), 2u);
  pool.Detach("w1", "its connection closed", &one);
  EXPECT_TRUE(one.cancelled_);
  absl::Status lost = on_one->Wait(absl::Seconds(1));
  EXPECT_TRUE(training::IsDeviceLost(lost)) << lost;
  EXPECT_THAT(lost, StatusIs(absl::StatusCode::kUnavailable,
                             HasSubstr("worker w1 left: its connection closed")));
  EXPECT_THAT(removed(), ElementsAre("w1"));
  // It may attach again.
  FakeStream again;
  ASSERT_OK(pool.Attach(Hello("w1"), &again));

  // w2 falls silent (w1 keeps beating): gone after three intervals.
  for (int i = 0; i < 40 && pool.Workers().size() > 1; ++i) {
    pool.Heartbeat("w1");
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  std::vector<ftd::v1::Worker> left = pool.Workers();
  ASSERT_EQ(left.size(), 1u);
  EXPECT_EQ(left[0].name(), "w1");
  absl::Status silent = on_two->Wait(absl::Seconds(1));
  EXPECT_TRUE(training::IsDeviceLost(silent));
  EXPECT_THAT(silent.message(), HasSubstr("no heartbeat"));
  EXPECT_THAT(removed(), ElementsAre("w1", "w2"));

  // Closing the pool detaches the rest and refuses newcomers.
  pool.Close();
  EXPECT_TRUE(again.cancelled_);
  FakeStream late;
  EXPECT_THAT(pool.Attach(Hello("w3"), &late), StatusIs(absl::StatusCode::kUnavailable, ::testing::_));
}

// A worker whose stream breaks before its welcome is not attached.
TEST_F(WorkerPoolTest, AWorkerThatCannotBeWelcomedIsNotAttached) {
  WorkerPool pool(Options());
  FakeStream broken;
  broken.Break();
  EXPECT_THAT(pool.Attach(Hello("w1"), &broken), StatusIs(absl::StatusCode::kUnavailable, ::testing::_));
  EXPECT_TRUE(pool.Workers().empty());
  EXPECT_TRUE(devices().empty());
}

TEST(WorkerPoolNameTest, NamesArePlain) {
  EXPECT_TRUE(WorkerPool::ValidName("worker-1"));
  EXPECT_TRUE(WorkerPool::ValidName("ftd-worker-0.ftd-workers"));
  EXPECT_FALSE(WorkerPool::ValidName(""));
  EXPECT_FALSE(WorkerPool::ValidName("a/b"));
  EXPECT_FALSE(WorkerPool::ValidName("-x"));
  EXPECT_FALSE(WorkerPool::ValidName(".."));
  EXPECT_FALSE(WorkerPool::ValidName(std::string(64, 'a')));
}

}  // namespace
}  // namespace ftd::pool
