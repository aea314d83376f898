// The activation cache as operators see it through the API: its size, cap
// and segments, a job's use of it, and clearing what a job stored.
#pragma once

#include <vector>

#include "absl/status/statusor.h"
#include "ftd/v1/ftd.pb.h"
#include "storage/activation_store.h"

namespace ftd::core {

class CacheAdmin {
 public:
  // `store` is not owned; nullptr when the daemon runs without a cache (every
  // call is then UNAVAILABLE).
  explicit CacheAdmin(storage::ActivationStore* store) : store_(store) {}

  // The whole cache; with `job`, that job's counts and the segments it read
  // or wrote, as they are now.
  absl::StatusOr<v1::CacheInfo> Info(const v1::Job* job) const;
  // Deletes the segments `job` read or wrote, except those a running job
  // uses. Errors: FAILED_PRECONDITION while `job` itself runs.
  absl::StatusOr<v1::ClearJobCacheResponse> Clear(const v1::Job& job) const;
  // As Clear, for a job being deleted; the segments in `in_use` (those of
  // the jobs not ended) are kept too. Without a cache, clears nothing.
  absl::StatusOr<v1::ClearJobCacheResponse> ClearDeleted(
      const v1::Job& job, const std::vector<v1::CacheSegment>& in_use) const;

 private:
  absl::Status Check() const;
  absl::StatusOr<v1::ClearJobCacheResponse> ClearExcept(
      const v1::Job& job, const std::vector<v1::CacheSegment>& in_use) const;
  storage::ActivationStore* const store_;
};

}  // namespace ftd::core
