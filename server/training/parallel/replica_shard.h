// The rows of each batch a replica trains on. A batch is rows [start,
// start + count) of the epoch's order (epoch_order.h); the replicas split it
// into contiguous shares as even as can be, the first (count % replicas)
// one row more. Together the shares are the batch, so N replicas follow the
// data order of one, and the batch size stays the job's.
#pragma once

#include <algorithm>
#include <cstdint>

namespace ftd::training::parallel {

struct RowRange {
  int64_t begin = 0;  // within the batch
  int64_t count = 0;
};

inline RowRange ReplicaRows(int64_t count, int rank, int replicas) {
  const int64_t base = count / replicas, extra = count % replicas;
  return RowRange{rank * base + std::min<int64_t>(rank, extra), base + (rank < extra ? 1 : 0)};
}

}  // namespace ftd::training::parallel
