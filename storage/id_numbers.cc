#include "storage/id_numbers.h"

#include <algorithm>
#include <utility>

namespace ftd::storage {

namespace {
constexpr int kRandomBits = 20;
}  // namespace

IdNumbers::IdNumbers(IdScheme scheme, std::function<absl::Time()> now)
    : scheme_(scheme), now_(std::move(now)), random_(std::random_device()()) {}

uint64_t IdNumbers::Next(uint64_t smallest_free) {
  if (scheme_ == IdScheme::kSequential) return smallest_free;
  const int64_t millis = std::max<int64_t>(0, absl::ToUnixMillis(now_()));
  const uint64_t noise = random_() & ((uint64_t{1} << kRandomBits) - 1);
  const uint64_t number = (static_cast<uint64_t>(millis) << kRandomBits) | noise;
  return std::max(smallest_free, number);
}

}  // namespace ftd::storage
