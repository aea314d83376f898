#include "server/core/job_manager.h"

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <future>
#include <limits>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include "common/enum_names.h"
#include "common/sha256.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/core/error_details.h"
#include "server/core/file_manager.h"
#include "server/metrics/metrics_observer.h"
#include "storage/database.h"
#include "storage/file_store.h"
#include "tests/testing/fake_job_store.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace ftd::core {
namespace {

using ::ftd::testing::StatusIs;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

// A trainer whose jobs do what their display name says: "fail" fails,
// "throw" throws, "block" runs until released or stopped, anything else
// reports three progress steps and succeeds.
class FakeTrainer final : public training::Trainer {
 public:
  absl::StatusOr<v1::JobResult> Train(training::TrainingContext& context) override {
    const std::string& name = context.spec().display_name();
    {
      std::lock_guard<std::mutex> lock(mu_);
      started_.push_back(context.job_id());
      devices_[context.job_id()] = context.devices();
      cv_.notify_all();
    }
    if (name == "fail") return absl::FailedPreconditionError("train.csv line 3: no label");
    if (name == "shrink" && context.devices().size() > 1) {
      // Efficiency mode's request once released: on one device from here.
      std::unique_lock<std::mutex> lock(mu_);
      while (!released_.count(context.job_id())) cv_.wait_for(lock, std::chrono::milliseconds(2));
      if (!context.ContinueOn(1)) return absl::InternalError("the daemon declined");
      return absl::CancelledError("stopped to continue on fewer devices");
    }
    if (name == "throw") throw std::runtime_error("tensor shapes do not match");
    if (name == "linger") {  // stops only once released after a stop request
      std::unique_lock<std::mutex> lock(mu_);
      while (!context.StopRequested()) cv_.wait_for(lock, std::chrono::milliseconds(2));
      stopped_.push_back(context.job_id());
      cv_.notify_all();
      while (!released_.count(context.job_id())) cv_.wait_for(lock, std::chrono::milliseconds(2));
      return absl::CancelledError("stopped");
    }
    if (name == "block") {
      std::unique_lock<std::mutex> lock(mu_);
      while (!released_.count(context.job_id()) && !context.StopRequested()) {
        cv_.wait_for(lock, std::chrono::milliseconds(2));
      }
      if (context.StopRequested()) return absl::CancelledError("stopped");
    }
    for (int step = 1; step <= 3; ++step) {
      v1::Progress progress;
      progress.set_step(step);
      progress.set_total_steps(3);
      context.ReportProgress(progress);
      training::StepStats stats;
      stats.epoch = 1;
      stats.seconds = 0.2;
      stats.examples = 4;
      stats.frozen_layers = 1;
      stats.total_layers = 2;
      stats.layer_backwards_skipped = 4;
      context.RecordStep(stats);
    }
    v1::JobEvent evaluation;
    evaluation.mutable_evaluation()->set_accuracy(0.9);
    context.Emit(evaluation);
    v1::JobResult result;
    result.set_output_dir(context.output_dir());
    return result;
  }

  void Release(const std::string& id) {
    std::lock_guard<std::mutex> lock(mu_);
    released_.insert(id);
    cv_.notify_all();
  }
  bool AwaitStopped(size_t n) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(10), [&] { return stopped_.size() >= n; });
  }
  bool AwaitStarted(size_t n) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(10), [&] { return started_.size() >= n; });
  }
  std::vector<std::string> started() {
    std::lock_guard<std::mutex> lock(mu_);
    return started_;
  }
  std::vector<std::string> devices(const std::string& id) {
    std::lock_guard<std::mutex> lock(mu_);
    return devices_[id];
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, std::vector<std::string>> devices_;
  std::vector<std::string> started_, stopped_;
  std::set<std::string> released_;
};

// Watches a job and collects its events, pulled on the event hub's thread;
// AwaitClose waits for the end. The subscription goes when the watch closes.
class Recorder final {
 public:
  ~Recorder() {
    std::unique_ptr<EventSubscription> subscription;
    {
      std::lock_guard<std::mutex> lock(mu_);
      subscription = std::move(subscription_);
    }
  }

  absl::Status Watch(JobManager* manager, const std::string& job_id, int64_t after_sequence) {
    absl::StatusOr<std::unique_ptr<EventSubscription>> subscription =
        manager->Watch(job_id, after_sequence, [this] { Pull(); });
    if (!subscription.ok()) return subscription.status();
    {
      std::lock_guard<std::mutex> lock(mu_);
      subscription_ = *std::move(subscription);
    }
    Pull();
    return absl::OkStatus();
  }

  bool AwaitClose() {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(10), [&] { return closed_; });
  }
  bool AwaitEvents(size_t n) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(10), [&] { return events_.size() >= n; });
  }
  std::vector<v1::JobEvent> events() {
    std::lock_guard<std::mutex> lock(mu_);
    return events_;
  }
  absl::Status status() {
    std::lock_guard<std::mutex> lock(mu_);
    return status_;
  }
  // "QUEUED", "RUNNING", "progress", "evaluation", ...
  std::vector<std::string> Kinds() {
    std::vector<std::string> kinds;
    for (const auto& e : events()) {
      if (e.has_state_change()) {
        kinds.push_back(ShortName(e.state_change().to_state()));
      } else if (e.has_progress()) {
        kinds.push_back("progress");
      } else if (e.has_evaluation()) {
        kinds.push_back("evaluation");
      } else {
        kinds.push_back("other");
      }
    }
    return kinds;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  void Pull() {
    std::unique_ptr<EventSubscription> done;  // freed outside mu_
    std::lock_guard<std::mutex> lock(mu_);
    if (subscription_ == nullptr) return;
    while (true) {
      v1::JobEvent event;
      absl::Status status;
      const EventSubscription::Pull pull = subscription_->Next(&event, &status);
      if (pull == EventSubscription::Pull::kWait) break;
      if (pull == EventSubscription::Pull::kEvent) {
        events_.push_back(std::move(event));
      } else {
        closed_ = true;
        status_ = status;
        done = std::move(subscription_);
        break;
      }
    }
    cv_.notify_all();
  }

  std::unique_ptr<EventSubscription> subscription_;
  std::vector<v1::JobEvent> events_;
  bool closed_ = false;
  absl::Status status_;
};

class JobManagerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ftd::testing::WriteModelFolder(dir_.Sub("model"));
    ftd::testing::WriteFile(dir_.Sub("train.csv"), "text,label\nhi,a\nho,b\n");
  }

  void StartManager(int cpu_slots = 1, absl::Duration progress_interval = absl::ZeroDuration(),
                    metrics::Metrics* metrics = nullptr) {
    JobManager::Options options;
    options.store = &store_;
    if (metrics != nullptr) {  // kept while any manager may still use it
      observers_.push_back(std::make_unique<metrics::MetricsObserver>(metrics));
      options.observer = observers_.back().get();
    }
    options.trainer = &trainer_;
    for (int i = 0; i < cpu_slots; ++i) {
      options.devices.push_back({scheduler::Device::Kind::kCpu, i, "cpu"});
    }
    options.data_roots = {dir_.path()};
    options.jobs_dir = dir_.Sub("jobs");
    options.progress_event_interval = progress_interval;
    options.preemption = preemption_;
    options.max_queued_jobs = max_queued_jobs_;
    options.max_queued_jobs_per_tenant = max_queued_jobs_per_tenant_;
    options.max_downloads = max_downloads_;
    options.files = files_;
    options.now = [this] { return now_; };
    ASSERT_OK_AND_ASSIGN(manager_, JobManager::Create(std::move(options)));
    manager_->Start();
  }

  bool preemption_ = false;
  int max_queued_jobs_ = 10000;
  int max_queued_jobs_per_tenant_ = 0;
  int max_downloads_ = 16;
  FileManager* files_ = nullptr;
  // In memory, with writes that can be made to fail (RocksDB's store has its
  // own tests); it outlives each manager, as a database does a restart.
  ftd::testing::FakeJobStore store_;
  std::vector<std::unique_ptr<metrics::MetricsObserver>> observers_;

  v1::JobSpec Spec(const std::string& name) {
    v1::JobSpec spec;
    spec.set_display_name(name);
    spec.set_base_model(dir_.Sub("model"));
    spec.mutable_train_dataset()->set_path(dir_.Sub("train.csv"));
    return spec;
  }

  // Watches the job to its end and returns the final job.
  v1::Job AwaitEnd(const std::string& id, Recorder* recorder) {
    EXPECT_OK(recorder->Watch(manager_.get(), id, 0));
    EXPECT_TRUE(recorder->AwaitClose());
    absl::StatusOr<v1::Job> job = manager_->Get(id);
    EXPECT_OK(job.status());
    return job.ok() ? *job : v1::Job();
  }

  ftd::testing::TempDir dir_;
  FakeTrainer trainer_;
  absl::Time now_ = absl::FromUnixSeconds(1700000000);
  std::unique_ptr<JobManager> manager_;
};

// Efficiency mode: a job on two devices asks to continue on one; it is
// queued again at its place with one device, and the device it left starts
// the job that waited.
TEST_F(JobManagerTest, AJobThatContinuesOnFewerDevicesGivesOneToAQueuedJob) {
  StartManager(/*cpu_slots=*/2);
  v1::JobSpec wide = Spec("shrink");
  wide.set_devices(2);
  ASSERT_OK_AND_ASSIGN(v1::Job a, manager_->Submit(wide));
  ASSERT_TRUE(trainer_.AwaitStarted(1));
  ASSERT_OK_AND_ASSIGN(v1::Job b, manager_->Submit(Spec("block")));
  EXPECT_EQ(b.queue_position(), 1);
  trainer_.Release(a.id());
  ASSERT_TRUE(trainer_.AwaitStarted(3));  // a on two, then a on one and b on one
  EXPECT_THAT(trainer_.devices(b.id()), ::testing::SizeIs(1));
  Recorder recorder;
  v1::Job done = AwaitEnd(a.id(), &recorder);
  EXPECT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(done.running_devices(), 1);
  EXPECT_EQ(done.devices_size(), 1);
  EXPECT_EQ(done.attempts(), 2);
  std::string reason;
  for (const auto& e : recorder.events()) {
    if (e.has_state_change() && e.state_change().from_state() == v1::JOB_STATE_RUNNING &&
        e.state_change().to_state() == v1::JOB_STATE_QUEUED) {
      reason = e.state_change().reason();
    }
  }
  EXPECT_THAT(reason, AllOf(HasSubstr("continues on 1 device"), HasSubstr("efficiency mode")));
  trainer_.Release(b.id());
  Recorder second;
  EXPECT_EQ(AwaitEnd(b.id(), &second).state(), v1::JOB_STATE_SUCCEEDED);
}

// A job on several devices gets them together and its trainer sees them
// all; one asking for more than the daemon has is refused at submit.
TEST_F(JobManagerTest, AJobOnSeveralDevicesRunsOnAllOfThemAtOnce) {
  StartManager(/*cpu_slots=*/2);
  v1::JobSpec spec = Spec("ok");
  spec.set_devices(2);
  ASSERT_OK_AND_ASSIGN(v1::Job job, manager_->Submit(spec));
  EXPECT_EQ(job.spec().devices(), 2);
  Recorder recorder;
  v1::Job done = AwaitEnd(job.id(), &recorder);
  EXPECT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(done.device(), "cpu:0");
  EXPECT_THAT(done.devices(), ElementsAre("cpu:0", "cpu:1"));
  EXPECT_THAT(trainer_.devices(job.id()), ElementsAre("cpu:0", "cpu:1"));
  ASSERT_OK_AND_ASSIGN(v1::Job one, manager_->Submit(Spec("ok")));
  Recorder second;
  EXPECT_EQ(AwaitEnd(one.id(), &second).spec().devices(), 1);  // the default
  EXPECT_THAT(trainer_.devices(one.id()), ElementsAre("cpu:0"));

  v1::JobSpec three = Spec("ok");
  three.set_devices(3);
  EXPECT_THAT(manager_->Submit(three),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("devices: 3"), HasSubstr("2 CPU devices"))));
}

TEST_F(JobManagerTest, AJobRunsToSuccessAndWatchersSeeEveryStep) {
  StartManager();
  ASSERT_OK_AND_ASSIGN(v1::Job job, manager_->Submit(Spec("ok")));
  EXPECT_EQ(job.id(), "job-1");
  EXPECT_EQ(job.spec().hyperparameters().epochs(), 3);  // defaults filled in
  Recorder recorder;
  v1::Job done = AwaitEnd(job.id(), &recorder);
  EXPECT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(done.device(), "cpu:0");
  EXPECT_EQ(done.attempts(), 1);
  EXPECT_EQ(done.result().output_dir(), dir_.Sub("jobs/job-1"));
  ASSERT_EQ(done.result().evaluations_size(), 1);
  EXPECT_TRUE(done.has_end_time());
  EXPECT_OK(recorder.status());
  EXPECT_THAT(recorder.Kinds(), ElementsAre("QUEUED", "RUNNING", "progress", "progress", "progress",
                                            "evaluation", "SUCCEEDED"));
  // Sequence numbers are 1, 2, 3, ... without gaps.
  auto events = recorder.events();
  for (size_t i = 0; i < events.size(); ++i)
    EXPECT_EQ(events[i].sequence(), static_cast<int64_t>(i + 1));
}

TEST_F(JobManagerTest, ProgressEventsAreRateLimitedButTheLastStepAlwaysCounts) {
  // The clock stands still, so only the first and the last report pass.
  StartManager(/*cpu_slots=*/1, absl::Seconds(10));
  ASSERT_OK_AND_ASSIGN(v1::Job job, manager_->Submit(Spec("ok")));
  Recorder recorder;
  AwaitEnd(job.id(), &recorder);
  // Step 1 (first report) and step 3 (the last); step 2 fell inside the interval.
  std::vector<int64_t> steps;
  for (const auto& e : recorder.events()) {
    if (e.has_progress()) steps.push_back(e.progress().step());
  }
  EXPECT_THAT(steps, ElementsAre(1, 3));
}

TEST_F(JobManagerTest, AFailingJobEndsFailedWithItsReasonAndOthersStillRun) {
  StartManager();
  ASSERT_OK_AND_ASSIGN(v1::Job bad, manager_->Submit(Spec("fail")));
  ASSERT_OK_AND_ASSIGN(v1::Job throws, manager_->Submit(Spec("throw")));
  ASSERT_OK_AND_ASSIGN(v1::Job good, manager_->Submit(Spec("ok")));
  Recorder r1, r2, r3;
  v1::Job failed = AwaitEnd(bad.id(), &r1);
  EXPECT_EQ(failed.state(), v1::JOB_STATE_FAILED);
  EXPECT_EQ(failed.error(), "train.csv line 3: no label");
  v1::Job threw = AwaitEnd(throws.id(), &r2);
  EXPECT_EQ(threw.state(), v1::JOB_STATE_FAILED);
  EXPECT_THAT(threw.error(), HasSubstr("tensor shapes do not match"));
  EXPECT_EQ(AwaitEnd(good.id(), &r3).state(), v1::JOB_STATE_SUCCEEDED);
}

TEST_F(JobManagerTest, BadSpecsAreRejectedAndNothingIsStored) {
  StartManager();
  v1::JobSpec spec = Spec("x");
  spec.mutable_hyperparameters()->set_epochs(0);
  EXPECT_THAT(manager_->Submit(spec),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("hyperparameters.epochs")));
  spec = Spec("x");
  spec.mutable_device()->set_kind(v1::DeviceRequest::KIND_CUDA);
  EXPECT_THAT(manager_->Submit(spec),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no CUDA device")));
  ASSERT_OK_AND_ASSIGN(auto list, manager_->List({}));
  EXPECT_EQ(list.jobs_size(), 0);
}

TEST_F(JobManagerTest, ARequestIdMakesSubmitIdempotent) {
  StartManager(/*cpu_slots=*/0);
  v1::JobSpec spec = Spec("x");
  ASSERT_OK_AND_ASSIGN(v1::Job first, manager_->Submit(spec, "client-42"));
  EXPECT_EQ(first.request_id(), "client-42");
  ASSERT_OK_AND_ASSIGN(v1::Job again, manager_->Submit(spec, "client-42"));
  EXPECT_EQ(first.id(), again.id());
  ASSERT_OK_AND_ASSIGN(auto list, manager_->List({}));
  EXPECT_EQ(list.jobs_size(), 1);
  spec.mutable_hyperparameters()->set_epochs(7);
  EXPECT_THAT(manager_->Submit(spec, "client-42"),
              StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("client-42")));
  // Without the key, or with another, the same spec is a new job.
  ASSERT_OK_AND_ASSIGN(v1::Job other, manager_->Submit(spec, "client-43"));
  EXPECT_NE(other.id(), first.id());
  EXPECT_THAT(manager_->Submit(spec, std::string(129, 'r')),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("request_id")));
  EXPECT_THAT(manager_->Submit(spec, "tab\there"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("printable")));
}

TEST_F(JobManagerTest, CancelQueuedRunningAndFinishedJobs) {
  StartManager();
  ASSERT_OK_AND_ASSIGN(v1::Job running, manager_->Submit(Spec("block")));
  ASSERT_TRUE(trainer_.AwaitStarted(1));
  ASSERT_OK_AND_ASSIGN(v1::Job queued, manager_->Submit(Spec("ok")));
  EXPECT_EQ(queued.queue_position(), 1);

  ASSERT_OK_AND_ASSIGN(v1::Job cancelled, manager_->Cancel(queued.id()));
  EXPECT_EQ(cancelled.state(), v1::JOB_STATE_CANCELLED);

  Recorder recorder;
  ASSERT_OK(recorder.Watch(manager_.get(), running.id(), 0));
  ASSERT_OK_AND_ASSIGN(v1::Job cancelling, manager_->Cancel(running.id()));
  EXPECT_EQ(cancelling.state(), v1::JOB_STATE_CANCELLING);
  ASSERT_TRUE(recorder.AwaitClose());
  EXPECT_THAT(recorder.Kinds(), ElementsAre("QUEUED", "RUNNING", "CANCELLING", "CANCELLED"));
  ASSERT_OK_AND_ASSIGN(v1::Job ended, manager_->Get(running.id()));
  EXPECT_EQ(ended.state(), v1::JOB_STATE_CANCELLED);

  EXPECT_THAT(manager_->Cancel(running.id()),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("already ended")));
  EXPECT_THAT(manager_->Cancel("job-99"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("job-99")));
}

TEST_F(JobManagerTest, OnlyEndedJobsAreDeletedWithTheirFolderAndTheirRequestIdFreed) {
  StartManager();
  ASSERT_OK_AND_ASSIGN(v1::Job running, manager_->Submit(Spec("block"), "ticket-1"));
  ASSERT_TRUE(trainer_.AwaitStarted(1));
  ASSERT_OK_AND_ASSIGN(v1::Job queued, manager_->Submit(Spec("ok")));
  // An id with a trailing space is no other way to the running job.
  EXPECT_THAT(manager_->Delete(running.id() + " "),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("no job")));
  for (const v1::Job& job : {running, queued}) {
    absl::Status refused = manager_->Delete(job.id()).status();
    EXPECT_THAT(refused, StatusIs(absl::StatusCode::kFailedPrecondition,
                                  HasSubstr("only an ended job can be deleted")));
    EXPECT_EQ(ReasonOf(refused), "JOB_NOT_ENDED");
  }
  ASSERT_OK(manager_->Get(queued.id()).status());

  trainer_.Release(running.id());
  Recorder recorder;
  ASSERT_EQ(AwaitEnd(running.id(), &recorder).state(), v1::JOB_STATE_SUCCEEDED);
  ftd::testing::WriteFile(dir_.Sub("jobs/job-1/model/weights.bin"), std::string(1000, 'w'));
  ftd::testing::WriteFile(dir_.Sub("jobs/job-1/metrics.json"), "{}");
  std::filesystem::create_symlink(dir_.Sub("train.csv"), dir_.Sub("jobs/job-1/link"));
  ASSERT_OK_AND_ASSIGN(v1::DeleteJobResponse deleted, manager_->Delete(running.id()));
  EXPECT_EQ(deleted.output_bytes_freed(), 1002);  // the link's target is not counted, nor removed
  EXPECT_FALSE(std::filesystem::exists(dir_.Sub("jobs/job-1")));
  EXPECT_TRUE(std::filesystem::exists(dir_.Sub("train.csv")));
  EXPECT_THAT(manager_->Get(running.id()), StatusIs(absl::StatusCode::kNotFound, HasSubstr("job")));
  EXPECT_THAT(manager_->Delete(running.id()),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("job")));
  ASSERT_OK_AND_ASSIGN(std::vector<std::string> marks, store_.DeletedJobs());
  EXPECT_THAT(marks, ::testing::IsEmpty());  // its folder went: no mark left
  ASSERT_OK_AND_ASSIGN(auto list, manager_->List({}));
  ASSERT_EQ(list.jobs_size(), 1);
  EXPECT_EQ(list.jobs(0).id(), queued.id());
  // Its request id names a new job now.
  ASSERT_OK_AND_ASSIGN(v1::Job again, manager_->Submit(Spec("ok"), "ticket-1"));
  EXPECT_NE(again.id(), running.id());
}

TEST_F(JobManagerTest, AFolderADeleteLeftBehindIsRemovedAtTheNextStart) {
  StartManager(/*cpu_slots=*/0);
  ASSERT_OK_AND_ASSIGN(v1::Job kept, manager_->Submit(Spec("ok")));
  ASSERT_OK_AND_ASSIGN(v1::Job gone, manager_->Submit(Spec("ok")));
  ASSERT_OK(manager_->Cancel(gone.id()).status());
  ftd::testing::WriteFile(dir_.Sub("jobs/job-1/checkpoints/a"), "x");  // a stored job's
  ftd::testing::WriteFile(dir_.Sub("jobs/job-2/model/w"), "x");        // deleted, then a crash
  ftd::testing::WriteFile(dir_.Sub("jobs/job-77/model/w"), "x");       // unknown to the store
  ftd::testing::WriteFile(dir_.Sub("jobs/notes/readme"), "x");         // not a job's folder
  manager_.reset();
  // The delete's record step happened; the crash came before its folder went.
  ASSERT_OK(store_.DeleteJob(gone.id()));
  StartManager(/*cpu_slots=*/0);
  EXPECT_TRUE(std::filesystem::exists(dir_.Sub("jobs/job-1/checkpoints/a")));
  EXPECT_FALSE(std::filesystem::exists(dir_.Sub("jobs/job-2")));
  // Without the store's mark nothing is removed: a lost database must not
  // cost the jobs their outputs.
  EXPECT_TRUE(std::filesystem::exists(dir_.Sub("jobs/job-77/model/w")));
  EXPECT_TRUE(std::filesystem::exists(dir_.Sub("jobs/notes/readme")));
  ASSERT_OK_AND_ASSIGN(std::vector<std::string> marks, store_.DeletedJobs());
  EXPECT_THAT(marks, ::testing::IsEmpty());
}

// A job's checkpoints go once its end is durable; a daemon stopped between
// the two leaves them, and the next start deletes them. Those of unfinished
// jobs, and of folders the store does not know, stay.
TEST_F(JobManagerTest, CheckpointsAStopLeftBehindAnEndedJobAreDeletedAtTheNextStart) {
  StartManager();
  ASSERT_OK_AND_ASSIGN(v1::Job ended, manager_->Submit(Spec("ok")));
  Recorder recorder;
  ASSERT_EQ(AwaitEnd(ended.id(), &recorder).state(), v1::JOB_STATE_SUCCEEDED);
  manager_.reset();
  StartManager(/*cpu_slots=*/0);
  ASSERT_OK_AND_ASSIGN(v1::Job queued, manager_->Submit(Spec("ok")));
  manager_.reset();
  ftd::testing::WriteFile(dir_.Sub("jobs/" + ended.id() + "/checkpoints/step-3/w"), "x");
  ftd::testing::WriteFile(dir_.Sub("jobs/" + queued.id() + "/checkpoints/step-1/w"), "x");
  ftd::testing::WriteFile(dir_.Sub("jobs/job-77/checkpoints/step-1/w"), "x");
  StartManager(/*cpu_slots=*/0);
  EXPECT_FALSE(std::filesystem::exists(dir_.Sub("jobs/" + ended.id() + "/checkpoints")));
  EXPECT_TRUE(std::filesystem::exists(dir_.Sub("jobs/" + ended.id())));
  EXPECT_TRUE(std::filesystem::exists(dir_.Sub("jobs/" + queued.id() + "/checkpoints/step-1/w")));
  EXPECT_TRUE(std::filesystem::exists(dir_.Sub("jobs/job-77/checkpoints/step-1/w")));
}

// A job keeps the uploaded files it names from deletion from its submission
// until its end, across a restart; a submission that is refused pins nothing.
TEST_F(JobManagerTest, AJobPinsItsUploadedFilesUntilItEndsAndAcrossARestart) {
  ftd::testing::TempDir storage_dir;
  ASSERT_OK_AND_ASSIGN(
      auto database,
      storage::Database::Open({storage_dir.Sub("db"), {storage::FileStore::kColumnFamily}, {}}));
  ASSERT_OK_AND_ASSIGN(auto file_store,
                       storage::FileStore::Open({storage_dir.Sub("files"), database.get()}));
  auto files = std::make_unique<FileManager>(FileManager::Options{file_store.get()});
  const std::string content = "text,label\nhi,a\nho,b\n";
  auto upload = [&](FileManager* manager) {
    v1::UploadFileRequest::Header header;
    header.set_kind(v1::FILE_KIND_DATASET);
    v1::FileEntry* entry = header.add_entries();
    entry->set_name("train.csv");
    entry->set_size(static_cast<int64_t>(content.size()));
    entry->set_sha256(Sha256::Hex(content));
    auto started = manager->BeginUpload(header);
    EXPECT_OK(started.status());
    EXPECT_OK((*started)->Write(content));
    absl::StatusOr<v1::File> file = (*started)->Finish();
    EXPECT_OK(file.status());
    return file.ok() ? file->id() : std::string();
  };
  const std::string id = upload(files.get());
  files_ = files.get();
  max_queued_jobs_ = 2;
  StartManager(/*cpu_slots=*/0);
  auto uploaded_spec = [&](const std::string& name) {
    v1::JobSpec spec = Spec(name);
    spec.mutable_train_dataset()->clear_path();
    spec.mutable_train_dataset()->set_file_id(id);
    return spec;
  };
  auto users = [&] {
    absl::StatusOr<v1::File> file = files_->Get(id);
    EXPECT_OK(file.status());
    return file.ok() ? std::vector<std::string>(file->in_use_by().begin(), file->in_use_by().end())
                     : std::vector<std::string>();
  };
  ASSERT_OK_AND_ASSIGN(v1::Job first, manager_->Submit(uploaded_spec("a")));
  ASSERT_OK_AND_ASSIGN(v1::Job second, manager_->Submit(uploaded_spec("b")));
  EXPECT_THAT(users(), ElementsAre("job-1", "job-2"));
  EXPECT_EQ(ReasonOf(files_->Delete(id).status()), "FILE_IN_USE");
  // Refused for the full queue: it pins nothing.
  EXPECT_THAT(manager_->Submit(uploaded_spec("c")),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("queue")));
  EXPECT_THAT(users(), ElementsAre("job-1", "job-2"));
  ASSERT_OK(manager_->Cancel(first.id()).status());
  EXPECT_THAT(users(), ElementsAre("job-2"));
  // Refused by the store after the pin was taken: the pin goes too.
  store_.FailWrites(absl::UnavailableError("job store: IO error"));
  EXPECT_THAT(manager_->Submit(uploaded_spec("d")),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("IO error")));
  store_.FailWrites(absl::OkStatus());
  EXPECT_THAT(users(), ElementsAre("job-2"));

  // A restart (a new FileManager too: pins live in memory) pins again.
  manager_.reset();
  files = std::make_unique<FileManager>(FileManager::Options{file_store.get()});
  files_ = files.get();
  StartManager(/*cpu_slots=*/0);
  EXPECT_THAT(users(), ElementsAre("job-2"));
  EXPECT_EQ(ReasonOf(files_->Delete(id).status()), "FILE_IN_USE");
  ASSERT_OK(manager_->Cancel(second.id()).status());
  EXPECT_THAT(users(), ::testing::IsEmpty());
  EXPECT_OK(files_->Delete(id).status());
  manager_.reset();
  files_ = nullptr;
}

// A burst of 200 submissions from one tenant fills only its own share of
// the queue, and another tenant's job still starts next.
TEST_F(JobManagerTest, OneTenantsBurstDoesNotStarveAnother) {
  max_queued_jobs_per_tenant_ = 50;
  StartManager(/*cpu_slots=*/1);
  const Caller alice{"alice", false}, bob{"bob", false};
  ASSERT_OK_AND_ASSIGN(v1::Job running, manager_->Submit(Spec("block"), "", alice));
  ASSERT_TRUE(trainer_.AwaitStarted(1));
  int accepted = 0, refused = 0;
  for (int i = 0; i < 200; ++i) {
    absl::StatusOr<v1::Job> job = manager_->Submit(Spec("block"), "", alice);
    if (job.ok()) {
      ++accepted;
    } else {
      EXPECT_EQ(ReasonOf(job.status()), "TENANT_QUEUE_FULL");
      EXPECT_THAT(job.status().message(), HasSubstr("--max_queued_jobs_per_tenant=50"));
      ++refused;
    }
  }
  EXPECT_EQ(accepted, 50);
  EXPECT_EQ(refused, 150);
  ASSERT_OK_AND_ASSIGN(v1::Job bobs, manager_->Submit(Spec("ok"), "", bob));
  EXPECT_EQ(bobs.tenant(), "bob");
  // His place in line counts his own jobs, not the 50 of hers before it.
  EXPECT_EQ(bobs.queue_position(), 1);
  trainer_.Release(running.id());
  ASSERT_TRUE(trainer_.AwaitStarted(2));
  EXPECT_EQ(trainer_.started()[1], bobs.id());
  // Only Alice's own jobs count against her share.
  ASSERT_OK_AND_ASSIGN(auto list, manager_->List({}, alice));
  for (const v1::Job& job : list.jobs()) EXPECT_EQ(job.tenant(), "alice");
  manager_->Shutdown();
}

TEST_F(JobManagerTest, ALateWatcherGetsTheHistoryThenLiveEventsAndAFinishedJobsWatchEnds) {
  StartManager();
  ASSERT_OK_AND_ASSIGN(v1::Job job, manager_->Submit(Spec("block")));
  ASSERT_TRUE(trainer_.AwaitStarted(1));
  Recorder late;
  ASSERT_OK(late.Watch(manager_.get(), job.id(), 0));
  ASSERT_TRUE(late.AwaitEvents(2));
  EXPECT_THAT(late.Kinds(), ElementsAre("QUEUED", "RUNNING"));  // the history
  trainer_.Release(job.id());
  ASSERT_TRUE(late.AwaitClose());
  EXPECT_EQ(late.Kinds().back(), "SUCCEEDED");

  Recorder after_end;
  ASSERT_OK(after_end.Watch(manager_.get(), job.id(), 0));
  ASSERT_TRUE(after_end.AwaitClose());
  EXPECT_EQ(after_end.Kinds(), late.Kinds());

  Recorder tail;
  ASSERT_OK(tail.Watch(manager_.get(), job.id(), 5));
  ASSERT_TRUE(tail.AwaitClose());
  ASSERT_EQ(tail.events().size(), late.events().size() - 5);
  EXPECT_EQ(tail.events()[0].sequence(), 6);

  // After the last event: nothing to replay, the watch of an ended job ends.
  Recorder at_end;
  ASSERT_OK(at_end.Watch(manager_.get(), job.id(), late.events().back().sequence()));
  ASSERT_TRUE(at_end.AwaitClose());
  EXPECT_TRUE(at_end.events().empty());
  // Past it (up to int64's end, where the watch's next number overflowed
  // and its read of the store went round for good): refused.
  for (int64_t past : {late.events().back().sequence() + 1, std::numeric_limits<int64_t>::max()}) {
    Recorder beyond;
    EXPECT_THAT(beyond.Watch(manager_.get(), job.id(), past),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("after_sequence")));
  }

  Recorder none;
  EXPECT_THAT(none.Watch(manager_.get(), "job-404", 0),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("job-404")));
}

// Each download holds a place while it streams (it hashed its files and
// holds them open): past max_downloads the next is refused with the limit,
// and a place comes back when a reader goes.
TEST_F(JobManagerTest, DownloadsStreamingAtOnceAreLimited) {
  max_downloads_ = 2;
  StartManager();
  ASSERT_OK_AND_ASSIGN(v1::Job job, manager_->Submit(Spec("ok")));
  Recorder recorder;
  ASSERT_EQ(AwaitEnd(job.id(), &recorder).state(), v1::JOB_STATE_SUCCEEDED);
  ftd::testing::WriteFile(dir_.Sub("jobs/" + job.id() + "/model/config.json"), "{}");
  ASSERT_OK_AND_ASSIGN(auto first, manager_->OpenOutput(job.id(), ""));
  ASSERT_OK_AND_ASSIGN(auto second, manager_->OpenOutput(job.id(), "model"));
  absl::StatusOr<std::unique_ptr<OutputReader>> third = manager_->OpenOutput(job.id(), "");
  EXPECT_THAT(third, StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("limit is 2")));
  EXPECT_EQ(ReasonOf(third.status()), "TOO_MANY_DOWNLOADS");
  // A refused or failed open gives its place back.
  EXPECT_THAT(manager_->OpenOutput(job.id(), "metrics"),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("limit is 2")));
  first.reset();
  EXPECT_THAT(manager_->OpenOutput(job.id(), "metrics"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("no metrics output")));
  ASSERT_OK_AND_ASSIGN(auto again, manager_->OpenOutput(job.id(), ""));
  EXPECT_EQ(again->entries().size(), 1u);
}

TEST_F(JobManagerTest, RestartRequeuesRunningJobsAndKeepsTheQueueOrder) {
  StartManager();
  ASSERT_OK_AND_ASSIGN(v1::Job running, manager_->Submit(Spec("block")));
  ASSERT_TRUE(trainer_.AwaitStarted(1));
  ASSERT_OK_AND_ASSIGN(v1::Job second, manager_->Submit(Spec("block")));
  v1::JobSpec urgent = Spec("block");
  urgent.set_priority(10);
  ASSERT_OK_AND_ASSIGN(v1::Job third, manager_->Submit(urgent));
  // A graceful stop: the running job is asked to stop and queued again.
  manager_->Shutdown();
  ASSERT_OK_AND_ASSIGN(v1::Job stopped, store_.GetJob(running.id()));
  EXPECT_EQ(stopped.state(), v1::JOB_STATE_QUEUED);

  StartManager(/*cpu_slots=*/0);
  ASSERT_OK_AND_ASSIGN(v1::Job a, manager_->Get(running.id()));
  ASSERT_OK_AND_ASSIGN(v1::Job b, manager_->Get(second.id()));
  ASSERT_OK_AND_ASSIGN(v1::Job c, manager_->Get(third.id()));
  EXPECT_EQ(c.queue_position(), 1);  // priority first
  EXPECT_EQ(a.queue_position(), 2);  // then submission order
  EXPECT_EQ(b.queue_position(), 3);
  EXPECT_EQ(a.attempts(), 1);
}

TEST_F(JobManagerTest, AJobLeftRunningByACrashIsQueuedAgainWithAnEvent) {
  // What a kill -9 leaves behind: a job stored as RUNNING.
  v1::Job crashed;
  crashed.set_state(v1::JOB_STATE_RUNNING);
  crashed.set_device("cpu:0");
  *crashed.mutable_spec() = Spec("ok");
  v1::JobEvent first;
  first.mutable_state_change()->set_to_state(v1::JOB_STATE_RUNNING);
  ASSERT_OK(store_.CreateJob(crashed, first));
  StartManager(/*cpu_slots=*/0);
  ASSERT_OK_AND_ASSIGN(v1::Job job, manager_->Get("job-1"));
  EXPECT_EQ(job.state(), v1::JOB_STATE_QUEUED);
  EXPECT_EQ(job.queue_position(), 1);
  ASSERT_OK_AND_ASSIGN(auto events, manager_->ListEvents([] {
    v1::ListJobEventsRequest r;
    r.set_job_id("job-1");
    return r;
  }()));
  ASSERT_EQ(events.events_size(), 2);
  EXPECT_THAT(events.events(1).state_change().reason(), HasSubstr("queued again"));
}

// A job run again after a crash shows only what its new attempt did, not the
// earlier attempt's evaluations and freezes (a resume restores those from
// its checkpoint instead).
TEST_F(JobManagerTest, ARetriedJobForgetsTheEarlierAttemptsHistory) {
  v1::Job crashed;
  crashed.set_state(v1::JOB_STATE_RUNNING);
  *crashed.mutable_spec() = Spec("ok");
  crashed.mutable_result()->add_evaluations()->set_accuracy(0.1);
  crashed.mutable_result()->add_evaluations()->set_accuracy(0.2);
  crashed.mutable_freeze()->set_frozen_layers(3);
  crashed.mutable_cache()->set_enabled(true);
  v1::JobEvent first;
  first.mutable_state_change()->set_to_state(v1::JOB_STATE_RUNNING);
  ASSERT_OK(store_.CreateJob(crashed, first));
  StartManager();
  Recorder recorder;
  ASSERT_OK(recorder.Watch(manager_.get(), "job-1", 0));
  ASSERT_TRUE(recorder.AwaitClose());
  ASSERT_OK_AND_ASSIGN(v1::Job job, manager_->Get("job-1"));
  EXPECT_EQ(job.state(), v1::JOB_STATE_SUCCEEDED);
  ASSERT_EQ(job.result().evaluations_size(), 1);
  EXPECT_EQ(job.result().evaluations(0).accuracy(), 0.9);
  EXPECT_FALSE(job.has_freeze());
  EXPECT_FALSE(job.cache().enabled());
}

// With preemption on, a job of higher priority that finds no free device
// sends the running lower-priority job back to the queue (it checkpoints and
// resumes later); events say who preempted whom.
TEST_F(JobManagerTest, APreemptedJobGoesBackToTheQueueAndRunsAgainAfterwards) {
  preemption_ = true;
  StartManager();
  ASSERT_OK_AND_ASSIGN(v1::Job low, manager_->Submit(Spec("block")));
  ASSERT_TRUE(trainer_.AwaitStarted(1));
  Recorder recorder;
  ASSERT_OK(recorder.Watch(manager_.get(), low.id(), 0));
  v1::JobSpec urgent = Spec("ok");
  urgent.set_priority(5);
  ASSERT_OK_AND_ASSIGN(v1::Job high, manager_->Submit(urgent));
  ASSERT_TRUE(trainer_.AwaitStarted(3));  // low, high, low again
  ASSERT_OK_AND_ASSIGN(v1::Job done, manager_->Get(high.id()));
  EXPECT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED);
  trainer_.Release(low.id());
  ASSERT_TRUE(recorder.AwaitClose());
  EXPECT_THAT(recorder.Kinds(),
              ::testing::IsSupersetOf({"QUEUED", "RUNNING", "QUEUED", "RUNNING", "SUCCEEDED"}));
  std::string reason;
  for (const auto& e : recorder.events()) {
    if (e.has_state_change() && e.state_change().from_state() == v1::JOB_STATE_RUNNING &&
        e.state_change().to_state() == v1::JOB_STATE_QUEUED) {
      reason = e.state_change().reason();
    }
  }
  EXPECT_THAT(reason, AllOf(HasSubstr("preempted by " + high.id()), HasSubstr("priority 5 over 0"),
                            HasSubstr("resumes from its checkpoint")));
  ASSERT_OK_AND_ASSIGN(v1::Job after, manager_->Get(low.id()));
  EXPECT_EQ(after.state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(after.attempts(), 2);
}

// A cancel that comes while the daemon shuts down wins over the requeue.
TEST_F(JobManagerTest, ACancelDuringShutdownIsNotLost) {
  StartManager();
  ASSERT_OK_AND_ASSIGN(v1::Job job, manager_->Submit(Spec("linger")));
  ASSERT_TRUE(trainer_.AwaitStarted(1));
  std::thread shutdown([&] { manager_->Shutdown(); });
  ASSERT_TRUE(trainer_.AwaitStopped(1));  // asked to stop for the shutdown
  ASSERT_OK_AND_ASSIGN(v1::Job cancelling, manager_->Cancel(job.id()));
  EXPECT_EQ(cancelling.state(), v1::JOB_STATE_CANCELLING);
  trainer_.Release(job.id());
  shutdown.join();
  ASSERT_OK_AND_ASSIGN(v1::Job stored, store_.GetJob(job.id()));
  EXPECT_EQ(stored.state(), v1::JOB_STATE_CANCELLED);
}

// A job that crashes the daemon (out of memory, say) would be queued again at
// every restart and take the daemon down each time: after three stops in a
// row without a new checkpoint it fails with the reason instead.
TEST_F(JobManagerTest, AJobThatKeepsCrashingTheDaemonFailsWithTheReason) {
  v1::Job crashed;
  crashed.set_state(v1::JOB_STATE_RUNNING);
  *crashed.mutable_spec() = Spec("ok");
  crashed.mutable_spec()->mutable_hyperparameters()->set_batch_size(4096);
  v1::JobEvent first;
  first.mutable_state_change()->set_to_state(v1::JOB_STATE_RUNNING);
  ASSERT_OK(store_.CreateJob(crashed, first));
  // Each restart finds it RUNNING again, as a crash leaves it.
  auto crash = [&](std::optional<int64_t> new_checkpoint) {
    ASSERT_OK_AND_ASSIGN(v1::Job job, store_.GetJob("job-1"));
    job.set_state(v1::JOB_STATE_RUNNING);
    if (new_checkpoint.has_value()) job.add_checkpoints()->set_step(*new_checkpoint);
    ASSERT_OK(store_.UpdateJob(job));
    StartManager(/*cpu_slots=*/0);
  };
  StartManager(/*cpu_slots=*/0);  // 1st stop
  crash(std::nullopt);            // 2nd
  ASSERT_OK_AND_ASSIGN(v1::Job job, manager_->Get("job-1"));
  EXPECT_EQ(job.state(), v1::JOB_STATE_QUEUED);
  EXPECT_EQ(job.crashes(), 2);
  // A new checkpoint in between: it made progress, the count starts over.
  crash(40);
  ASSERT_OK_AND_ASSIGN(job, manager_->Get("job-1"));
  EXPECT_EQ(job.crashes(), 1);
  EXPECT_EQ(job.crash_checkpoint_step(), 40);
  crash(std::nullopt);
  crash(std::nullopt);  // the 3rd in a row at step 40
  ASSERT_OK_AND_ASSIGN(job, manager_->Get("job-1"));
  EXPECT_EQ(job.state(), v1::JOB_STATE_FAILED);
  EXPECT_THAT(job.error(),
              AllOf(HasSubstr("3 times in a row"), HasSubstr("since its checkpoint of step 40"),
                    HasSubstr("batch_size 4096")));
}

// A listing scans the store without the manager's lock, which every
// training step, get, cancel and state change takes: a slow scan (a large
// store) holds none of them up. Before the fix the scan ran under the lock,
// and the get below waited for it.
TEST_F(JobManagerTest, ASlowListingHoldsUpNoJobAndNoOtherCall) {
  StartManager();
  ASSERT_OK_AND_ASSIGN(v1::Job job, manager_->Submit(Spec("block")));
  ASSERT_TRUE(trainer_.AwaitStarted(1));
  store_.HoldListings(true);
  std::thread lister([&] { EXPECT_OK(manager_->List({}).status()); });
  while (store_.ListingsUnderWay() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  auto get = std::async(std::launch::async, [&] { return manager_->Get(job.id()); });
  const bool answered = get.wait_for(std::chrono::seconds(5)) == std::future_status::ready;
  EXPECT_TRUE(answered) << "a get waited for a listing";
  auto submit = std::async(std::launch::async, [&] { return manager_->Submit(Spec("ok")); });
  EXPECT_EQ(submit.wait_for(std::chrono::seconds(5)), std::future_status::ready)
      << "a submission waited for a listing";
  store_.HoldListings(false);
  lister.join();
  trainer_.Release(job.id());
  Recorder recorder;
  EXPECT_EQ(AwaitEnd(job.id(), &recorder).state(), v1::JOB_STATE_SUCCEEDED);
  if (answered) {
    EXPECT_OK(get.get().status());
  }
}

TEST_F(JobManagerTest, ListFiltersAndPagesAndShowsLiveQueuePositions) {
  StartManager(/*cpu_slots=*/0);
  for (int i = 0; i < 5; ++i) {
    v1::JobSpec spec = Spec("job" + std::to_string(i));
    if (i % 2 == 0) (*spec.mutable_labels())["team"] = "nlp";
    ASSERT_OK(manager_->Submit(spec).status());
  }
  ASSERT_OK(manager_->Cancel("job-1").status());
  v1::ListJobsRequest request;
  request.set_page_size(2);
  request.add_states(v1::JOB_STATE_QUEUED);
  // Newest first by default.
  ASSERT_OK_AND_ASSIGN(auto newest, manager_->List(request));
  ASSERT_EQ(newest.jobs_size(), 2);
  EXPECT_EQ(newest.jobs(0).id(), "job-5");
  EXPECT_EQ(newest.jobs(0).queue_position(), 4);
  request.set_order_by("create_time");
  ASSERT_OK_AND_ASSIGN(auto page, manager_->List(request));
  ASSERT_EQ(page.jobs_size(), 2);
  EXPECT_EQ(page.jobs(0).id(), "job-2");
  EXPECT_EQ(page.jobs(0).queue_position(), 1);
  EXPECT_EQ(page.jobs(1).queue_position(), 2);
  request.set_page_token(page.next_page_token());
  ASSERT_OK_AND_ASSIGN(auto rest, manager_->List(request));
  ASSERT_EQ(rest.jobs_size(), 2);
  EXPECT_EQ(rest.jobs(1).id(), "job-5");
  EXPECT_TRUE(rest.next_page_token().empty());

  v1::ListJobsRequest by_label;
  (*by_label.mutable_labels())["team"] = "nlp";
  ASSERT_OK_AND_ASSIGN(auto labelled, manager_->List(by_label));
  ASSERT_EQ(labelled.jobs_size(), 3);
  EXPECT_EQ(labelled.jobs(2).state(), v1::JOB_STATE_CANCELLED);

  by_label.set_order_by("size");
  EXPECT_THAT(manager_->List(by_label),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("order_by")));

  request.set_page_size(5000);
  EXPECT_THAT(manager_->List(request),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("page_size")));

  // The filter each scanned job is matched against is bounded: a state
  // named a million times is one state, labels are at most 64.
  v1::ListJobsRequest many;
  for (int i = 0; i < 1000000; ++i) many.add_states(v1::JOB_STATE_CANCELLED);
  ASSERT_OK_AND_ASSIGN(auto cancelled, manager_->List(many));
  ASSERT_EQ(cancelled.jobs_size(), 1);
  EXPECT_EQ(cancelled.jobs(0).id(), "job-1");
  v1::ListJobsRequest labels;
  for (int i = 0; i < 65; ++i) (*labels.mutable_labels())["k" + std::to_string(i)] = "v";
  EXPECT_THAT(manager_->List(labels),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("labels: at most 64")));
}

// A write the store refuses is an error to the caller, and nothing changes:
// no job is acknowledged that was not stored, no cancel that was not.
TEST_F(JobManagerTest, AWriteTheStoreRefusesIsAnErrorAndChangesNothing) {
  StartManager();
  store_.FailWrites(absl::ResourceExhaustedError("job store: No space left on device"));
  EXPECT_THAT(manager_->Submit(Spec("ok")),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("No space left")));
  ASSERT_OK_AND_ASSIGN(auto list, manager_->List({}));
  EXPECT_EQ(list.jobs_size(), 0);

  store_.FailWrites(absl::OkStatus());
  ASSERT_OK_AND_ASSIGN(v1::Job job, manager_->Submit(Spec("block")));
  ASSERT_TRUE(trainer_.AwaitStarted(1));
  store_.FailWrites(absl::UnavailableError("job store: IO error"));
  EXPECT_THAT(manager_->Cancel(job.id()),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("IO error")));
  ASSERT_OK_AND_ASSIGN(v1::Job still, manager_->Get(job.id()));
  EXPECT_EQ(still.state(), v1::JOB_STATE_RUNNING);  // not stopped: the cancel was not recorded
  ASSERT_OK_AND_ASSIGN(v1::Job stored, store_.GetJob(job.id()));
  EXPECT_EQ(stored.state(), v1::JOB_STATE_RUNNING);

  store_.FailWrites(absl::OkStatus());
  ASSERT_OK_AND_ASSIGN(v1::Job cancelling, manager_->Cancel(job.id()));
  EXPECT_EQ(cancelling.state(), v1::JOB_STATE_CANCELLING);
  Recorder recorder;
  EXPECT_EQ(AwaitEnd(job.id(), &recorder).state(), v1::JOB_STATE_CANCELLED);
}

// A job whose outcome cannot be stored keeps its device and tries again
// until the write lands: its result is never only in memory.
TEST_F(JobManagerTest, AnOutcomeTheStoreRefusesIsRecordedOnceTheStoreRecovers) {
  StartManager();
  ASSERT_OK_AND_ASSIGN(v1::Job job, manager_->Submit(Spec("block")));
  ASSERT_TRUE(trainer_.AwaitStarted(1));
  store_.FailWrites(absl::UnavailableError("job store: IO error"));
  trainer_.Release(job.id());
  for (int i = 0; i < 500 && store_.failed_writes() < 2; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_OK_AND_ASSIGN(v1::Job running, manager_->Get(job.id()));
  EXPECT_EQ(running.state(), v1::JOB_STATE_RUNNING);
  store_.FailWrites(absl::OkStatus());
  Recorder recorder;
  v1::Job done = AwaitEnd(job.id(), &recorder);
  EXPECT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED);
  ASSERT_OK_AND_ASSIGN(v1::Job stored, store_.GetJob(job.id()));
  EXPECT_EQ(stored.state(), v1::JOB_STATE_SUCCEEDED);
}

// One damaged record does not keep the daemon from starting: it is left
// alone with an event saying why (once), and the other jobs are served.
TEST_F(JobManagerTest, AnUnreadableJobRecordIsQuarantinedAndTheRestServed) {
  StartManager(/*cpu_slots=*/0);
  for (const char* name : {"a", "b", "c"}) ASSERT_OK(manager_->Submit(Spec(name)).status());
  manager_.reset();
  store_.CorruptJob("job-2");
  for (int restart = 0; restart < 2; ++restart) {
    StartManager(/*cpu_slots=*/0);
    ASSERT_OK_AND_ASSIGN(v1::Job a, manager_->Get("job-1"));
    ASSERT_OK_AND_ASSIGN(v1::Job c, manager_->Get("job-3"));
    EXPECT_EQ(a.queue_position(), 1);
    EXPECT_EQ(c.queue_position(), 2);
    EXPECT_THAT(manager_->Get("job-2"), StatusIs(absl::StatusCode::kDataLoss, HasSubstr("job-2")));
    manager_.reset();
  }
  ASSERT_OK_AND_ASSIGN(storage::EventPage events, store_.ListEvents("job-2", 0, 10, ""));
  ASSERT_EQ(events.events.size(), 2u);  // submitted; the quarantine, said once
  EXPECT_THAT(events.events[1].log().message(), HasSubstr("cannot be read"));
}

// A tenant at its own limit is told of that one, whether the daemon's
// queue is full too or not; the daemon's full queue tells no count.
TEST_F(JobManagerTest, ATenantAtItsOwnLimitLearnsNothingOfTheDaemonsQueue) {
  max_queued_jobs_ = 2;
  max_queued_jobs_per_tenant_ = 1;
  StartManager(/*cpu_slots=*/0);
  const Caller alice{"alice", false}, bob{"bob", false}, carol{"carol", false};
  ASSERT_OK(manager_->Submit(Spec("a"), "", alice).status());
  ASSERT_OK(manager_->Submit(Spec("b"), "", bob).status());
  EXPECT_EQ(ReasonOf(manager_->Submit(Spec("a2"), "", alice).status()), "TENANT_QUEUE_FULL");
  absl::Status full = manager_->Submit(Spec("c"), "", carol).status();
  EXPECT_EQ(ReasonOf(full), "QUEUE_FULL");
  EXPECT_THAT(full.message(), Not(HasSubstr("2 jobs")));
}

TEST_F(JobManagerTest, TheQueueIsLimitedAndARetriedSubmissionStillAnswers) {
  max_queued_jobs_ = 2;
  StartManager(/*cpu_slots=*/0);
  v1::JobSpec first = Spec("a");
  ASSERT_OK(manager_->Submit(first, "r-1").status());
  ASSERT_OK(manager_->Submit(Spec("b")).status());
  EXPECT_THAT(manager_->Submit(Spec("c")),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       AllOf(HasSubstr("the queue is full"), HasSubstr("--max_queued_jobs=2"))));
  EXPECT_EQ(ReasonOf(manager_->Submit(Spec("c")).status()), "QUEUE_FULL");
  // A retry of an acknowledged submission gets its job, queue full or not.
  ASSERT_OK_AND_ASSIGN(v1::Job again, manager_->Submit(first, "r-1"));
  EXPECT_EQ(again.id(), "job-1");
  ASSERT_OK(manager_->Cancel("job-2").status());
  EXPECT_OK(manager_->Submit(Spec("c")).status());
}

TEST_F(JobManagerTest, ShutdownClosesWatchesAndRefusesSubmissions) {
  StartManager();
  ASSERT_OK_AND_ASSIGN(v1::Job job, manager_->Submit(Spec("block")));
  ASSERT_TRUE(trainer_.AwaitStarted(1));
  Recorder recorder;
  ASSERT_OK(recorder.Watch(manager_.get(), job.id(), 0));
  manager_->Shutdown();
  ASSERT_TRUE(recorder.AwaitClose());
  EXPECT_THAT(recorder.status(),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("shutting down")));
  EXPECT_THAT(recorder.Kinds(), ElementsAre("QUEUED", "RUNNING", "QUEUED"));
  EXPECT_THAT(manager_->Submit(Spec("ok")),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("shutting down")));
}

}  // namespace
}  // namespace ftd::core

namespace ftd::core {
namespace {

TEST_F(JobManagerTest, MetricsFollowJobsFromSubmissionToTheirOutcomeAndAcrossARestart) {
  auto make_metrics = [this] {
    return std::make_unique<metrics::Metrics>(
        metrics::Metrics::Options{"test", absl::Minutes(5), [this] { return now_; }});
  };
  std::unique_ptr<metrics::Metrics> m = make_metrics();
  StartManager(/*cpu_slots=*/1, absl::ZeroDuration(), m.get());
  EXPECT_THAT(m->Serialize(), HasSubstr("ftd_device_busy{device=\"cpu:0\"} 0\n"));
  ASSERT_OK_AND_ASSIGN(v1::Job bad, manager_->Submit(Spec("fail")));
  ASSERT_OK_AND_ASSIGN(v1::Job good, manager_->Submit(Spec("ok")));
  Recorder r1, r2;
  AwaitEnd(bad.id(), &r1);
  AwaitEnd(good.id(), &r2);

  std::string text = m->Serialize();
  EXPECT_THAT(text, HasSubstr("ftd_jobs_submitted_total 2\n"));
  EXPECT_THAT(text, HasSubstr("ftd_jobs{state=\"succeeded\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("ftd_jobs{state=\"failed\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("ftd_jobs{state=\"queued\"} 0\n"));
  EXPECT_THAT(text, HasSubstr("ftd_queue_length 0\n"));
  EXPECT_THAT(text, HasSubstr("ftd_jobs_finished_total{outcome=\"succeeded\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("ftd_jobs_finished_total{outcome=\"failed\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("ftd_queue_wait_seconds_count 2\n"));
  EXPECT_THAT(text, HasSubstr("ftd_device_busy{device=\"cpu:0\"} 0\n"));
  // The successful job's series: three steps of four examples, one layer
  // of two frozen; its evaluation.
  // The model label: the folder's name, with its parent's for a folder named "model".
  const std::string model = std::filesystem::path(dir_.path()).filename().string() + "/model";
  const std::string labels = "{device=\"cpu:0\",job_id=\"job-2\",model=\"" + model + "\"}";
  EXPECT_THAT(text, HasSubstr("ftd_job_samples_trained_total" + labels + " 12\n"));
  EXPECT_THAT(text, HasSubstr("ftd_job_layer_backward_passes_skipped_total" + labels + " 12\n"));
  EXPECT_THAT(text, HasSubstr("ftd_job_step_duration_seconds_count" + labels + " 3\n"));
  EXPECT_THAT(text, HasSubstr("ftd_job_frozen_layers" + labels + " 1\n"));
  EXPECT_THAT(text, HasSubstr("ftd_job_validation_accuracy_ratio" + labels + " 0.9"));

  // After the retention period a finished job's series are gone; the
  // daemon-wide ones stay.
  now_ += absl::Minutes(5) + absl::Seconds(1);
  text = m->Serialize();
  EXPECT_THAT(text, Not(HasSubstr("job_id=\"job-2\"")));
  EXPECT_THAT(text, HasSubstr("ftd_jobs_submitted_total 2\n"));

  // A restarted daemon counts the stored jobs by state.
  manager_.reset();
  m = make_metrics();
  StartManager(/*cpu_slots=*/1, absl::ZeroDuration(), m.get());
  text = m->Serialize();
  EXPECT_THAT(text, HasSubstr("ftd_jobs{state=\"succeeded\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("ftd_jobs{state=\"failed\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("ftd_jobs_submitted_total 0\n"));
  manager_.reset();  // before the metrics it writes
}

}  // namespace
}  // namespace ftd::core
