#include "server/training/cache/cache_counts.h"

#include <cstdint>

namespace ftd::training {

std::vector<double> CacheCountsOf(const v1::CacheStats& s) {
  std::vector<double> counts(kCacheCounts);
  counts[kCacheExamples] = static_cast<double>(s.examples());
  counts[kCacheHits] = static_cast<double>(s.hits());
  counts[kCachePartialHits] = static_cast<double>(s.partial_hits());
  counts[kCacheMisses] = static_cast<double>(s.misses());
  counts[kCacheCorrupt] = static_cast<double>(s.corrupt());
  counts[kCacheErrors] = static_cast<double>(s.errors());
  counts[kCacheEntriesWritten] = static_cast<double>(s.entries_written());
  counts[kCacheBytesWritten] = static_cast<double>(s.bytes_written());
  counts[kCacheBytesRead] = static_cast<double>(s.bytes_read());
  counts[kCacheReadWaitSeconds] = s.read_wait_seconds();
  return counts;
}

v1::CacheStats WithCacheCounts(v1::CacheStats s, const std::vector<double>& counts, size_t first) {
  const double* c = counts.data() + first;
  s.set_examples(static_cast<int64_t>(c[kCacheExamples]));
  s.set_hits(static_cast<int64_t>(c[kCacheHits]));
  s.set_partial_hits(static_cast<int64_t>(c[kCachePartialHits]));
  s.set_misses(static_cast<int64_t>(c[kCacheMisses]));
  s.set_corrupt(static_cast<int64_t>(c[kCacheCorrupt]));
  s.set_errors(static_cast<int64_t>(c[kCacheErrors]));
  s.set_entries_written(static_cast<int64_t>(c[kCacheEntriesWritten]));
  s.set_bytes_written(static_cast<int64_t>(c[kCacheBytesWritten]));
  s.set_bytes_read(static_cast<int64_t>(c[kCacheBytesRead]));
  s.set_read_wait_seconds(c[kCacheReadWaitSeconds]);
  return s;
}

}  // namespace ftd::training
