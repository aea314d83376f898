#include "server/core/model_check.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace ftd::core {
namespace {

using ::ftd::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::StartsWith;

// A config.json nested 100,000 deep (at submit or upload) kept protobuf's
// parser busy for minutes: it is refused by its depth, naming the file, the
// line and the limit.
TEST(ModelCheckTest, AConfigNestedTooDeepIsRefusedNamingTheFileAndTheLimit) {
  ftd::testing::TempDir dir;
  ftd::testing::WriteModelFolder(dir.Sub("m"));
  ftd::testing::WriteFile(dir.Sub("m/config.json"),
                          "{\"model_type\": \"bert\",\n\"x\": " + std::string(100'000, '[') +
                              std::string(100'000, ']') + "}");
  EXPECT_THAT(ReadModelConfig(dir.Sub("m"), "base_model", "shown"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(StartsWith("base_model:"),
                             HasSubstr("shown/config.json: line 2: JSON nested deeper than 64 "
                                       "levels"))));
}

}  // namespace
}  // namespace ftd::core
