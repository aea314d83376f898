#include "server/scheduler/scheduler.h"

#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "absl/strings/str_join.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace ftd::scheduler {
namespace {

using ::ftd::testing::StatusIs;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// Stands in for the trainer: each job runs until the test releases it or
// the scheduler asks it to stop.
class FakeRunner {
 public:
  void Run(const std::string& id, const std::vector<Device>& devices, const StopToken& stop) {
    std::unique_lock<std::mutex> lock(mu_);
    started_.push_back(id);
    std::vector<std::string> names;
    for (const Device& d : devices) names.push_back(d.name());
    device_of_[id] = absl::StrJoin(names, ",");
    cv_.notify_all();
    // Polls like a training loop that checks the token every step.
    while (!released_.count(id) && !stop.stop_requested()) {
      cv_.wait_for(lock, std::chrono::milliseconds(2));
    }
    reason_of_[id] = stop.reason();
    by_of_[id] = stop.by();
    finished_.push_back(id);
    cv_.notify_all();
  }

  void Release(const std::string& id) {
    std::lock_guard<std::mutex> lock(mu_);
    released_.insert(id);
    cv_.notify_all();
  }

  // Waits (bounded) until `n` jobs have started / finished.
  bool AwaitStarted(size_t n) {
    return Await([&] { return started_.size() >= n; });
  }
  bool AwaitFinished(size_t n) {
    return Await([&] { return finished_.size() >= n; });
  }

  std::vector<std::string> started() {
    std::lock_guard<std::mutex> lock(mu_);
    return started_;
  }
  std::string device_of(const std::string& id) {
    std::lock_guard<std::mutex> lock(mu_);
    return device_of_[id];
  }
  StopReason reason_of(const std::string& id) {
    std::lock_guard<std::mutex> lock(mu_);
    return reason_of_[id];
  }
  std::string by_of(const std::string& id) {
    std::lock_guard<std::mutex> lock(mu_);
    return by_of_[id];
  }

  Scheduler::RunFn fn() {
    return [this](const std::string& id, const std::vector<Device>& d, const StopToken& s) {
      Run(id, d, s);
    };
  }

 private:
  template <typename Pred>
  bool Await(Pred pred) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(10), pred);
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::string> started_, finished_;
  std::set<std::string> released_;
  std::map<std::string, std::string> device_of_;
  std::map<std::string, StopReason> reason_of_;
  std::map<std::string, std::string> by_of_;
};

Device Cpu(int i) { return {Device::Kind::kCpu, i, "cpu slot"}; }
Device Cuda(int i) { return {Device::Kind::kCuda, i, "fake gpu"}; }

v1::DeviceRequest Any() { return v1::DeviceRequest(); }
v1::DeviceRequest CpuOnly() {
  v1::DeviceRequest r;
  r.set_kind(v1::DeviceRequest::KIND_CPU);
  return r;
}
v1::DeviceRequest Gpu(int i) {
  v1::DeviceRequest r;
  r.set_kind(v1::DeviceRequest::KIND_CUDA);
  r.set_cuda_index(i);
  return r;
}

// One group's burst does not starve another's queue: among jobs of one
// priority, groups take turns (the fewest running first, then the one that
// started longest ago); priority still goes first.
TEST(SchedulerTest, GroupsTakeTurnsWithinAPriority) {
  FakeRunner runner;
  Scheduler scheduler({{Cpu(0)}, runner.fn()});
  for (int i = 1; i <= 4; ++i) scheduler.Enqueue("a" + std::to_string(i), 0, i, Any(), "alice");
  scheduler.Enqueue("b1", 0, 5, Any(), "bob");
  scheduler.Enqueue("b2", 0, 6, Any(), "bob");
  scheduler.Enqueue("urgent", 9, 7, Any(), "alice");
  // A place in line counts the group's own jobs only: the others' would
  // tell of their work, and the turns make one line of all meaningless.
  EXPECT_EQ(scheduler.QueuePosition("urgent"), 1);
  EXPECT_EQ(scheduler.QueuePosition("a1"), 2);
  EXPECT_EQ(scheduler.QueuePosition("a4"), 5);
  EXPECT_EQ(scheduler.QueuePosition("b1"), 1);
  EXPECT_EQ(scheduler.QueuePosition("b2"), 2);
  EXPECT_EQ(scheduler.QueueLength(), 7);
  scheduler.Start();
  const std::vector<std::string> expected = {"urgent", "b1", "a1", "b2", "a2", "a3", "a4"};
  for (size_t i = 0; i < expected.size(); ++i) {
    ASSERT_TRUE(runner.AwaitStarted(i + 1));
    EXPECT_EQ(runner.started()[i], expected[i]) << i;
    runner.Release(runner.started()[i]);
  }
  ASSERT_TRUE(runner.AwaitFinished(expected.size()));
}

// A group may be capped in the jobs it runs at once; the others use the
// devices it leaves.
TEST(SchedulerTest, AGroupCappedInRunningJobsLeavesDevicesToOthers) {
  FakeRunner runner;
  Scheduler::Options options{{Cpu(0), Cpu(1), Cpu(2)}, runner.fn()};
  options.max_running_per_group = 1;
  Scheduler scheduler(options);
  scheduler.Enqueue("a1", 0, 1, Any(), "alice");
  scheduler.Enqueue("a2", 0, 2, Any(), "alice");
  scheduler.Enqueue("b1", 0, 3, Any(), "bob");
  scheduler.Start();
  ASSERT_TRUE(runner.AwaitStarted(2));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_THAT(runner.started(), ::testing::UnorderedElementsAre("a1", "b1"));  // one idle
  runner.Release("a1");
  ASSERT_TRUE(runner.AwaitStarted(3));
  EXPECT_EQ(runner.started()[2], "a2");
  runner.Release("a2");
  runner.Release("b1");
  ASSERT_TRUE(runner.AwaitFinished(3));
}

// A group at its cap does not preempt another's job for a job it could not
// start anyway.
TEST(SchedulerTest, AGroupAtItsCapPreemptsNoOne) {
  FakeRunner runner;
  Scheduler::Options options{{Cpu(0), Cpu(1)}, runner.fn()};
  options.max_running_per_group = 1;
  options.preemption = true;
  Scheduler scheduler(options);
  scheduler.Start();
  scheduler.Enqueue("a1", 0, 1, Any(), "alice");
  scheduler.Enqueue("b1", 0, 2, Any(), "bob");
  ASSERT_TRUE(runner.AwaitStarted(2));
  scheduler.Enqueue("a-urgent", 5, 3, Any(), "alice");
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(runner.started().size(), 2u);
  // Neither running job was asked to stop.
  EXPECT_EQ(scheduler.QueuePosition("a-urgent"), 1);
  runner.Release("a1");  // alice's own job ends: hers starts
  ASSERT_TRUE(runner.AwaitStarted(3));
  EXPECT_EQ(runner.started()[2], "a-urgent");
  EXPECT_EQ(runner.reason_of("a1"), StopReason::kNone);
  runner.Release("b1");
  runner.Release("a-urgent");
  ASSERT_TRUE(runner.AwaitFinished(3));
  EXPECT_EQ(runner.reason_of("b1"), StopReason::kNone);
}

TEST(SchedulerTest, HigherPriorityFirstThenFirstComeFirstServed) {
  FakeRunner runner;
  Scheduler scheduler({{Cpu(0)}, runner.fn()});
  scheduler.Enqueue("a", 0, 1, Any());
  scheduler.Enqueue("b", 5, 2, Any());
  scheduler.Enqueue("c", 0, 3, Any());
  scheduler.Enqueue("d", 5, 4, Any());
  scheduler.Enqueue("e", -3, 5, Any());
  EXPECT_EQ(scheduler.QueuePosition("b"), 1);
  EXPECT_EQ(scheduler.QueuePosition("d"), 2);
  EXPECT_EQ(scheduler.QueuePosition("a"), 3);
  EXPECT_EQ(scheduler.QueuePosition("e"), 5);
  EXPECT_EQ(scheduler.QueueLength(), 5);
  scheduler.Start();
  const std::vector<std::string> expected = {"b", "d", "a", "c", "e"};
  for (size_t i = 0; i < expected.size(); ++i) {
    ASSERT_TRUE(runner.AwaitStarted(i + 1));
    // One device: the next job starts only after this one is released.
    EXPECT_EQ(runner.started().size(), i + 1);
    EXPECT_EQ(runner.started()[i], expected[i]);
    runner.Release(expected[i]);
  }
  ASSERT_TRUE(runner.AwaitFinished(5));
  EXPECT_THAT(runner.started(), ElementsAre("b", "d", "a", "c", "e"));
}

TEST(SchedulerTest, ALateHighPriorityJobOvertakesTheQueueButNotTheRunningJob) {
  FakeRunner runner;
  Scheduler scheduler({{Cpu(0)}, runner.fn()});
  scheduler.Start();
  scheduler.Enqueue("first", 0, 1, Any());
  ASSERT_TRUE(runner.AwaitStarted(1));
  scheduler.Enqueue("low", 0, 2, Any());
  scheduler.Enqueue("urgent", 100, 3, Any());
  EXPECT_EQ(scheduler.QueuePosition("urgent"), 1);
  runner.Release("first");
  ASSERT_TRUE(runner.AwaitStarted(2));
  EXPECT_EQ(runner.started()[1], "urgent");
  runner.Release("urgent");
  runner.Release("low");
  ASSERT_TRUE(runner.AwaitFinished(3));
}

TEST(SchedulerTest, OneJobPerDeviceAndJobsRunSideBySideOnSeveral) {
  FakeRunner runner;
  Scheduler scheduler({{Cpu(0), Cpu(1)}, runner.fn()});
  scheduler.Start();
  scheduler.Enqueue("a", 0, 1, Any());
  scheduler.Enqueue("b", 0, 2, Any());
  scheduler.Enqueue("c", 0, 3, Any());
  ASSERT_TRUE(runner.AwaitStarted(2));
  EXPECT_EQ(scheduler.QueuePosition("c"), 1);
  std::set<std::string> busy;
  for (const auto& state : scheduler.Devices()) busy.insert(state.job_id);
  EXPECT_EQ(busy, (std::set<std::string>{"a", "b"}));
  EXPECT_NE(runner.device_of("a"), runner.device_of("b"));
  runner.Release("b");
  ASSERT_TRUE(runner.AwaitStarted(3));
  EXPECT_EQ(runner.device_of("c"), runner.device_of("b"));
  runner.Release("a");
  runner.Release("c");
  ASSERT_TRUE(runner.AwaitFinished(3));
}

TEST(SchedulerTest, DeviceRequestsAreRespected) {
  FakeRunner runner;
  Scheduler scheduler({{Cpu(0), Cuda(0), Cuda(1)}, runner.fn()});
  scheduler.Enqueue("on-cuda1", 0, 1, Gpu(1));
  scheduler.Enqueue("on-cpu", 0, 2, CpuOnly());
  scheduler.Enqueue("anywhere", 0, 3, Any());
  scheduler.Start();
  ASSERT_TRUE(runner.AwaitStarted(3));
  EXPECT_EQ(runner.device_of("on-cuda1"), "cuda:1");
  EXPECT_EQ(runner.device_of("on-cpu"), "cpu:0");
  // ANY takes a GPU before a CPU slot.
  EXPECT_EQ(runner.device_of("anywhere"), "cuda:0");
  for (const char* id : {"on-cuda1", "on-cpu", "anywhere"}) runner.Release(id);
  ASSERT_TRUE(runner.AwaitFinished(3));
}

TEST(SchedulerTest, AJobWaitingForABusyGpuDoesNotBlockAFreeCpu) {
  FakeRunner runner;
  Scheduler scheduler({{Cpu(0), Cuda(0)}, runner.fn()});
  scheduler.Start();
  scheduler.Enqueue("gpu-1", 10, 1, Gpu(0));
  ASSERT_TRUE(runner.AwaitStarted(1));
  scheduler.Enqueue("gpu-2", 10, 2, Gpu(0));  // must wait for cuda:0
  scheduler.Enqueue("cpu", 0, 3, CpuOnly());  // lower priority, but its device is free
  ASSERT_TRUE(runner.AwaitStarted(2));
  EXPECT_EQ(runner.started()[1], "cpu");
  EXPECT_EQ(scheduler.QueuePosition("gpu-2"), 1);
  runner.Release("gpu-1");
  ASSERT_TRUE(runner.AwaitStarted(3));
  EXPECT_EQ(runner.device_of("gpu-2"), "cuda:0");
  runner.Release("gpu-2");
  runner.Release("cpu");
  ASSERT_TRUE(runner.AwaitFinished(3));
}

TEST(SchedulerTest, CheckRequestExplainsWhatIsMissing) {
  FakeRunner runner;
  Scheduler cpu_only({{Cpu(0)}, runner.fn()});
  EXPECT_OK(cpu_only.CheckRequest(Any()));
  EXPECT_OK(cpu_only.CheckRequest(CpuOnly()));
  EXPECT_THAT(cpu_only.CheckRequest(Gpu(0)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no CUDA device")));
  Scheduler with_gpus({{Cpu(0), Cuda(0), Cuda(1)}, runner.fn()});
  EXPECT_OK(with_gpus.CheckRequest(Gpu(1)));
  EXPECT_THAT(with_gpus.CheckRequest(Gpu(2)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("cuda:0, cuda:1")));
  EXPECT_THAT(with_gpus.CheckRequest(Gpu(-1)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("cuda_index")));
}

TEST(SchedulerTest, CancelRemovesAQueuedJobAndStopsARunningOne) {
  FakeRunner runner;
  Scheduler scheduler({{Cpu(0)}, runner.fn()});
  scheduler.Start();
  scheduler.Enqueue("running", 0, 1, Any());
  scheduler.Enqueue("queued", 0, 2, Any());
  scheduler.Enqueue("next", 0, 3, Any());
  ASSERT_TRUE(runner.AwaitStarted(1));
  EXPECT_EQ(scheduler.Cancel("queued"), Scheduler::CancelOutcome::kRemovedFromQueue);
  EXPECT_EQ(scheduler.QueuePosition("next"), 1);
  EXPECT_EQ(scheduler.Cancel("running"), Scheduler::CancelOutcome::kStopRequested);
  ASSERT_TRUE(runner.AwaitFinished(1));
  EXPECT_EQ(runner.reason_of("running"), StopReason::kCancelled);
  ASSERT_TRUE(runner.AwaitStarted(2));
  EXPECT_EQ(runner.started()[1], "next");
  EXPECT_EQ(scheduler.Cancel("nonexistent"), Scheduler::CancelOutcome::kNotFound);
  runner.Release("next");
  ASSERT_TRUE(runner.AwaitFinished(2));
  EXPECT_THAT(runner.started(), ElementsAre("running", "next"));
}

// A job on several devices gets them all at once, of one kind.
TEST(SchedulerTest, AJobOnSeveralDevicesGetsThemAllAtOnce) {
  FakeRunner runner;
  Scheduler scheduler({{Cpu(0), Cpu(1), Cuda(0)}, runner.fn()});
  scheduler.Start();
  scheduler.Enqueue("pair", 0, 1, CpuOnly(), "", 2);
  ASSERT_TRUE(runner.AwaitStarted(1));
  EXPECT_EQ(runner.device_of("pair"), "cpu:0,cpu:1");
  std::set<std::string> busy;
  for (const auto& state : scheduler.Devices()) {
    if (state.job_id == "pair") busy.insert(state.device.name());
  }
  EXPECT_EQ(busy, (std::set<std::string>{"cpu:0", "cpu:1"}));
  // ANY on two devices: not one GPU and one CPU slot; the CPU slots are busy.
  scheduler.Enqueue("any-pair", 0, 2, Any(), "", 2);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(runner.started().size(), 1u);
  runner.Release("pair");
  ASSERT_TRUE(runner.AwaitStarted(2));
  EXPECT_EQ(runner.device_of("any-pair"), "cpu:0,cpu:1");
  runner.Release("any-pair");
  ASSERT_TRUE(runner.AwaitFinished(2));
}

// Jobs on one device queued after a job on several do not take each device
// as it frees: the devices it waits for are held for it.
TEST(SchedulerTest, AJobOnSeveralDevicesIsNotStarvedBySmallerOnes) {
  FakeRunner runner;
  Scheduler scheduler({{Cpu(0), Cpu(1), Cpu(2)}, runner.fn()});
  scheduler.Start();
  scheduler.Enqueue("a", 0, 1, Any());
  scheduler.Enqueue("b", 0, 2, Any());
  ASSERT_TRUE(runner.AwaitStarted(2));
  scheduler.Enqueue("gang", 0, 3, Any(), "", 3);
  scheduler.Enqueue("small-1", 0, 4, Any());
  scheduler.Enqueue("small-2", 0, 5, Any());
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  // cpu:2 is free, but held for the gang. (a and b start together: their
  // threads race to say so.)
  EXPECT_THAT(runner.started(), ::testing::UnorderedElementsAre("a", "b"));
  runner.Release("a");
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_THAT(runner.started(), ::testing::UnorderedElementsAre("a", "b"));
  runner.Release("b");
  ASSERT_TRUE(runner.AwaitStarted(3));
  EXPECT_EQ(runner.started()[2], "gang");
  EXPECT_EQ(runner.device_of("gang"), "cpu:0,cpu:1,cpu:2");
  runner.Release("gang");
  ASSERT_TRUE(runner.AwaitStarted(5));
  runner.Release("small-1");
  runner.Release("small-2");
  ASSERT_TRUE(runner.AwaitFinished(5));
}

// Two jobs on several devices never hold part of what each needs: the first
// gets all of its devices, the second waits for all of its own; a job
// before both in the queue is not held back.
TEST(SchedulerTest, TwoJobsOnSeveralDevicesDoNotDeadlock) {
  FakeRunner runner;
  Scheduler scheduler({{Cpu(0), Cpu(1), Cpu(2)}, runner.fn()});
  scheduler.Enqueue("g1", 0, 1, CpuOnly(), "", 2);
  scheduler.Enqueue("g2", 0, 2, CpuOnly(), "", 2);
  scheduler.Enqueue("after", 0, 3, CpuOnly());
  scheduler.Start();
  ASSERT_TRUE(runner.AwaitStarted(1));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_THAT(runner.started(), ElementsAre("g1"));  // cpu:2 held for g2
  runner.Release("g1");
  ASSERT_TRUE(runner.AwaitStarted(3));  // both at once (their threads race to say so)
  const std::vector<std::string> started = runner.started();
  EXPECT_THAT(std::vector<std::string>(started.begin() + 1, started.end()),
              ::testing::UnorderedElementsAre("g2", "after"));
  EXPECT_EQ(runner.device_of("g2"), "cpu:0,cpu:1");
  EXPECT_EQ(runner.device_of("after"), "cpu:2");
  runner.Release("g2");
  runner.Release("after");
  ASSERT_TRUE(runner.AwaitFinished(3));
  // Cancelling a waiting gang gives its held devices to the jobs behind it.
  scheduler.Enqueue("busy", 0, 4, CpuOnly(), "", 2);
  ASSERT_TRUE(runner.AwaitStarted(4));
  scheduler.Enqueue("waiting-gang", 0, 5, CpuOnly(), "", 3);
  scheduler.Enqueue("single", 0, 6, CpuOnly());
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(runner.started().size(), 4u);
  EXPECT_EQ(scheduler.Cancel("waiting-gang"), Scheduler::CancelOutcome::kRemovedFromQueue);
  ASSERT_TRUE(runner.AwaitStarted(5));
  EXPECT_EQ(runner.started()[4], "single");
  runner.Release("busy");
  runner.Release("single");
  ASSERT_TRUE(runner.AwaitFinished(5));
}

TEST(SchedulerTest, CheckRequestCountsDevices) {
  FakeRunner runner;
  Scheduler scheduler({{Cpu(0), Cpu(1), Cuda(0)}, runner.fn()});
  EXPECT_OK(scheduler.CheckRequest(CpuOnly(), 2));
  EXPECT_OK(scheduler.CheckRequest(Any(), 2));
  EXPECT_THAT(scheduler.CheckRequest(CpuOnly(), 3),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("devices: 3"), HasSubstr("2 CPU devices"))));
  EXPECT_THAT(scheduler.CheckRequest(Any(), 3),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("devices: 3")));
  EXPECT_THAT(scheduler.CheckRequest(Gpu(0), 2),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("devices: 2"), HasSubstr("1 CUDA device"))));
  EXPECT_THAT(scheduler.CheckRequest(Gpu(1), 2),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("device.cuda_index")));
  EXPECT_THAT(scheduler.CheckRequest(Any(), 0),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("devices: must be")));
}

Device WorkerCpu(const std::string& worker, int i) {
  Device d = Cpu(i);
  d.host = worker;
  return d;
}

// A worker daemon's devices join the pool: a job on several devices takes
// one of this daemon's for its first replica and the worker's for the
// rest; a job on one device never runs on a worker's alone; a job whose
// first replica finds no device here waits, however many workers' are free.
TEST(SchedulerTest, WorkersDevicesJoinGangsBesideOneOfThisDaemons) {
  FakeRunner runner;
  Scheduler scheduler({{Cpu(0)}, runner.fn()});
  scheduler.Start();
  EXPECT_THAT(scheduler.CheckRequest(CpuOnly(), 2),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("1 CPU device")));
  EXPECT_EQ(scheduler.Capacity(CpuOnly()), 1);
  scheduler.AddDevices({WorkerCpu("w1", 0), WorkerCpu("w2", 0)});
  EXPECT_OK(scheduler.CheckRequest(CpuOnly(), 3));
  EXPECT_THAT(scheduler.CheckRequest(CpuOnly(), 4),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("3 CPU devices"), HasSubstr("2 of them on its workers"))));
  EXPECT_EQ(scheduler.Capacity(CpuOnly()), 3);
  std::vector<std::string> names;
  for (const auto& state : scheduler.Devices()) names.push_back(state.device.name());
  EXPECT_THAT(names, ElementsAre("cpu:0", "w1/cpu:0", "w2/cpu:0"));

  scheduler.Enqueue("pair", 0, 1, CpuOnly(), "", 2);
  ASSERT_TRUE(runner.AwaitStarted(1));
  EXPECT_EQ(runner.device_of("pair"), "cpu:0,w1/cpu:0");
  // w2's device is free, but a job on one device runs here, and a gang's
  // first replica too.
  scheduler.Enqueue("single", 0, 2, CpuOnly());
  scheduler.Enqueue("pair-2", 0, 3, CpuOnly(), "", 2);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_THAT(runner.started(), ElementsAre("pair"));
  runner.Release("pair");
  ASSERT_TRUE(runner.AwaitStarted(2));
  EXPECT_EQ(runner.started()[1], "single");
  EXPECT_EQ(runner.device_of("single"), "cpu:0");
  runner.Release("single");
  ASSERT_TRUE(runner.AwaitStarted(3));
  EXPECT_EQ(runner.device_of("pair-2"), "cpu:0,w1/cpu:0");

  // w1 leaves while pair-2 runs on its device: the device is gone from the
  // pool (the job's run fails on its own and returns it).
  scheduler.RemoveHost("w1");
  names.clear();
  for (const auto& state : scheduler.Devices()) names.push_back(state.device.name());
  EXPECT_THAT(names, ElementsAre("cpu:0", "w2/cpu:0"));
  EXPECT_EQ(scheduler.Capacity(CpuOnly()), 2);
  runner.Release("pair-2");
  ASSERT_TRUE(runner.AwaitFinished(3));
  scheduler.Enqueue("pair-3", 0, 4, CpuOnly(), "", 2);
  ASSERT_TRUE(runner.AwaitStarted(4));
  EXPECT_EQ(runner.device_of("pair-3"), "cpu:0,w2/cpu:0");
  runner.Release("pair-3");
  ASSERT_TRUE(runner.AwaitFinished(4));
  // It comes back: its device is the pool's again.
  scheduler.AddDevices({WorkerCpu("w1", 0)});
  EXPECT_EQ(scheduler.Capacity(CpuOnly()), 3);
  EXPECT_EQ(scheduler.Devices().size(), 3u);
}

// A daemon without a device of its own runs nothing, even with workers.
TEST(SchedulerTest, WorkersAloneRunNoJob) {
  FakeRunner runner;
  Scheduler scheduler({{}, runner.fn()});
  scheduler.Start();
  scheduler.AddDevices({WorkerCpu("w1", 0), WorkerCpu("w1", 1)});
  EXPECT_THAT(scheduler.CheckRequest(CpuOnly(), 2),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("runs its first replica on this daemon")));
  EXPECT_EQ(scheduler.Capacity(CpuOnly()), 0);
  scheduler.Enqueue("one", 0, 1, CpuOnly());
  scheduler.Enqueue("two", 0, 2, CpuOnly(), "", 2);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_TRUE(runner.started().empty());
  // One device here, and both can run, one after the other.
  scheduler.AddDevices({Cpu(0)});
  ASSERT_TRUE(runner.AwaitStarted(1));
  runner.Release("one");
  runner.Release("two");
  ASSERT_TRUE(runner.AwaitFinished(2));
  EXPECT_THAT(runner.started(), ElementsAre("one", "two"));
  EXPECT_EQ(runner.device_of("two"), "cpu:0,w1/cpu:0");
}

// A higher-priority job on several devices stops as many lower-priority jobs
// as it needs devices, and none when that would not be enough.
TEST(SchedulerTest, PreemptionFreesAllTheDevicesAGangNeedsOrNone) {
  FakeRunner runner;
  Scheduler::Options options{{Cpu(0), Cpu(1), Cpu(2)}, runner.fn()};
  options.preemption = true;
  Scheduler scheduler(std::move(options));
  scheduler.Start();
  scheduler.Enqueue("low", 0, 1, Any());
  scheduler.Enqueue("mid", 3, 2, Any());
  scheduler.Enqueue("top", 9, 3, Any());
  ASSERT_TRUE(runner.AwaitStarted(3));
  // Priority 5 could free only "low" and "mid": two of the three it needs.
  scheduler.Enqueue("wide", 5, 4, Any(), "", 3);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(runner.reason_of("low"), StopReason::kNone);
  EXPECT_EQ(scheduler.QueuePosition("wide"), 1);
  EXPECT_TRUE(scheduler.Cancel("wide") == Scheduler::CancelOutcome::kRemovedFromQueue);
  // Priority 5 on two devices: "low" and "mid" both stop for it.
  scheduler.Enqueue("pair", 5, 5, Any(), "", 2);
  ASSERT_TRUE(runner.AwaitFinished(2));
  EXPECT_EQ(runner.reason_of("low"), StopReason::kPreempted);
  EXPECT_EQ(runner.by_of("low"), "pair");
  EXPECT_EQ(runner.reason_of("mid"), StopReason::kPreempted);
  ASSERT_TRUE(runner.AwaitStarted(4));
  EXPECT_EQ(runner.started()[3], "pair");
  runner.Release("top");
  runner.Release("pair");
  ASSERT_TRUE(runner.AwaitFinished(4));
}

// With preemption, a queued job that no free device fits stops the running
// job of the lowest priority below its own (the latest of equals), once.
TEST(SchedulerTest, PreemptionStopsTheLowestPriorityRunningJobForAHigherOne) {
  FakeRunner runner;
  Scheduler::Options options{{Cpu(0), Cpu(1)}, runner.fn()};
  options.preemption = true;
  Scheduler scheduler(std::move(options));
  scheduler.Start();
  scheduler.Enqueue("low", 0, 1, Any());
  scheduler.Enqueue("mid", 3, 2, Any());
  ASSERT_TRUE(runner.AwaitStarted(2));
  scheduler.Enqueue("equal", 0, 3, Any());      // no higher than anyone running: waits
  scheduler.Enqueue("gpu-only", 9, 4, Gpu(0));  // fits no device here: preempts no one
  EXPECT_EQ(scheduler.QueuePosition("equal"), 2);
  scheduler.Enqueue("high", 5, 5, Any());
  ASSERT_TRUE(runner.AwaitFinished(1));
  EXPECT_EQ(runner.reason_of("low"), StopReason::kPreempted);
  EXPECT_EQ(runner.by_of("low"), "high");
  ASSERT_TRUE(runner.AwaitStarted(3));
  EXPECT_EQ(runner.started()[2], "high");
  EXPECT_EQ(runner.device_of("high"), runner.device_of("low"));
  // "mid" runs on, and "equal" waits for a free device.
  EXPECT_EQ(scheduler.QueuePosition("equal"), 2);
  runner.Release("mid");
  ASSERT_TRUE(runner.AwaitStarted(4));
  EXPECT_EQ(runner.started()[3], "equal");
  runner.Release("high");
  runner.Release("equal");
  ASSERT_TRUE(runner.AwaitFinished(4));
}

TEST(SchedulerTest, WithoutPreemptionAHigherPriorityJobWaits) {
  FakeRunner runner;
  Scheduler scheduler({{Cpu(0)}, runner.fn()});
  scheduler.Start();
  scheduler.Enqueue("low", 0, 1, Any());
  ASSERT_TRUE(runner.AwaitStarted(1));
  scheduler.Enqueue("high", 5, 2, Any());
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_THAT(runner.started(), ElementsAre("low"));
  runner.Release("low");
  ASSERT_TRUE(runner.AwaitStarted(2));
  runner.Release("high");
  ASSERT_TRUE(runner.AwaitFinished(2));
}

TEST(SchedulerTest, ShutdownStopsRunningJobsAndLeavesTheQueue) {
  FakeRunner runner;
  Scheduler scheduler({{Cpu(0)}, runner.fn()});
  scheduler.Start();
  scheduler.Enqueue("running", 0, 1, Any());
  scheduler.Enqueue("waiting", 0, 2, Any());
  ASSERT_TRUE(runner.AwaitStarted(1));
  scheduler.Shutdown();
  EXPECT_EQ(runner.reason_of("running"), StopReason::kShutdown);
  EXPECT_THAT(runner.started(), ElementsAre("running"));
  EXPECT_EQ(scheduler.QueuePosition("waiting"), 1);
  scheduler.Enqueue("late", 0, 3, Any());  // accepted, never started
  EXPECT_EQ(scheduler.QueuePosition("late"), 2);
  EXPECT_TRUE(scheduler.Devices()[0].job_id.empty());
}

TEST(SchedulerTest, NothingStartsBeforeStartOrWithoutDevices) {
  FakeRunner runner;
  Scheduler none({{}, runner.fn()});
  none.Start();
  none.Enqueue("a", 0, 1, Any());
  EXPECT_EQ(none.QueuePosition("a"), 1);
  Scheduler not_started({{Cpu(0)}, runner.fn()});
  not_started.Enqueue("b", 0, 1, Any());
  // Placing a job on a device happens within Enqueue/Start, so this is not racy.
  EXPECT_EQ(not_started.QueuePosition("b"), 1);
  EXPECT_TRUE(not_started.Devices()[0].job_id.empty());
}

}  // namespace
}  // namespace ftd::scheduler
