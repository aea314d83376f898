#include "common/enum_names.h"

#include "ftd/v1/ftd.pb.h"
#include "gtest/gtest.h"

namespace ftd {
namespace {

TEST(EnumNamesTest, DropsTheEnumsPrefix) {
  EXPECT_EQ(ShortName(v1::JOB_STATE_QUEUED), "QUEUED");
  EXPECT_EQ(ShortName(v1::JOB_STATE_UNSPECIFIED), "UNSPECIFIED");
  EXPECT_EQ(ShortName(v1::DATASET_FORMAT_JSONL), "JSONL");
  EXPECT_EQ(ShortName(v1::ActivationCache::DTYPE_BF16), "BF16");  // nested enum
  EXPECT_EQ(ShortName(v1::JobEvent::Log::LEVEL_WARNING), "WARNING");
  EXPECT_EQ(ShortName(static_cast<v1::JobState>(99)), "?");
}

}  // namespace
}  // namespace ftd
