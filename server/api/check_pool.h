// The threads that read and check a caller's files: a submission's checks
// (its model folder and datasets, read as the job will read them) and an
// upload's, when its last byte has come. They run here rather than on
// gRPC's own threads, so that no submission or upload, however slow its
// files are to read or parse, holds up health checks, watches or anyone
// else's calls.
//
// A few threads and a queue with a limit: past the limit a call is refused
// with RESOURCE_EXHAUSTED (reason CHECKS_BUSY), and a call whose deadline
// passes while it waits is answered DEADLINE_EXCEEDED without running.
//
// Thread-safe. The destructor runs what is queued (each call gets its
// answer) and joins the threads.
#pragma once

#include <deque>
#include <functional>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace ftd::api {

class CheckPool {
 public:
  struct Options {
    // Checks running at once.
    int threads = 2;
    // Checks waiting for a thread; one more is refused.
    int max_queued = 32;
    std::function<absl::Time()> now = [] { return absl::Now(); };
  };

  explicit CheckPool(Options options);
  ~CheckPool();
  CheckPool(const CheckPool&) = delete;
  CheckPool& operator=(const CheckPool&) = delete;

  // Runs `work` on one of the pool's threads: with OK, or with
  // DEADLINE_EXCEEDED when `deadline` passed before a thread was free (the
  // work then only answers). Errors: RESOURCE_EXHAUSTED (CHECKS_BUSY) when
  // the queue is full; `work` is not run.
  absl::Status Schedule(absl::Time deadline, std::function<void(absl::Status)> work);

  // Checks waiting now (for tests and metrics).
  int queued() const;

 private:
  struct Item {
    absl::Time deadline;
    std::function<void(absl::Status)> work;
  };
  void Loop();

  const Options options_;
  mutable absl::Mutex mu_;
  std::deque<Item> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace ftd::api
