// The check pool: runs work off the caller's thread, refuses past its queue
// with CHECKS_BUSY, answers a call whose deadline passed without running it,
// and gives every queued call its answer when it goes.
#include "server/api/check_pool.h"

#include <atomic>
#include <memory>

#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/core/error_details.h"
#include "tests/testing/status_matchers.h"

namespace ftd::api {
namespace {

using ::ftd::testing::StatusIs;
using ::testing::HasSubstr;

TEST(CheckPoolTest, RunsWorkOnItsOwnThread) {
  absl::Notification done;
  std::thread::id ran_on;
  CheckPool pool(CheckPool::Options{});
  ASSERT_OK(pool.Schedule(absl::InfiniteFuture(), [&](absl::Status ready) {
    EXPECT_OK(ready);
    ran_on = std::this_thread::get_id();
    done.Notify();
  }));
  done.WaitForNotification();
  EXPECT_NE(ran_on, std::this_thread::get_id());
}

TEST(CheckPoolTest, PastItsQueueACallIsRefusedChecksBusy) {
  // What the work uses outlives the pool, which joins its threads.
  absl::Notification running, release;
  std::atomic<int> ran{0};
  CheckPool::Options options;
  options.threads = 1;
  options.max_queued = 1;
  CheckPool pool(options);
  ASSERT_OK(pool.Schedule(absl::InfiniteFuture(), [&](absl::Status) {
    running.Notify();
    release.WaitForNotification();
  }));
  running.WaitForNotification();
  ASSERT_OK(pool.Schedule(absl::InfiniteFuture(), [&](absl::Status) { ++ran; }));
  const absl::Status busy = pool.Schedule(absl::InfiniteFuture(), [&](absl::Status) { ++ran; });
  EXPECT_THAT(busy, StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("1 waiting")));
  EXPECT_EQ(core::ReasonOf(busy), "CHECKS_BUSY");
  release.Notify();
  while (pool.queued() > 0) std::this_thread::yield();
}

TEST(CheckPoolTest, ACallWhoseDeadlinePassedWhileItWaitedOnlyAnswers) {
  absl::Time now = absl::FromUnixSeconds(1000);
  std::atomic<bool> advance{false};
  absl::Notification running, release, done;
  absl::Status seen;
  CheckPool::Options options;
  options.threads = 1;
  options.now = [&] { return advance ? now + absl::Seconds(10) : now; };
  CheckPool pool(options);
  ASSERT_OK(pool.Schedule(now + absl::Seconds(5), [&](absl::Status) {
    running.Notify();
    release.WaitForNotification();
  }));
  running.WaitForNotification();
  ASSERT_OK(pool.Schedule(now + absl::Seconds(5), [&](absl::Status ready) {
    seen = ready;
    done.Notify();
  }));
  advance = true;
  release.Notify();
  done.WaitForNotification();
  EXPECT_THAT(seen, StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr("deadline")));
}

TEST(CheckPoolTest, EveryQueuedCallIsAnsweredWhenThePoolGoes) {
  std::atomic<int> answered{0};
  {
    CheckPool::Options options;
    options.threads = 1;
    CheckPool pool(options);
    for (int i = 0; i < 10; ++i) {
      ASSERT_OK(pool.Schedule(absl::InfiniteFuture(), [&](absl::Status) { ++answered; }));
    }
  }
  EXPECT_EQ(answered, 10);
}

}  // namespace
}  // namespace ftd::api
