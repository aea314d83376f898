#include "server/training/model/safetensors.h"

#include <cstring>
#include <filesystem>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace ftd::training {
namespace {

using ::ftd::testing::StatusIs;
using ::ftd::testing::WriteFile;
using ::testing::AllOf;
using ::testing::HasSubstr;

std::string WithHeader(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + header + data;
}

TEST(SafetensorsTest, WritesAndReadsBack) {
  ftd::testing::TempDir dir;
  std::vector<float> a = {1, 2, 3, 4, 5, 6};
  std::vector<uint16_t> b = {0x3c00, 0x4000};  // F16 1.0, 2.0
  ASSERT_OK(WriteSafetensors(
      dir.Sub("t.safetensors"),
      {{"a", DType::kF32, {2, 3}, std::string_view(reinterpret_cast<char*>(a.data()), 24)},
       {"b", DType::kF16, {2}, std::string_view(reinterpret_cast<char*>(b.data()), 4)}},
      {{"format", "pt"}}));
  ASSERT_OK_AND_ASSIGN(auto file, SafetensorsFile::Open(dir.Sub("t.safetensors")));
  ASSERT_EQ(file->tensors().size(), 2u);
  const TensorInfo* info = file->Find("a");
  ASSERT_NE(info, nullptr);
  EXPECT_EQ(info->shape, (std::vector<int64_t>{2, 3}));
  std::vector<float> read(6);
  std::memcpy(read.data(), file->Data(*info).data(), 24);
  EXPECT_EQ(read, a);
  EXPECT_EQ(file->Find("b")->dtype, DType::kF16);
  EXPECT_EQ(file->metadata().at("format"), "pt");
  EXPECT_EQ(file->Find("c"), nullptr);
}

// A model named by path is a user's file, which may be truncated while a
// job loads it: Read() then fails with the reason, where copying from the
// file's mapping would stop the daemon with SIGBUS.
TEST(SafetensorsTest, AFileTruncatedAfterItWasOpenedIsAnErrorNotSigbus) {
  ftd::testing::TempDir dir;
  std::vector<float> a(4096, 1.5f);  // 16 KiB: pages past the first
  ASSERT_OK(WriteSafetensors(
      dir.Sub("t.safetensors"),
      {{"a", DType::kF32, {4096}, std::string_view(reinterpret_cast<char*>(a.data()), 16384)}},
      {}));
  ASSERT_OK_AND_ASSIGN(auto file, SafetensorsFile::Open(dir.Sub("t.safetensors")));
  std::vector<float> read(4096);
  ASSERT_OK(file->Read(*file->Find("a"), read.data()));
  EXPECT_EQ(read, a);
  std::filesystem::resize_file(dir.Sub("t.safetensors"), 100);
  EXPECT_THAT(file->Read(*file->Find("a"), read.data()),
              StatusIs(absl::StatusCode::kDataLoss,
                       AllOf(HasSubstr("t.safetensors"), HasSubstr("truncated"))));
}

TEST(SafetensorsTest, EveryKindOfDamageIsAClearErrorNotACrash) {
  ftd::testing::TempDir dir;
  struct Case {
    std::string name;
    std::string bytes;
    absl::StatusCode code;
    std::string message;
  };
  const std::string good_entry = R"("w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
  const std::vector<Case> cases = {
      {"short", "abc", absl::StatusCode::kDataLoss, "fewer than the 8-byte header length"},
      {"huge_header", std::string("\xff\xff\xff\xff\xff\xff\xff\x00", 8) + "{}",
       absl::StatusCode::kDataLoss, "implausible"},
      // 2^64 - 1: refused by its size, before anything is allocated.
      {"max_header", std::string(8, '\xff') + "{}", absl::StatusCode::kDataLoss, "implausible"},
      // Nested 100,000 deep: refused by its depth before the JSON parser.
      {"deep_header",
       WithHeader("{\"w\":" + std::string(100'000, '[') + std::string(100'000, ']') + "}", ""),
       absl::StatusCode::kDataLoss, "the header: line 1: JSON nested deeper than 64 levels"},
      {"truncated_header", WithHeader("{" + good_entry + "}", "").substr(0, 20),
       absl::StatusCode::kDataLoss, "truncated"},
      {"not_json", WithHeader("{nope", ""), absl::StatusCode::kDataLoss, "not a JSON object"},
      {"no_dtype", WithHeader(R"({"w":{"shape":[2],"data_offsets":[0,8]}})", std::string(8, 'x')),
       absl::StatusCode::kDataLoss, "no dtype"},
      {"odd_dtype",
       WithHeader(R"({"w":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]}})", "xx"),
       absl::StatusCode::kUnimplemented, "F8_E4M3"},
      {"bad_shape",
       WithHeader(R"({"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})",
                  std::string(8, 'x')),
       absl::StatusCode::kDataLoss, "bad shape"},
      {"outside", WithHeader("{" + good_entry + "}", std::string(4, 'x')),
       absl::StatusCode::kDataLoss, "ends at byte 8 but the data has 4 bytes"},
      {"size_mismatch",
       WithHeader(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", std::string(8, 'x')),
       absl::StatusCode::kDataLoss, "need 12"},
      {"reversed",
       WithHeader(R"({"w":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})", std::string(8, 'x')),
       absl::StatusCode::kDataLoss, "bad data_offsets"},
      {"overlap",
       WithHeader(
           R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
           std::string(8, 'x')),
       absl::StatusCode::kDataLoss, "overlap"},
  };
  for (const Case& c : cases) {
    const std::string path = dir.Sub(c.name + ".safetensors");
    WriteFile(path, c.bytes);
    EXPECT_THAT(SafetensorsFile::Open(path),
                StatusIs(c.code, ::testing::AllOf(HasSubstr(path), HasSubstr(c.message))))
        << c.name;
  }
  EXPECT_THAT(SafetensorsFile::Open(dir.Sub("missing")),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("missing")));
}

}  // namespace
}  // namespace ftd::training
