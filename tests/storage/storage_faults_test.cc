// The job store and the activation cache on a real RocksDB whose file system
// fails writes and syncs on demand (a full disk, an I/O error): a write that
// fails is an error to the caller, never a success that is later lost; reads
// go on; writes succeed again once the fault clears; and after a reopen the
// database holds exactly what was acknowledged.
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "storage/activation_store.h"
#include "storage/database.h"
#include "storage/rocksdb_job_store.h"
#include "tests/testing/faulty_file_system.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace ftd::storage {
namespace {

using ::ftd::testing::FaultyFileSystem;
using ::ftd::testing::IsOkAndHolds;
using ::ftd::testing::StatusIs;
using ::testing::HasSubstr;

v1::Job NewJob(const std::string& name) {
  v1::Job job;
  job.mutable_spec()->set_display_name(name);
  job.set_state(v1::JOB_STATE_QUEUED);
  return job;
}

v1::JobEvent Submitted() {
  v1::JobEvent event;
  event.mutable_state_change()->set_to_state(v1::JOB_STATE_QUEUED);
  return event;
}

class StorageFaultsTest : public ::testing::Test {
 protected:
  void SetUp() override { Open(); }

  void Open() {
    cache_.reset();
    jobs_.reset();
    database_.reset();
    Database::Options db;
    db.path = dir_.Sub("db");
    db.column_families = {"jobs", ActivationStore::kColumnFamily};
    ActivationStore::Options cache;
    cache.tuning.write_buffer_bytes = 1 << 20;
    db.column_family_options[ActivationStore::kColumnFamily] =
        ActivationStore::ColumnFamilyOptions(cache.tuning);
    db.env = faults_.env();
    ASSERT_OK_AND_ASSIGN(database_, Database::Open(db));
    ASSERT_OK_AND_ASSIGN(jobs_, RocksDbJobStore::Create(database_.get()));
    ASSERT_OK_AND_ASSIGN(cache_, ActivationStore::Open(database_.get(), cache));
  }

  absl::StatusOr<v1::Job> CreateJob(const std::string& name) {
    return jobs_->CreateJob(NewJob(name), Submitted());
  }

  // What a client does once the fault has cleared: `write` again until it
  // is acknowledged (the database reopens in the background within a few
  // seconds); every refusal meanwhile must be UNAVAILABLE or
  // RESOURCE_EXHAUSTED.
  template <typename Write>
  absl::Status Retry(Write write) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (true) {
      absl::Status status = write();
      if (status.ok() || std::chrono::steady_clock::now() > deadline) return status;
      if (!absl::IsUnavailable(status) && !absl::IsResourceExhausted(status)) return status;
      ++retries_;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  int retries_ = 0;

  FaultyFileSystem faults_;  // outlives the database
  ftd::testing::TempDir dir_;
  std::unique_ptr<Database> database_;
  std::unique_ptr<RocksDbJobStore> jobs_;
  std::unique_ptr<ActivationStore> cache_;
};

TEST_F(StorageFaultsTest, AFullDiskRefusesSubmissionsServesReadsAndRecovers) {
  ASSERT_OK_AND_ASSIGN(v1::Job first, CreateJob("first"));
  faults_.Set(FaultyFileSystem::Fault::kNoSpace);
  for (int i = 0; i < 3; ++i) {
    EXPECT_THAT(CreateJob("refused").status(),
                StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("job store")));
  }
  v1::Job running = first;
  running.set_state(v1::JOB_STATE_RUNNING);
  v1::JobEvent started;
  started.set_job_id(first.id());
  started.mutable_state_change()->set_from_state(v1::JOB_STATE_QUEUED);
  started.mutable_state_change()->set_to_state(v1::JOB_STATE_RUNNING);
  EXPECT_THAT(jobs_->AppendEvent(started, &running).status(),
              StatusIs(absl::StatusCode::kResourceExhausted, ::testing::_));
  // Reads go on, and show nothing of what was refused.
  EXPECT_THAT(jobs_->GetJob(first.id()),
              IsOkAndHolds(::testing::Property(&v1::Job::state, v1::JOB_STATE_QUEUED)));
  ASSERT_OK_AND_ASSIGN(JobPage page, jobs_->ListJobs({}, 10, ""));
  EXPECT_EQ(page.jobs.size(), 1u);
  EXPECT_GT(faults_.refused(), 0);

  faults_.Set(FaultyFileSystem::Fault::kNone);
  ASSERT_OK(Retry([&] { return CreateJob("second").status(); }));
  ASSERT_OK(Retry([&] { return jobs_->AppendEvent(started, &running).status(); }));

  // After a reopen: the acknowledged jobs and event, nothing else.
  Open();
  ASSERT_OK_AND_ASSIGN(page, jobs_->ListJobs({}, 10, ""));
  std::vector<std::string> names;
  for (const v1::Job& job : page.jobs) names.push_back(job.spec().display_name());
  EXPECT_THAT(names, ::testing::ElementsAre("first", "second"));
  EXPECT_THAT(jobs_->GetJob(first.id()),
              IsOkAndHolds(::testing::Property(&v1::Job::state, v1::JOB_STATE_RUNNING)));
  ASSERT_OK_AND_ASSIGN(EventPage events, jobs_->ListEvents(first.id(), 0, 10, ""));
  EXPECT_EQ(events.events.size(), 2u);
}

TEST_F(StorageFaultsTest, AnIoErrorIsUnavailableAndLosesNothingAcknowledged) {
  ASSERT_OK_AND_ASSIGN(v1::Job first, CreateJob("first"));
  faults_.Set(FaultyFileSystem::Fault::kIoError);
  EXPECT_THAT(CreateJob("refused").status(),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("job store")));
  EXPECT_THAT(jobs_->GetJob(first.id()).status(), StatusIs(absl::StatusCode::kOk, ::testing::_));
  // Reads go on while it waits for the fault to clear.
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  EXPECT_THAT(jobs_->GetJob(first.id()).status(), StatusIs(absl::StatusCode::kOk, ::testing::_));
  EXPECT_TRUE(database_->read_only());
  faults_.Set(FaultyFileSystem::Fault::kNone);
  ASSERT_OK(Retry([&] { return CreateJob("second").status(); }));
  EXPECT_FALSE(database_->read_only());
  Open();
  ASSERT_OK_AND_ASSIGN(JobPage page, jobs_->ListJobs({}, 10, ""));
  ASSERT_EQ(page.jobs.size(), 2u);
  EXPECT_EQ(page.jobs[1].spec().display_name(), "second");
}

TEST_F(StorageFaultsTest, TheCacheRefusesWritesOnAFullDiskServesWhatItHasAndRecovers) {
  const SegmentKey key{std::string(16, 'n'), std::string(32, 'd'), 2};
  v1::CacheSegment info;
  info.set_dtype(v1::ActivationCache::DTYPE_BF16);
  ASSERT_OK(cache_->Acquire("job-1", key, info));
  ASSERT_OK(cache_->Put(key, {{1, std::string(1000, 'a')}}));
  faults_.Set(FaultyFileSystem::Fault::kNoSpace);
  EXPECT_THAT(cache_->Put(key, {{2, std::string(1000, 'b')}}),
              StatusIs(absl::StatusCode::kResourceExhausted, ::testing::_));
  EXPECT_THAT(cache_->MultiGet({{key, 1}})[0], IsOkAndHolds(std::string(1000, 'a')));
  EXPECT_THAT(cache_->MultiGet({{key, 2}})[0].status(),
              StatusIs(absl::StatusCode::kNotFound, ::testing::_));
  faults_.Set(FaultyFileSystem::Fault::kNone);
  ASSERT_OK(Retry([&] { return cache_->Put(key, {{3, std::string(1000, 'c')}}); }));
  Open();
  EXPECT_THAT(cache_->MultiGet({{key, 1}})[0], IsOkAndHolds(std::string(1000, 'a')));
  EXPECT_THAT(cache_->MultiGet({{key, 3}})[0], IsOkAndHolds(std::string(1000, 'c')));
}

}  // namespace
}  // namespace ftd::storage
