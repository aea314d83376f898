#include "server/core/event_hub.h"

#include <atomic>
#include <chrono>
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/core/error_details.h"
#include "storage/database.h"
#include "storage/rocksdb_job_store.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace ftd::core {
namespace {

using ::ftd::testing::StatusIs;
using ::testing::HasSubstr;
using Pull = EventSubscription::Pull;

class EventHubTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(database_, storage::Database::Open({dir_.Sub("db"), {"jobs"}, {}}));
    ASSERT_OK_AND_ASSIGN(store_, storage::RocksDbJobStore::Create(database_.get()));
    v1::Job job;
    job.set_state(v1::JOB_STATE_QUEUED);
    v1::JobEvent first;
    first.mutable_state_change()->set_to_state(v1::JOB_STATE_QUEUED);
    ASSERT_OK_AND_ASSIGN(v1::Job stored, store_->CreateJob(job, first));
    job_id_ = stored.id();
  }

  // Stores a progress event for `step` and publishes it, as the manager does.
  void Append(EventHub& hub, int64_t step) {
    v1::JobEvent event;
    event.set_job_id(job_id_);
    event.mutable_progress()->set_step(step);
    absl::StatusOr<v1::JobEvent> stored = store_->AppendEvent(event, nullptr);
    ASSERT_OK(stored.status());
    hub.Publish(*stored);
  }

  // Pulls until the subscription waits or closes; returns the sequences.
  std::vector<int64_t> Drain(EventSubscription& sub, Pull* last, absl::Status* status) {
    std::vector<int64_t> sequences;
    v1::JobEvent event;
    while ((*last = sub.Next(&event, status)) == Pull::kEvent)
      sequences.push_back(event.sequence());
    return sequences;
  }

  ftd::testing::TempDir dir_;
  std::unique_ptr<storage::Database> database_;
  std::unique_ptr<storage::RocksDbJobStore> store_;
  std::string job_id_;
};

TEST_F(EventHubTest, AWatcherGetsTheHistoryThenLiveEventsThenTheEnd) {
  EventHub hub({store_.get()});
  Append(hub, 1);  // sequence 2, before anyone watches
  std::atomic<int> wakes{0};
  ASSERT_OK_AND_ASSIGN(auto sub, hub.Subscribe(job_id_, 0, 2, false, [&] { ++wakes; }));
  Pull last;
  absl::Status status;
  EXPECT_THAT(Drain(*sub, &last, &status), ::testing::ElementsAre(1, 2));
  EXPECT_EQ(last, Pull::kWait);

  const int before = wakes.load();
  Append(hub, 2);
  for (int i = 0; i < 500 && wakes.load() == before; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  EXPECT_GT(wakes.load(), before);  // told there is more
  EXPECT_THAT(Drain(*sub, &last, &status), ::testing::ElementsAre(3));

  Append(hub, 3);
  hub.CloseJob(job_id_, absl::OkStatus());
  Append(hub, 4);  // after the close: not delivered
  EXPECT_THAT(Drain(*sub, &last, &status), ::testing::ElementsAre(4));
  EXPECT_EQ(last, Pull::kClosed);
  EXPECT_OK(status);
}

TEST_F(EventHubTest, AnEndedJobsWatchClosesAfterItsHistoryFromTheRequestedSequence) {
  EventHub hub({store_.get()});
  for (int step = 1; step <= 4; ++step) Append(hub, step);
  ASSERT_OK_AND_ASSIGN(auto sub, hub.Subscribe(job_id_, 3, 5, /*ended=*/true, [] {}));
  Pull last;
  absl::Status status;
  EXPECT_THAT(Drain(*sub, &last, &status), ::testing::ElementsAre(4, 5));
  EXPECT_EQ(last, Pull::kClosed);
  EXPECT_OK(status);
}

// A history the store's bound thinned has gaps in its sequence numbers: a
// watch replays what is left, skipping them, and goes on with live events.
TEST_F(EventHubTest, AWatchSkipsWhatTheHistorysBoundDropped) {
  store_.reset();
  ASSERT_OK_AND_ASSIGN(
      store_, storage::RocksDbJobStore::Create(database_.get(), {.max_events_per_job = 8}));
  EventHub hub({store_.get()});
  for (int step = 1; step <= 40; ++step) Append(hub, step);  // sequences 2..41
  ASSERT_OK_AND_ASSIGN(auto sub, hub.Subscribe(job_id_, 0, 41, false, [] {}));
  Pull last;
  absl::Status status;
  std::vector<int64_t> got = Drain(*sub, &last, &status);
  EXPECT_EQ(last, Pull::kWait);
  ASSERT_GE(got.size(), 9u);
  EXPECT_EQ(got.front(), 1);  // the submission stays
  EXPECT_EQ(got.back(), 41);
  Append(hub, 41);
  EXPECT_THAT(Drain(*sub, &last, &status), ::testing::ElementsAre(42));
  // An ended job's watch replays the same and closes.
  ASSERT_OK_AND_ASSIGN(auto ended, hub.Subscribe(job_id_, 0, 42, /*ended=*/true, [] {}));
  std::vector<int64_t> replayed = Drain(*ended, &last, &status);
  EXPECT_EQ(last, Pull::kClosed);
  EXPECT_EQ(replayed.back(), 42);
}

// A watcher that does not read holds at most max_buffered_events; once it
// reads, it gets every event in order from the store, none lost.
TEST_F(EventHubTest, ASlowWatcherHoldsBoundedMemoryAndLosesNothing) {
  EventHub hub({store_.get(), /*max_buffered_events=*/8});
  ASSERT_OK_AND_ASSIGN(auto sub, hub.Subscribe(job_id_, 0, 1, false, [] {}));
  for (int step = 1; step <= 300; ++step) {
    Append(hub, step);
    ASSERT_LE(hub.buffered_events(), 8u);
  }
  hub.CloseJob(job_id_, absl::OkStatus());
  Pull last;
  absl::Status status;
  std::vector<int64_t> seen;
  v1::JobEvent event;
  while ((last = sub->Next(&event, &status)) == Pull::kEvent) {
    seen.push_back(event.sequence());
    ASSERT_LE(hub.buffered_events(), 64u + 8u);  // a page of history and the live buffer
  }
  ASSERT_EQ(seen.size(), 301u);
  for (size_t i = 0; i < seen.size(); ++i) EXPECT_EQ(seen[i], static_cast<int64_t>(i + 1));
  EXPECT_EQ(last, Pull::kClosed);
}

TEST_F(EventHubTest, OpenWatchesAreLimited) {
  EventHub hub({store_.get(), 256, /*max_subscriptions=*/2});
  ASSERT_OK_AND_ASSIGN(auto a, hub.Subscribe(job_id_, 0, 1, false, [] {}));
  ASSERT_OK_AND_ASSIGN(auto b, hub.Subscribe(job_id_, 0, 1, false, [] {}));
  EXPECT_THAT(hub.Subscribe(job_id_, 0, 1, false, [] {}),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("limit is 2")));
  EXPECT_EQ(ReasonOf(hub.Subscribe(job_id_, 0, 1, false, [] {}).status()), "TOO_MANY_WATCHES");
  b.reset();
  EXPECT_OK(hub.Subscribe(job_id_, 0, 1, false, [] {}).status());
}

// One tenant cannot take every place: its users' watches have a share of
// the daemon's (an admin's, subscribed without a tenant, count only there).
TEST_F(EventHubTest, EachTenantHasItsShareOfTheOpenWatches) {
  EventHub hub({store_.get(), 256, /*max_subscriptions=*/4, /*max_subscriptions_per_tenant=*/2});
  ASSERT_OK_AND_ASSIGN(auto a1, hub.Subscribe(
                                    job_id_, 0, 1, false, [] {}, "alice"));
  ASSERT_OK_AND_ASSIGN(auto a2, hub.Subscribe(
                                    job_id_, 0, 1, false, [] {}, "alice"));
  absl::StatusOr<std::unique_ptr<EventSubscription>> a3 = hub.Subscribe(
      job_id_, 0, 1, false, [] {}, "alice");
  EXPECT_THAT(a3, StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("alice")));
  EXPECT_EQ(ReasonOf(a3.status()), "TENANT_TOO_MANY_WATCHES");
  ASSERT_OK_AND_ASSIGN(auto b1, hub.Subscribe(
                                    job_id_, 0, 1, false, [] {}, "bob"));
  ASSERT_OK_AND_ASSIGN(auto admin, hub.Subscribe(job_id_, 0, 1, false, [] {}));
  // The daemon's four are open: bob, under his share, meets that limit.
  EXPECT_EQ(ReasonOf(hub.Subscribe(
                            job_id_, 0, 1, false, [] {}, "bob")
                         .status()),
            "TOO_MANY_WATCHES");
  a1.reset();
  EXPECT_OK(hub.Subscribe(
                   job_id_, 0, 1, false, [] {}, "alice")
                .status());
}

TEST_F(EventHubTest, CloseAllEndsWatchesWithTheStatusAfterWhatWasPublished) {
  EventHub hub({store_.get()});
  ASSERT_OK_AND_ASSIGN(auto sub, hub.Subscribe(job_id_, 0, 1, false, [] {}));
  Append(hub, 1);
  hub.CloseAll(absl::UnavailableError("the daemon is shutting down"));
  Pull last;
  absl::Status status;
  EXPECT_THAT(Drain(*sub, &last, &status), ::testing::ElementsAre(1, 2));
  EXPECT_EQ(last, Pull::kClosed);
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kUnavailable, HasSubstr("shutting down")));
  // A watch after the close gets the history and the same end.
  ASSERT_OK_AND_ASSIGN(auto late, hub.Subscribe(job_id_, 0, 2, false, [] {}));
  EXPECT_THAT(Drain(*late, &last, &status), ::testing::ElementsAre(1, 2));
  EXPECT_EQ(last, Pull::kClosed);
}

// A watcher may drop its subscription from inside its own wake (the gRPC
// stream ends there); after a subscription is destroyed its wake is never
// called again.
TEST_F(EventHubTest, ASubscriptionCanEndInsideItsWakeAndIsNotWokenAfterwards) {
  EventHub hub({store_.get()});
  std::unique_ptr<EventSubscription> self;
  std::atomic<bool> dropped{false};
  absl::Mutex mu;
  {
    absl::MutexLock lock(&mu);  // the first wake waits for `self`
    ASSERT_OK_AND_ASSIGN(self, hub.Subscribe(job_id_, 0, 1, false, [&] {
      absl::MutexLock lock(&mu);
      if (self != nullptr) {
        self.reset();
        dropped = true;
      }
    }));
  }
  for (int i = 0; i < 500 && !dropped; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  EXPECT_TRUE(dropped);
  EXPECT_EQ(hub.subscriptions(), 0u);

  std::atomic<int> wakes{0};
  ASSERT_OK_AND_ASSIGN(auto other, hub.Subscribe(job_id_, 0, 1, false, [&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    ++wakes;
  }));
  Pull last;
  absl::Status status;
  Drain(*other, &last, &status);
  Append(hub, 1);
  other.reset();  // waits for a wake under way
  const int after = wakes.load();
  Append(hub, 2);
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_EQ(wakes.load(), after);
}

}  // namespace
}  // namespace ftd::core
