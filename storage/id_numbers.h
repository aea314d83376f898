// How a store numbers what it creates (jobs, uploaded files), so that the
// ids it gives out say nothing of what others created.
//
// Sequential numbers (1, 2, 3, ...) suit one user: ids stay short. Among
// tenants they leak: the gap between two of a tenant's ids counts the other
// tenants' jobs or uploads in between. Opaque numbers are made of the
// creation time in milliseconds and 20 random bits (about 1.9e18 today, 19
// digits, below 2^63 until the year 2248): a number depends on when it
// was made and on chance, not on how many came before (one made behind the
// last, in the same millisecond or after the clock was set back, is the
// last plus a random amount, never plus one). Either way numbers
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

  // The number for the next record, at least the smallest one still free
  // (sequential ids: that one).
  uint64_t Next(uint64_t smallest_free);

 private:
  // 20 random bits.
  uint64_t Noise();

  const IdScheme scheme_;
  const std::function<absl::Time()> now_;
  std::random_device fallback_;  // if getrandom(2) fails
};

}  // namespace ftd::storage
