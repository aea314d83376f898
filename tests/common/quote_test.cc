#include "common/quote.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ftd {
namespace {

TEST(QuoteTest, ShortPrintableTextIsQuotedAsItIs) {
  EXPECT_EQ(QuoteUserText("job-3"), "\"job-3\"");
  EXPECT_EQ(UserTextPrefix("job-3"), "job-3");
}

TEST(QuoteTest, QuotesBackslashesAndUnprintableBytesAreEscaped) {
  EXPECT_EQ(QuoteUserText("a\"b\\c\nd\xff"), "\"a\\\"b\\\\c\\x0ad\\xff\"");
  // A line break cannot forge a log line.
  EXPECT_EQ(UserTextPrefix("x\nW forged"), "x\\x0aW forged");
}

TEST(QuoteTest, LongTextIsCutAndSaysHowLongItWas) {
  const std::string quoted = QuoteUserText(std::string(1 << 20, 'x'));
  EXPECT_EQ(quoted, "\"" + std::string(kMaxQuotedBytes, 'x') + "\"... (1048576 bytes)");
  EXPECT_EQ(QuoteUserText("abcdef", 3), "\"abc\"... (6 bytes)");
}

}  // namespace
}  // namespace ftd
