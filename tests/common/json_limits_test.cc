#include "common/json_limits.h"

#include <string>

#include "gmock/gmock.h"
#include "google/protobuf/struct.pb.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace ftd {
namespace {

using ::ftd::testing::StatusIs;
using ::testing::HasSubstr;

// `depth` arrays, one inside the next, around `inner`.
std::string Nested(int depth, const std::string& inner = "") {
  return std::string(depth, '[') + inner + std::string(depth, ']');
}

TEST(JsonLimitsTest, AcceptsTheLimitAndRefusesOneMoreNamingTheLineAndTheLimit) {
  EXPECT_OK(CheckJsonDepth(Nested(kMaxJsonDepth)));
  EXPECT_OK(CheckJsonDepth("{\"a\":" + Nested(kMaxJsonDepth - 1) + "}"));
  EXPECT_OK(CheckJsonDepth(Nested(3), 3));
  EXPECT_THAT(
      CheckJsonDepth(Nested(kMaxJsonDepth + 1)),
      StatusIs(absl::StatusCode::kInvalidArgument, "line 1: JSON nested deeper than 64 levels"));
  EXPECT_THAT(
      CheckJsonDepth("{\n\"a\":\n[[{\"b\":[\n]}]]}", 3),
      StatusIs(absl::StatusCode::kInvalidArgument, "line 3: JSON nested deeper than 3 levels"));
  // Siblings do not add up: depth is how deep, not how many.
  std::string siblings = "[{}";
  for (int i = 0; i < 1000; ++i) siblings += ",{\"a\":[]}";
  EXPECT_OK(CheckJsonDepth(siblings + "]", 3));
}

TEST(JsonLimitsTest, BracketsInsideStringsAndEscapedQuotesDoNotCount) {
  const std::string brackets = "\"" + std::string(100, '[') + "{{{\"";
  EXPECT_OK(CheckJsonDepth("{\"a\":" + brackets + "}", 1));
  EXPECT_OK(CheckJsonDepth("[\"\\\"[[[[\",\"\\\\\",\"[[\\\\\\\"[[\"]", 1));
  // After `"\\"` the string has ended: the brackets that follow count.
  EXPECT_THAT(CheckJsonDepth("[\"\\\\\",[[]]]", 2),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("deeper than 2")));
  // A newline inside a string still counts as a line.
  EXPECT_THAT(CheckJsonDepth("[\"a\nb\",\n[[]]]", 2),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("line 3:")));
}

// Protobuf's parser takes strings in single quotes too: a quote of one kind
// inside a string of the other is text, and cannot hide the brackets after
// it from the count.
TEST(JsonLimitsTest, StringsInSingleQuotesAreStringsToo) {
  EXPECT_OK(CheckJsonDepth("['[[[[', \"'\", '\"']", 1));
  const std::string hidden = "{\"x\":['\"'," + Nested(100) + "]}";
  EXPECT_THAT(CheckJsonDepth(hidden),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("deeper than 64")));
  google::protobuf::Struct parsed;
  EXPECT_THAT(ParseJson(hidden, &parsed),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("deeper than 64")));
}

TEST(JsonLimitsTest, RefusesAMillionLevelsWithoutRecursing) {
  const std::string deep = "{\"text\":\"a\",\"x\":" + Nested(1'000'000) + "}";
  const absl::Status status = CheckJsonDepth(deep);
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("64 levels")));
  EXPECT_TRUE(IsJsonTooDeep(status));
  // Unclosed, as a hostile file may be: refused the same way.
  EXPECT_TRUE(IsJsonTooDeep(CheckJsonDepth(std::string(1'000'000, '{'))));
}

TEST(JsonLimitsTest, ParseJsonRefusesDeepTextBeforeTheParserAndParsesTheRest) {
  google::protobuf::Struct s;
  const absl::Status deep = ParseJson("{\"x\":" + Nested(1'000'000) + "}", &s);
  EXPECT_THAT(deep, StatusIs(absl::StatusCode::kInvalidArgument,
                             "line 1: JSON nested deeper than 64 levels"));
  EXPECT_TRUE(IsJsonTooDeep(deep));

  // Within what protobuf's parser takes into a Struct (50 arrays), it parses.
  ASSERT_OK(ParseJson("{\"x\":" + Nested(40, "1") + "}", &s));
  EXPECT_TRUE(s.fields().at("x").has_list_value());

  const absl::Status bad = ParseJson("{\"secret\": nope}", &s);
  EXPECT_THAT(bad, StatusIs(absl::StatusCode::kInvalidArgument, ::testing::Not(HasSubstr("\n"))));
  EXPECT_THAT(bad.message(), ::testing::Not(HasSubstr("secret")));
  EXPECT_FALSE(IsJsonTooDeep(bad));
  EXPECT_FALSE(IsJsonTooDeep(absl::InvalidArgumentError("line 1: JSON nested deeper than 64")));
}

}  // namespace
}  // namespace ftd
