#include "storage/id_numbers.h"

#include <cstdint>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace ftd::storage {
namespace {

constexpr uint64_t kWindow = uint64_t{1} << 20;  // numbers a millisecond

TEST(IdNumbersTest, SequentialNumbersAreTheSmallestFree) {
  IdNumbers numbers(IdScheme::kSequential, [] { return absl::FromUnixMillis(1'800'000'000'000); });
  EXPECT_EQ(numbers.Next(1), 1u);
  EXPECT_EQ(numbers.Next(42), 42u);
}

// An opaque number is a function of the time it is made and of chance: how
// many numbers were made before (by whichever tenant) does not move it.
TEST(IdNumbersTest, AnOpaqueNumberDependsOnTheTimeNotOnHowManyCameBefore) {
  int64_t millis = 1'800'000'000'000;
  auto now = [&] { return absl::FromUnixMillis(millis); };
  IdNumbers quiet(IdScheme::kOpaque, now), busy(IdScheme::kOpaque, now);
  uint64_t quiet_free = 1, busy_free = 1;
  quiet_free = quiet.Next(quiet_free) + 1;
  for (int i = 0; i < 500; ++i, ++millis) busy_free = busy.Next(busy_free) + 1;
  const uint64_t a = quiet.Next(quiet_free), b = busy.Next(busy_free);
  const uint64_t window = static_cast<uint64_t>(millis) * kWindow;
  for (uint64_t number : {a, b}) {
    EXPECT_GE(number, window);
    EXPECT_LT(number, window + kWindow);
  }
}

TEST(IdNumbersTest, OpaqueNumbersOnlyGrowEvenWhenTheClockGoesBack) {
  int64_t millis = 1'800'000'000'000;
  IdNumbers numbers(IdScheme::kOpaque, [&] { return absl::FromUnixMillis(millis); });
  uint64_t free = 1;
  std::set<uint64_t> seen;
  int next_in_line = 0;  // numbers that are the previous one plus one
  for (int i = 0; i < 1000; ++i) {
    if (i == 500) millis -= 60'000;  // a clock set back a minute
    const uint64_t number = numbers.Next(free);
    EXPECT_GE(number, free);
    EXPECT_TRUE(seen.insert(number).second);
    if (number == free) ++next_in_line;
    free = number + 1;
  }
  // Behind the last number (the clock is for the last 500; all of them in
  // one millisecond), a number is the last one plus chance, not plus one:
  // a tenant cannot count the others' numbers between two of its own.
  EXPECT_LE(next_in_line, 2);
}

TEST(IdNumbersTest, OpaqueNumbersVaryAndFitNineteenDigitsForCenturies) {
  const int64_t year_2240 = absl::ToUnixMillis(
      absl::FromCivil(absl::CivilSecond(2240, 1, 1, 0, 0, 0), absl::UTCTimeZone()));
  IdNumbers later(IdScheme::kOpaque, [&] { return absl::FromUnixMillis(year_2240); });
  EXPECT_LE(absl::StrCat(later.Next(1)).size(), 19u);
  EXPECT_LT(later.Next(1), uint64_t{1} << 63);
  IdNumbers numbers(IdScheme::kOpaque, [] { return absl::FromUnixMillis(1'800'000'000'000); });
  std::set<uint64_t> low_bits;
  for (int i = 0; i < 20; ++i) low_bits.insert(numbers.Next(1) % kWindow);
  EXPECT_GT(low_bits.size(), 15u);  // chance, not a counter
}

}  // namespace
}  // namespace ftd::storage
