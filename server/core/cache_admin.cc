#include "server/core/cache_admin.h"

#include <algorithm>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/enum_names.h"
#include "common/status_macros.h"

namespace ftd::core {
namespace {

bool SameSegment(const v1::CacheSegment& a, const v1::CacheSegment& b) {
  return a.namespace_() == b.namespace_() && a.dataset_fingerprint() == b.dataset_fingerprint() &&
         a.layer() == b.layer();
}

}  // namespace

absl::Status CacheAdmin::Check() const {
  if (store_ == nullptr) {
    return absl::UnavailableError("this daemon runs without an activation cache");
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::CacheInfo> CacheAdmin::Info(const v1::Job* job) const {
  RETURN_IF_ERROR(Check());
  v1::CacheInfo info;
  info.set_capacity_bytes(store_->capacity_bytes());
  std::vector<v1::CacheSegment> segments = store_->Segments();
  for (const v1::CacheSegment& s : segments) info.set_bytes(info.bytes() + s.bytes());
  if (job == nullptr) {
    for (v1::CacheSegment& s : segments) *info.add_segments() = std::move(s);
    return info;
  }
  *info.mutable_job() = job->cache();
  // The job's segments as they are now (some may have been dropped since).
  for (const v1::CacheSegment& mine : job->cache().segments()) {
    for (const v1::CacheSegment& s : segments) {
      if (SameSegment(s, mine)) *info.add_segments() = s;
    }
  }
  return info;
}

absl::StatusOr<v1::ClearJobCacheResponse> CacheAdmin::Clear(const v1::Job& job) const {
  RETURN_IF_ERROR(Check());
  if (job.state() == v1::JOB_STATE_RUNNING || job.state() == v1::JOB_STATE_CANCELLING) {
    return absl::FailedPreconditionError(absl::StrCat(job.id(), " is ", ShortName(job.state()),
                                                      "; cancel it or let it finish first"));
  }
  return ClearExcept(job, {});
}

absl::StatusOr<v1::ClearJobCacheResponse> CacheAdmin::ClearDeleted(
    const v1::Job& job, const std::vector<v1::CacheSegment>& in_use) const {
  if (store_ == nullptr) return v1::ClearJobCacheResponse();
  return ClearExcept(job, in_use);
}

absl::StatusOr<v1::ClearJobCacheResponse> CacheAdmin::ClearExcept(
    const v1::Job& job, const std::vector<v1::CacheSegment>& in_use) const {
  std::vector<storage::SegmentKey> keys;
  std::vector<v1::CacheSegment> cleared, kept;
  for (const v1::CacheSegment& s : job.cache().segments()) {
    if (std::any_of(in_use.begin(), in_use.end(),
                    [&](const v1::CacheSegment& u) { return SameSegment(s, u); })) {
      kept.push_back(s);
      continue;
    }
    ASSIGN_OR_RETURN(
        storage::SegmentKey key,
        storage::SegmentKey::FromHex(s.namespace_(), s.dataset_fingerprint(), s.layer()));
    keys.push_back(std::move(key));
  }
  RETURN_IF_ERROR(store_->Clear(keys, &cleared, &kept));
  v1::ClearJobCacheResponse response;
  for (v1::CacheSegment& s : cleared) {
    response.set_bytes_freed(response.bytes_freed() + s.bytes());
    *response.add_cleared() = std::move(s);
  }
  for (v1::CacheSegment& s : kept) *response.add_kept() = std::move(s);
  return response;
}

}  // namespace ftd::core
