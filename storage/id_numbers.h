// How a store numbers what it creates (jobs, uploaded files), so that the
// ids it gives out say nothing of what others created.
//
// Sequential numbers (1, 2, 3, ...) suit one user: ids stay short. Among
// tenants they leak: the gap between two of a tenant's ids counts the other
// tenants' jobs or uploads in between. Opaque numbers are made of the
// creation time in milliseconds and 20 random bits (about 1.9e18 today, 19
// digits, below 2^63 until the year 2248): a number depends on when it
// was made and on chance, not on how many came before. Either way numbers
// only grow, across restarts too (the store keeps the smallest free one),
// so listing by number is listing by creation.
#pragma once

#include <cstdint>
#include <functional>
#include <random>

#include "absl/time/time.h"

namespace ftd::storage {

enum class IdScheme { kSequential, kOpaque };

class IdNumbers {
 public:
  IdNumbers(IdScheme scheme, std::function<absl::Time()> now);

  // The number for the next record, given the smallest one still free (it
  // is that one, or for opaque ids larger when the clock is ahead of it).
  uint64_t Next(uint64_t smallest_free);

 private:
  const IdScheme scheme_;
  const std::function<absl::Time()> now_;
  std::mt19937_64 random_;
};

}  // namespace ftd::storage
