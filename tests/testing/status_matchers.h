// gtest helpers for absl::Status (Debian's Abseil ships none).
#pragma once

#include <ostream>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace absl {
// Readable failures: print a StatusOr's status, not its bytes.
template <typename T>
void PrintTo(const StatusOr<T>& status_or, std::ostream* os) {
  *os << status_or.status().ToString();
}
}  // namespace absl

namespace ftd::testing {

inline const absl::Status& GetStatus(const absl::Status& status) { return status; }
template <typename T>
const absl::Status& GetStatus(const absl::StatusOr<T>& status_or) {
  return status_or.status();
}

// EXPECT_THAT(Foo(), StatusIs(absl::StatusCode::kNotFound, HasSubstr("job-3")));
MATCHER_P2(StatusIs, code, message_matcher,
           "has code " + ::testing::PrintToString(code) + " and a message that " +
               ::testing::DescribeMatcher<std::string>(message_matcher, negation)) {
  const absl::Status& status = ::ftd::testing::GetStatus(arg);
  *result_listener << "whose status is " << status.ToString();
  return status.code() == code &&
         ::testing::ExplainMatchResult(message_matcher, std::string(status.message()),
                                       result_listener);
}

// EXPECT_THAT(store.Get(key), IsOkAndHolds("value"));
MATCHER_P(IsOkAndHolds, value_matcher,
          std::string(negation ? "is not OK or holds another value" : "is OK and holds it")) {
  if (!arg.ok()) {
    *result_listener << "whose status is " << arg.status().ToString();
    return false;
  }
  return ::testing::ExplainMatchResult(value_matcher, *arg, result_listener);
}

}  // namespace ftd::testing

#define FTD_TESTING_CONCAT_INNER_(a, b) a##b
#define FTD_TESTING_CONCAT_(a, b) FTD_TESTING_CONCAT_INNER_(a, b)

#define EXPECT_OK(expr) \
  EXPECT_TRUE(::ftd::testing::GetStatus(expr).ok()) << ::ftd::testing::GetStatus(expr).ToString()
#define ASSERT_OK(expr)                                                       \
  do {                                                                        \
    const auto& ftd_result_ = (expr);                                         \
    const absl::Status& ftd_status_ = ::ftd::testing::GetStatus(ftd_result_); \
    ASSERT_TRUE(ftd_status_.ok()) << ftd_status_.ToString();                  \
  } while (false)

// ASSERT_OK_AND_ASSIGN(auto job, manager->Submit(spec));
#define ASSERT_OK_AND_ASSIGN(lhs, expr) \
  FTD_ASSERT_OK_AND_ASSIGN_IMPL_(FTD_TESTING_CONCAT_(ftd_statusor_, __LINE__), lhs, expr)
#define FTD_ASSERT_OK_AND_ASSIGN_IMPL_(statusor, lhs, expr)   \
  auto statusor = (expr);                                     \
  ASSERT_TRUE(statusor.ok()) << statusor.status().ToString(); \
  lhs = *std::move(statusor)
