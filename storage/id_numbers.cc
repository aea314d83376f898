#include "storage/id_numbers.h"

#include <sys/random.h>

#include <algorithm>
#include <utility>

namespace ftd::storage {

namespace {

constexpr int kRandomBits = 20;
constexpr uint64_t kNoiseMask = (uint64_t{1} << kRandomBits) - 1;

}  // namespace

IdNumbers::IdNumbers(IdScheme scheme, std::function<absl::Time()> now)
    : scheme_(scheme), now_(std::move(now)) {}

uint64_t IdNumbers::Noise() {
  // From the kernel on every call (ids are made a few a second at most): a
  // tenant cannot learn a generator's state from the low bits of its own
  // ids and count the others' between them.
  uint64_t bits = 0;
  if (getrandom(&bits, sizeof(bits), 0) != static_cast<ssize_t>(sizeof(bits))) {
    bits = fallback_();
  }
  return bits & kNoiseMask;
}

uint64_t IdNumbers::Next(uint64_t smallest_free) {
  if (scheme_ == IdScheme::kSequential) return smallest_free;
  const int64_t millis = std::max<int64_t>(0, absl::ToUnixMillis(now_()));
  const uint64_t noise = Noise();
  const uint64_t number = (static_cast<uint64_t>(millis) << kRandomBits) | noise;
  // Behind the last number (two in one millisecond, a clock set back): past
  // it by chance too, so that a number is never the last one plus one.
  return number >= smallest_free ? number : smallest_free + noise;
}

}  // namespace ftd::storage
