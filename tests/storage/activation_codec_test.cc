#include "storage/activation_codec.h"

#include <cstring>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace ftd::storage {
namespace {

using ::ftd::testing::StatusIs;
using ::testing::HasSubstr;

std::string Fp32Value(uint32_t tokens, uint32_t hidden) {
  std::vector<float> data(tokens * hidden);
  for (size_t i = 0; i < data.size(); ++i) data[i] = 0.25f * static_cast<float>(i) - 3.0f;
  return EncodeActivation(ActivationDtype::kFp32, tokens, hidden, data.data());
}

TEST(ActivationCodecTest, RoundTripsBothDtypes) {
  ASSERT_OK_AND_ASSIGN(ActivationView fp32, DecodeActivation(Fp32Value(3, 4)));
  EXPECT_EQ(fp32.dtype, ActivationDtype::kFp32);
  EXPECT_EQ(fp32.tokens, 3u);
  EXPECT_EQ(fp32.hidden, 4u);
  float v[12];
  std::memcpy(v, fp32.data, sizeof(v));
  EXPECT_EQ(v[0], -3.0f);
  EXPECT_EQ(v[11], -0.25f);

  const std::vector<uint16_t> bf16 = {0x3f80, 0xc000};  // 1.0, -2.0
  const std::string value = EncodeActivation(ActivationDtype::kBf16, 1, 2, bf16.data());
  EXPECT_EQ(value.size(), kActivationHeaderSize + 4);
  ASSERT_OK_AND_ASSIGN(ActivationView view, DecodeActivation(value));
  EXPECT_EQ(view.dtype, ActivationDtype::kBf16);
  uint16_t back[2];
  std::memcpy(back, view.data, sizeof(back));
  EXPECT_EQ(back[0], 0x3f80);
  EXPECT_EQ(back[1], 0xc000);
}

TEST(ActivationCodecTest, EveryKindOfDamageIsDataLossWithItsReason) {
  const std::string good = Fp32Value(2, 3);
  struct Case {
    std::string value;
    std::string reason;
  };
  std::string flipped = good;
  flipped[kActivationHeaderSize + 5] ^= 0x10;
  std::string magic = good;
  magic[0] = 'X';
  std::string version = good;
  version[4] = 9;
  std::string dtype = good;
  dtype[5] = 7;
  std::string shape = good;
  shape[8] = 3;  // 3 tokens claimed, 2 stored
  std::string checksum = good;
  checksum[16] ^= 1;
  const std::vector<Case> cases = {
      {good.substr(0, 10), "shorter than its header"},
      {good.substr(0, good.size() - 4), "need 24 bytes"},
      {good + "x", "the value has 25"},
      {flipped, "checksum mismatch"},
      {magic, "bad magic"},
      {version, "unknown format version 9"},
      {dtype, "unknown dtype 7"},
      {shape, "3 x 3 values need 36 bytes"},
      {checksum, "checksum mismatch"},
  };
  for (const Case& c : cases) {
    EXPECT_THAT(DecodeActivation(c.value).status(),
                StatusIs(absl::StatusCode::kDataLoss, HasSubstr(c.reason)))
        << c.reason;
  }
}

}  // namespace
}  // namespace ftd::storage
