#include "server/api/check_pool.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "server/core/error_details.h"

namespace ftd::api {

CheckPool::CheckPool(Options options) : options_(std::move(options)) {
  const int threads = std::max(1, options_.threads);
  threads_.reserve(threads);
  for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { Loop(); });
}

CheckPool::~CheckPool() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  for (std::thread& thread : threads_) thread.join();
}

absl::Status CheckPool::Schedule(absl::Time deadline, std::function<void(absl::Status)> work) {
  absl::MutexLock lock(&mu_);
  if (stopping_ || static_cast<int>(queue_.size()) >= std::max(0, options_.max_queued)) {
    return core::WithReason(
        absl::ResourceExhaustedError(absl::StrCat(
            "the daemon is checking as many files as it takes at once (",
            options_.max_queued, " waiting); try again shortly")),
        "CHECKS_BUSY", {{"limit", absl::StrCat(options_.max_queued)}});
  }
  queue_.push_back(Item{deadline, std::move(work)});
  return absl::OkStatus();
}

int CheckPool::queued() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(queue_.size());
}

void CheckPool::Loop() {
  while (true) {
    Item item;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](CheckPool* pool) ABSL_EXCLUSIVE_LOCKS_REQUIRED(pool->mu_) {
            return pool->stopping_ || !pool->queue_.empty();
          },
          this));
      if (queue_.empty()) return;  // stopping, and nothing left
      item = std::move(queue_.front());
      queue_.pop_front();
    }
    if (options_.now() >= item.deadline) {
      item.work(absl::DeadlineExceededError(
          "the call's deadline passed while it waited for its files to be checked"));
    } else {
      item.work(absl::OkStatus());
    }
  }
}

}  // namespace ftd::api
