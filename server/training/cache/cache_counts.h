// The activation cache's counts (v1::CacheStats) as numbers to add up: the
// replicas of a job on several devices each count their own rows, and the
// job's counts of a step or an epoch are their sum, exchanged as a vector.
#pragma once

#include <vector>

#include "ftd/v1/ftd.pb.h"

namespace ftd::training {

enum CacheCount {
  kCacheExamples,
  kCacheHits,
  kCachePartialHits,
  kCacheMisses,
  kCacheCorrupt,
  kCacheErrors,
  kCacheEntriesWritten,
  kCacheBytesWritten,
  kCacheBytesRead,
  kCacheReadWaitSeconds,
  kCacheCounts,  // how many
};

// The counts of `stats` by CacheCount.
std::vector<double> CacheCountsOf(const v1::CacheStats& stats);

// `stats` with its counts replaced by `counts[first ...]` (by CacheCount);
// its epoch and frozen depth stay.
v1::CacheStats WithCacheCounts(v1::CacheStats stats, const std::vector<double>& counts,
                               size_t first = 0);

}  // namespace ftd::training
