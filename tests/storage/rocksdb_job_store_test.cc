#include "storage/rocksdb_job_store.h"

#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "rocksdb/db.h"
#include "rocksdb/write_batch.h"
#include "storage/database.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace ftd::storage {
namespace {

using ::ftd::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

v1::Job NewJob(const std::string& name, v1::JobState state = v1::JOB_STATE_QUEUED) {
  v1::Job job;
  job.mutable_spec()->set_display_name(name);
  job.set_state(state);
  return job;
}

v1::JobEvent Log(const std::string& message) {
  v1::JobEvent event;
  event.mutable_log()->set_message(message);
  return event;
}

std::vector<std::string> Ids(const JobPage& page) {
  std::vector<std::string> ids;
  for (const auto& job : page.jobs) ids.push_back(job.id());
  return ids;
}

class RocksDbJobStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { Open(); }

  void Open(RocksDbJobStore::Options options = RocksDbJobStore::Options()) {
    store_.reset();
    database_.reset();
    ASSERT_OK_AND_ASSIGN(database_, Database::Open({dir_.Sub("db"), {"jobs"}, {}}));
    ASSERT_OK_AND_ASSIGN(store_, RocksDbJobStore::Create(database_.get(), options));
  }

  std::vector<v1::JobEvent> AllEvents(const std::string& job_id, int64_t* dropped) {
    std::vector<v1::JobEvent> all;
    std::string token;
    do {
      absl::StatusOr<EventPage> page = store_->ListEvents(job_id, 0, 7, token);
      EXPECT_TRUE(page.ok()) << page.status();
      if (!page.ok()) break;
      all.insert(all.end(), page->events.begin(), page->events.end());
      *dropped = page->dropped;
      token = page->next_page_token;
    } while (!token.empty());
    return all;
  }

  ftd::testing::TempDir dir_;
  std::unique_ptr<Database> database_;
  std::unique_ptr<RocksDbJobStore> store_;
};

TEST_F(RocksDbJobStoreTest, CreateGivesSequentialIdsAndStoresTheFirstEvent) {
  ASSERT_OK_AND_ASSIGN(v1::Job a, store_->CreateJob(NewJob("a"), Log("created a")));
  ASSERT_OK_AND_ASSIGN(v1::Job b, store_->CreateJob(NewJob("b"), Log("created b")));
  EXPECT_EQ(a.id(), "job-1");
  EXPECT_EQ(b.id(), "job-2");
  ASSERT_OK_AND_ASSIGN(v1::Job read, store_->GetJob("job-2"));
  EXPECT_EQ(read.spec().display_name(), "b");
  ASSERT_OK_AND_ASSIGN(EventPage events, store_->ListEvents("job-1", 0, 10, ""));
  ASSERT_EQ(events.events.size(), 1u);
  EXPECT_EQ(events.events[0].sequence(), 1);
  EXPECT_EQ(events.events[0].job_id(), "job-1");
  EXPECT_EQ(events.events[0].log().message(), "created a");
}

TEST_F(RocksDbJobStoreTest, UnknownAndMalformedIdsAreNotFound) {
  EXPECT_THAT(store_->GetJob("job-1"), StatusIs(absl::StatusCode::kNotFound, HasSubstr("job-1")));
  for (const char* id : {"", "job-", "job-0", "job-01", "job-x", "1", "job-+1"}) {
    EXPECT_THAT(store_->GetJob(id), StatusIs(absl::StatusCode::kNotFound, HasSubstr("no job")))
        << id;
  }
  v1::Job ghost = NewJob("ghost");
  ghost.set_id("job-7");
  EXPECT_THAT(store_->UpdateJob(ghost), StatusIs(absl::StatusCode::kNotFound, HasSubstr("job-7")));
  v1::JobEvent event = Log("x");
  event.set_job_id("job-7");
  EXPECT_THAT(store_->AppendEvent(event, nullptr),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("job-7")));
  EXPECT_THAT(store_->ListEvents("job-7", 0, 10, ""),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("job-7")));
}

TEST_F(RocksDbJobStoreTest, RequestIdIndexFindsTheJob) {
  v1::Job job = NewJob("a");
  job.set_request_id("req-1");
  ASSERT_OK(store_->CreateJob(job, Log("x")));
  ASSERT_OK_AND_ASSIGN(auto found, store_->FindByRequestId("", "req-1"));
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->id(), "job-1");
  ASSERT_OK_AND_ASSIGN(auto missing, store_->FindByRequestId("", "req-2"));
  EXPECT_FALSE(missing.has_value());
}

TEST_F(RocksDbJobStoreTest, DeleteRemovesTheJobItsEventsAndItsRequestId) {
  v1::Job a = NewJob("a");
  a.set_request_id("req-a");
  ASSERT_OK(store_->CreateJob(a, Log("a0")));
  ASSERT_OK_AND_ASSIGN(v1::Job b, store_->CreateJob(NewJob("b"), Log("b0")));
  v1::JobEvent event = Log("a1");
  event.set_job_id("job-1");
  ASSERT_OK(store_->AppendEvent(event, nullptr).status());

  ASSERT_OK(store_->DeleteJob("job-1"));
  EXPECT_THAT(store_->GetJob("job-1"), StatusIs(absl::StatusCode::kNotFound, HasSubstr("job")));
  ASSERT_OK_AND_ASSIGN(auto request, store_->FindByRequestId("", "req-a"));
  EXPECT_FALSE(request.has_value());
  ASSERT_OK_AND_ASSIGN(EventPage events, store_->ListEvents("job-1", 0, 10, ""));
  EXPECT_TRUE(events.events.empty());
  EXPECT_THAT(store_->DeleteJob("job-1"), StatusIs(absl::StatusCode::kNotFound, HasSubstr("job")));
  // Marked deleted until its folder is gone (the daemon forgets it then).
  ASSERT_OK_AND_ASSIGN(std::vector<std::string> marked, store_->DeletedJobs());
  EXPECT_THAT(marked, ElementsAre("job-1"));
  EXPECT_THAT(store_->DeleteJob("nonsense"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("job")));

  // The other job is untouched, and ids are not reused, across a reopen.
  Open();
  ASSERT_OK_AND_ASSIGN(EventPage b_events, store_->ListEvents("job-2", 0, 10, ""));
  ASSERT_EQ(b_events.events.size(), 1u);
  EXPECT_EQ(b_events.events[0].log().message(), "b0");
  EXPECT_THAT(store_->GetJob("job-1"), StatusIs(absl::StatusCode::kNotFound, HasSubstr("job")));
  ASSERT_OK_AND_ASSIGN(marked, store_->DeletedJobs());
  EXPECT_THAT(marked, ElementsAre("job-1"));  // the mark survives a crash
  ASSERT_OK(store_->ForgetDeleted("job-1"));
  ASSERT_OK_AND_ASSIGN(marked, store_->DeletedJobs());
  EXPECT_THAT(marked, ::testing::IsEmpty());
  ASSERT_OK_AND_ASSIGN(v1::Job c, store_->CreateJob(NewJob("c"), Log("c0")));
  EXPECT_EQ(c.id(), "job-3");
  ASSERT_OK_AND_ASSIGN(JobPage page, store_->ListJobs({}, 10, ""));
  EXPECT_THAT(Ids(page), ElementsAre("job-2", "job-3"));
}

// A database from before the v1 API settled: the request id inside the
// spec (field 12, now reserved) and log levels one lower. Opening it
// migrates both, once.
TEST_F(RocksDbJobStoreTest, RecordsFromBeforeV1AreMigratedOnOpen) {
  v1::Job job = NewJob("old");
  job.set_id("job-1");
  std::string record = job.SerializeAsString();
  // Job.spec (field 2) holding the old spec plus field 12, "ticket-1".
  std::string spec = job.spec().SerializeAsString();
  spec += std::string("\x62\x08", 2) + "ticket-1";
  v1::Job without_spec = job;
  without_spec.clear_spec();
  record = without_spec.SerializeAsString() + std::string("\x12", 1) +
           std::string(1, static_cast<char>(spec.size())) + spec;
  ASSERT_LT(spec.size(), 128u);
  v1::JobEvent warning = Log("disk almost full");
  warning.set_job_id("job-1");
  warning.set_sequence(1);
  warning.mutable_log()->set_level(static_cast<v1::JobEvent::Log::Level>(1));  // old WARNING
  auto key = [](char prefix, std::vector<uint64_t> numbers) {
    std::string k(1, prefix);
    for (uint64_t n : numbers) {
      for (int shift = 56; shift >= 0; shift -= 8)
        k.push_back(static_cast<char>((n >> shift) & 0xff));
    }
    return k;
  };
  {  // the session ends before the reopen
    const Database::Session session = database_->session();
    rocksdb::ColumnFamilyHandle* cf = session.cf("jobs");
    rocksdb::WriteBatch batch;
    batch.Delete(cf, "m:schema");
    batch.Put(cf, key('j', {1}), record);
    batch.Put(cf, key('e', {1, 1}), warning.SerializeAsString());
    batch.Put(cf, "rticket-1", key('x', {1}).substr(1));
    batch.Put(cf, "m:next_job", key('x', {2}).substr(1));
    ASSERT_TRUE(session.db()->Write(rocksdb::WriteOptions(), &batch).ok());
  }

  Open();
  ASSERT_OK_AND_ASSIGN(v1::Job migrated, store_->GetJob("job-1"));
  EXPECT_EQ(migrated.request_id(), "ticket-1");
  EXPECT_EQ(migrated.spec().display_name(), "old");
  ASSERT_OK_AND_ASSIGN(auto found, store_->FindByRequestId("", "ticket-1"));
  ASSERT_TRUE(found.has_value());
  ASSERT_OK_AND_ASSIGN(EventPage events, store_->ListEvents("job-1", 0, 10, ""));
  ASSERT_EQ(events.events.size(), 1u);
  EXPECT_EQ(events.events[0].log().level(), v1::JobEvent::Log::LEVEL_WARNING);
  // Once: opening again changes nothing more.
  Open();
  ASSERT_OK_AND_ASSIGN(events, store_->ListEvents("job-1", 0, 10, ""));
  EXPECT_EQ(events.events[0].log().level(), v1::JobEvent::Log::LEVEL_WARNING);
  // Deleting it frees its request id, for a new job.
  ASSERT_OK(store_->DeleteJob("job-1"));
  ASSERT_OK_AND_ASSIGN(found, store_->FindByRequestId("", "ticket-1"));
  EXPECT_FALSE(found.has_value());
}

TEST_F(RocksDbJobStoreTest, JobIdsAreDigitsOnly) {
  EXPECT_EQ(RocksDbJobStore::ParseJobId("job-3"), 3u);
  for (const char* bad : {"job-3 ", "job-3\n", "job- 3", "job-+3", "job-03", "job-", "job-3x",
                          "job-99999999999999999999"}) {
    EXPECT_EQ(RocksDbJobStore::ParseJobId(bad), 0u) << bad;
  }
}

TEST_F(RocksDbJobStoreTest, AppendEventNumbersEventsAndUpdatesTheJobAtomically) {
  ASSERT_OK_AND_ASSIGN(v1::Job job, store_->CreateJob(NewJob("a"), Log("0")));
  job.set_state(v1::JOB_STATE_RUNNING);
  v1::JobEvent event = Log("1");
  event.set_job_id(job.id());
  ASSERT_OK_AND_ASSIGN(v1::JobEvent stored, store_->AppendEvent(event, &job));
  EXPECT_EQ(stored.sequence(), 2);
  ASSERT_OK_AND_ASSIGN(v1::Job read, store_->GetJob(job.id()));
  EXPECT_EQ(read.state(), v1::JOB_STATE_RUNNING);
  event.mutable_log()->set_message("2");
  ASSERT_OK_AND_ASSIGN(stored, store_->AppendEvent(event, nullptr));
  EXPECT_EQ(stored.sequence(), 3);
}

TEST_F(RocksDbJobStoreTest, EventsPageInOrderAndResumeAfterASequence) {
  ASSERT_OK_AND_ASSIGN(v1::Job job, store_->CreateJob(NewJob("a"), Log("e1")));
  for (int i = 2; i <= 7; ++i) {
    v1::JobEvent event = Log("e" + std::to_string(i));
    event.set_job_id(job.id());
    ASSERT_OK(store_->AppendEvent(event, nullptr));
  }
  // A second job's events must not leak into the first one's range.
  ASSERT_OK_AND_ASSIGN(v1::Job other, store_->CreateJob(NewJob("b"), Log("other")));
  std::vector<std::string> seen;
  std::string token;
  int pages = 0;
  do {
    ASSERT_OK_AND_ASSIGN(EventPage page, store_->ListEvents(job.id(), 0, 3, token));
    for (const auto& e : page.events) seen.push_back(e.log().message());
    token = page.next_page_token;
    ++pages;
  } while (!token.empty());
  EXPECT_THAT(seen, ElementsAre("e1", "e2", "e3", "e4", "e5", "e6", "e7"));
  EXPECT_EQ(pages, 3);
  ASSERT_OK_AND_ASSIGN(EventPage tail, store_->ListEvents(job.id(), 5, 10, ""));
  ASSERT_EQ(tail.events.size(), 2u);
  EXPECT_EQ(tail.events[0].sequence(), 6);
  EXPECT_TRUE(tail.next_page_token.empty());
  EXPECT_THAT(store_->ListEvents(job.id(), 0, 3, "garbage"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("page_token")));
}

// A page fits a gRPC message: it ends before its records pass
// kMaxJobPageBytes, whatever page_size asks, and the next page goes on.
TEST_F(RocksDbJobStoreTest, APageOfLargeRecordsEndsBeforeItOutgrowsAMessage) {
  for (int i = 1; i <= 8; ++i) {
    v1::Job job = NewJob("j" + std::to_string(i));
    job.set_error(std::string(1 << 20, 'x'));  // a 1 MiB record
    ASSERT_OK(store_->CreateJob(job, Log("x")).status());
  }
  ASSERT_OK_AND_ASSIGN(JobPage first, store_->ListJobs({}, 100, ""));
  EXPECT_THAT(Ids(first), ElementsAre("job-1", "job-2"));
  ASSERT_OK_AND_ASSIGN(JobPage second, store_->ListJobs({}, 100, first.next_page_token));
  EXPECT_THAT(Ids(second), ElementsAre("job-3", "job-4"));
  JobFilter newest;
  newest.newest_first = true;
  ASSERT_OK_AND_ASSIGN(JobPage latest, store_->ListJobs(newest, 100, ""));
  EXPECT_THAT(Ids(latest), ElementsAre("job-8", "job-7"));
}

TEST_F(RocksDbJobStoreTest, ListPagesInSubmissionOrderWithFilters) {
  for (int i = 1; i <= 7; ++i) {
    v1::Job job = NewJob("j" + std::to_string(i),
                         i % 2 == 0 ? v1::JOB_STATE_SUCCEEDED : v1::JOB_STATE_QUEUED);
    if (i >= 5) (*job.mutable_spec()->mutable_labels())["team"] = "nlp";
    ASSERT_OK(store_->CreateJob(job, Log("x")));
  }
  ASSERT_OK_AND_ASSIGN(JobPage first, store_->ListJobs({}, 3, ""));
  EXPECT_THAT(Ids(first), ElementsAre("job-1", "job-2", "job-3"));
  ASSERT_FALSE(first.next_page_token.empty());
  ASSERT_OK_AND_ASSIGN(JobPage second, store_->ListJobs({}, 3, first.next_page_token));
  EXPECT_THAT(Ids(second), ElementsAre("job-4", "job-5", "job-6"));
  ASSERT_OK_AND_ASSIGN(JobPage third, store_->ListJobs({}, 3, second.next_page_token));
  EXPECT_THAT(Ids(third), ElementsAre("job-7"));
  EXPECT_TRUE(third.next_page_token.empty());

  JobFilter queued;
  queued.states = {v1::JOB_STATE_QUEUED};
  ASSERT_OK_AND_ASSIGN(JobPage q, store_->ListJobs(queued, 10, ""));
  EXPECT_THAT(Ids(q), ElementsAre("job-1", "job-3", "job-5", "job-7"));

  JobFilter labelled = queued;
  labelled.labels = {{"team", "nlp"}};
  ASSERT_OK_AND_ASSIGN(JobPage l, store_->ListJobs(labelled, 1, ""));
  EXPECT_THAT(Ids(l), ElementsAre("job-5"));
  ASSERT_OK_AND_ASSIGN(JobPage l2, store_->ListJobs(labelled, 1, l.next_page_token));
  EXPECT_THAT(Ids(l2), ElementsAre("job-7"));
  EXPECT_TRUE(l2.next_page_token.empty());

  EXPECT_THAT(store_->ListJobs({}, 3, "not-a-token"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("page_token")));

  // Newest first, paged the same way; a token holds on to its order.
  JobFilter newest;
  newest.newest_first = true;
  ASSERT_OK_AND_ASSIGN(JobPage n1, store_->ListJobs(newest, 3, ""));
  EXPECT_THAT(Ids(n1), ElementsAre("job-7", "job-6", "job-5"));
  ASSERT_OK_AND_ASSIGN(JobPage n2, store_->ListJobs(newest, 3, n1.next_page_token));
  EXPECT_THAT(Ids(n2), ElementsAre("job-4", "job-3", "job-2"));
  ASSERT_OK_AND_ASSIGN(JobPage n3, store_->ListJobs(newest, 3, n2.next_page_token));
  EXPECT_THAT(Ids(n3), ElementsAre("job-1"));
  EXPECT_TRUE(n3.next_page_token.empty());
  newest.states = {v1::JOB_STATE_QUEUED};
  ASSERT_OK_AND_ASSIGN(JobPage nq, store_->ListJobs(newest, 3, ""));
  EXPECT_THAT(Ids(nq), ElementsAre("job-7", "job-5", "job-3"));
  EXPECT_THAT(store_->ListJobs({}, 3, n1.next_page_token),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("other order")));
}

// A record damaged on disk is reported, not fatal: listing serves the rest
// and names it; reading it is DATA_LOSS naming it.
TEST_F(RocksDbJobStoreTest, AnUnreadableRecordIsListedApartAndTheRestServed) {
  for (const char* name : {"a", "b", "c"}) ASSERT_OK(store_->CreateJob(NewJob(name), Log("x")));
  std::string key(1, 'j');  // the record of job-2, as the store keys it
  for (int shift = 56; shift >= 0; shift -= 8)
    key.push_back(static_cast<char>((2 >> shift) & 0xff));
  {
    const Database::Session session = database_->session();
    ASSERT_TRUE(session.db()
                    ->Put(rocksdb::WriteOptions(), session.cf("jobs"), key,
                          std::string("\xff\xff\xff not a job", 15))
                    .ok());
  }
  ASSERT_OK_AND_ASSIGN(JobPage page, store_->ListJobs({}, 10, ""));
  EXPECT_THAT(Ids(page), ElementsAre("job-1", "job-3"));
  EXPECT_THAT(page.unreadable, ElementsAre("job-2"));
  EXPECT_THAT(store_->GetJob("job-2"), StatusIs(absl::StatusCode::kDataLoss, HasSubstr("job-2")));
  // It can still be deleted.
  ASSERT_OK(store_->DeleteJob("job-2"));
  EXPECT_THAT(store_->GetJob("job-2"), StatusIs(absl::StatusCode::kNotFound, HasSubstr("job-2")));
}

// A job's history keeps its newest events within the bound, every state
// change, warning and error, and the count of what went, across a reopen.
TEST_F(RocksDbJobStoreTest, AJobsHistoryIsBoundedKeepingStateChangesAndWarnings) {
  Open({.max_events_per_job = 16});
  v1::JobEvent submitted;
  submitted.mutable_state_change()->set_to_state(v1::JOB_STATE_QUEUED);
  ASSERT_OK_AND_ASSIGN(v1::Job job, store_->CreateJob(NewJob("long"), submitted));
  int appended = 1;
  auto append = [&](v1::JobEvent event) {
    event.set_job_id(job.id());
    ASSERT_OK(store_->AppendEvent(event, nullptr).status());
    ++appended;
  };
  v1::JobEvent running;
  running.mutable_state_change()->set_from_state(v1::JOB_STATE_QUEUED);
  running.mutable_state_change()->set_to_state(v1::JOB_STATE_RUNNING);
  append(running);
  for (int step = 1; step <= 300; ++step) {
    v1::JobEvent progress;
    progress.mutable_progress()->set_step(step);
    append(progress);
    if (step == 50) {
      v1::JobEvent warning = Log("a checkpoint could not be written");
      warning.mutable_log()->set_level(v1::JobEvent::Log::LEVEL_WARNING);
      append(warning);
    }
    if (step == 100) {
      Open({.max_events_per_job = 16});  // the bound's state is on disk
    }
  }
  int64_t dropped = -1;
  std::vector<v1::JobEvent> events = AllEvents(job.id(), &dropped);
  // Kept: the submission, the start, the warning and at most the newest
  // 16 + 2 (the bound and its chunk).
  EXPECT_LE(events.size(), 3u + 16 + 2);
  EXPECT_GE(events.size(), 3u + 16);
  EXPECT_EQ(dropped + static_cast<int64_t>(events.size()), appended);
  EXPECT_EQ(events[0].sequence(), 1);
  EXPECT_TRUE(events[0].has_state_change());
  EXPECT_TRUE(events[1].has_state_change());
  EXPECT_EQ(events[2].log().message(), "a checkpoint could not be written");
  for (size_t i = 1; i < events.size(); ++i) {
    EXPECT_LT(events[i - 1].sequence(), events[i].sequence());
  }
  // The newest 16 are all there, in order.
  for (size_t i = events.size() - 16; i < events.size(); ++i) {
    EXPECT_EQ(events[i].sequence(), appended - static_cast<int64_t>(events.size() - 1 - i));
  }
  EXPECT_EQ(events.back().progress().step(), 300);
  // Without a bound nothing goes.
  Open();
  ASSERT_OK_AND_ASSIGN(v1::Job other, store_->CreateJob(NewJob("other"), Log("created")));
  for (int i = 0; i < 100; ++i) {
    v1::JobEvent progress;
    progress.set_job_id(other.id());
    ASSERT_OK(store_->AppendEvent(progress, nullptr).status());
  }
  EXPECT_EQ(AllEvents(other.id(), &dropped).size(), 101u);
  EXPECT_EQ(dropped, 0);
}

TEST_F(RocksDbJobStoreTest, EverythingSurvivesReopening) {
  ASSERT_OK(store_->CreateJob(NewJob("a"), Log("x")));
  ASSERT_OK_AND_ASSIGN(v1::Job b, store_->CreateJob(NewJob("b"), Log("y")));
  v1::JobEvent event = Log("z");
  event.set_job_id(b.id());
  ASSERT_OK(store_->AppendEvent(event, nullptr));
  Open();
  ASSERT_OK_AND_ASSIGN(v1::Job read, store_->GetJob("job-2"));
  EXPECT_EQ(read.spec().display_name(), "b");
  // Numbering continues where it stopped, for jobs and for events.
  ASSERT_OK_AND_ASSIGN(v1::Job c, store_->CreateJob(NewJob("c"), Log("w")));
  EXPECT_EQ(c.id(), "job-3");
  ASSERT_OK_AND_ASSIGN(v1::JobEvent next, store_->AppendEvent(event, nullptr));
  EXPECT_EQ(next.sequence(), 3);
}

// Opaque ids (for tenants): the store reads, pages, updates and deletes by
// them as by sequential ones, lists them in creation order, and goes on
// from a sequential store's numbers.
TEST_F(RocksDbJobStoreTest, OpaqueIdsWorkAsSequentialOnesAndKeepCreationOrder) {
  ASSERT_OK_AND_ASSIGN(v1::Job first, store_->CreateJob(NewJob("sequential"), Log("x")));
  EXPECT_EQ(first.id(), "job-1");
  int64_t millis = 1'800'000'000'000;
  RocksDbJobStore::Options options;
  options.ids = IdScheme::kOpaque;
  options.now = [&] { return absl::FromUnixMillis(millis); };
  Open(options);
  std::vector<std::string> created = {first.id()};
  for (int i = 0; i < 5; ++i, ++millis) {
    ASSERT_OK_AND_ASSIGN(v1::Job job, store_->CreateJob(NewJob(absl::StrCat("o", i)), Log("x")));
    EXPECT_EQ(RocksDbJobStore::JobId(RocksDbJobStore::ParseJobId(job.id())), job.id());
    EXPECT_EQ(job.id().size(), 4u + 19u) << job.id();
    created.push_back(job.id());
  }
  std::vector<std::string> listed;
  std::string token;
  do {
    ASSERT_OK_AND_ASSIGN(JobPage page, store_->ListJobs(JobFilter(), 2, token));
    for (const std::string& id : Ids(page)) listed.push_back(id);
    token = page.next_page_token;
  } while (!token.empty());
  EXPECT_EQ(listed, created);

  v1::Job job = NewJob("renamed");
  job.set_id(created[3]);
  ASSERT_OK(store_->UpdateJob(job));
  v1::JobEvent event = Log("y");
  event.set_job_id(created[3]);
  ASSERT_OK_AND_ASSIGN(v1::JobEvent appended, store_->AppendEvent(event, nullptr));
  EXPECT_EQ(appended.sequence(), 2);
  ASSERT_OK(store_->DeleteJob(created[2]));
  EXPECT_TRUE(absl::IsNotFound(store_->GetJob(created[2]).status()));
  // Numbers only grow across a reopen, even with the clock set back.
  millis -= 3'600'000;
  Open(options);
  ASSERT_OK_AND_ASSIGN(v1::Job read, store_->GetJob(created[3]));
  EXPECT_EQ(read.spec().display_name(), "renamed");
  ASSERT_OK_AND_ASSIGN(v1::Job later, store_->CreateJob(NewJob("later"), Log("x")));
  EXPECT_GT(RocksDbJobStore::ParseJobId(later.id()), RocksDbJobStore::ParseJobId(created.back()));
}

// What the store holds in memory per job does not grow with every job
// run: an ended job's event numbers are forgotten, and read again if an
// event comes after its end.
TEST_F(RocksDbJobStoreTest, EndedJobsAreForgottenAndTheirNumbersReadAgain) {
  Open({.max_events_per_job = 16});
  std::string last_id;
  for (int i = 0; i < 100; ++i) {
    ASSERT_OK_AND_ASSIGN(v1::Job job, store_->CreateJob(NewJob("a"), Log("x")));
    v1::JobEvent event = Log("progress");
    event.set_job_id(job.id());
    ASSERT_OK(store_->AppendEvent(event, nullptr));
    job.set_state(i % 2 == 0 ? v1::JOB_STATE_SUCCEEDED : v1::JOB_STATE_CANCELLED);
    ASSERT_OK(store_->AppendEvent(event, &job));
    last_id = job.id();
  }
  EXPECT_EQ(store_->tracked_jobs(), 0u);
  ASSERT_OK_AND_ASSIGN(v1::Job running, store_->CreateJob(NewJob("b"), Log("x")));
  EXPECT_EQ(store_->tracked_jobs(), 1u);
  v1::JobEvent late = Log("after the end");
  late.set_job_id(last_id);
  ASSERT_OK_AND_ASSIGN(v1::JobEvent appended, store_->AppendEvent(late, nullptr));
  EXPECT_EQ(appended.sequence(), 4);
}

TEST_F(RocksDbJobStoreTest, ASecondOpenOfTheSameFolderFailsClearly) {
  EXPECT_THAT(Database::Open({dir_.Sub("db"), {"jobs"}, {}}),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr(dir_.Sub("db"))));
}

}  // namespace
}  // namespace ftd::storage
