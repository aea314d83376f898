// The order in which an epoch visits the training examples: a pure function
// of the job's seed and the epoch, so that anything (the activation cache's
// prefetcher, a resumed job) can know it ahead of time.
#pragma once

#include <cstdint>
#include <vector>

namespace ftd::training {

// A permutation of 0 .. n-1 (Fisher-Yates over SplitMix64).
std::vector<int64_t> EpochOrder(int64_t n, uint64_t seed, int epoch);

}  // namespace ftd::training
