#include "server/training/tokenizer/wordpiece_tokenizer.h"

#include <fstream>

#include "gmock/gmock.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace ftd::training {
namespace {

using ::testing::ElementsAre;

std::vector<int32_t> Ids(const google::protobuf::Value& list) {
  std::vector<int32_t> ids;
  for (const auto& v : list.list_value().values())
    ids.push_back(static_cast<int32_t>(v.number_value()));
  return ids;
}

// Hugging Face transformers' BertTokenizer on 1,041 texts (dataset rows and
// unicode edge cases), with and without truncation to 64.
TEST(WordPieceTokenizerTest, MatchesHuggingFaceOnTheGoldenTexts) {
  ASSERT_OK_AND_ASSIGN(
      WordPieceTokenizer tokenizer,
      WordPieceTokenizer::FromModelFolder(FTD_SOURCE_DIR "/examples/models/bert-mini-6l-256h"));
  std::ifstream in(FTD_SOURCE_DIR "/tests/testdata/golden/tokenizer_golden.jsonl");
  ASSERT_TRUE(in.good());
  std::string line;
  int checked = 0, mismatched = 0;
  while (std::getline(in, line)) {
    google::protobuf::Struct row;
    ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(line, &row).ok()) << line;
    const std::string& text = row.fields().at("text").string_value();
    const std::vector<int32_t> full = Ids(row.fields().at("input_ids"));
    const std::vector<int32_t> max64 = Ids(row.fields().at("input_ids_max64"));
    std::vector<int32_t> got_full = tokenizer.Encode(text, 0);
    std::vector<int32_t> got_64 = tokenizer.Encode(text, 64);
    if (got_full != full || got_64 != max64) {
      ++mismatched;
      ADD_FAILURE() << "text #" << checked << ": " << ::testing::PrintToString(text)
                    << "\n  expected " << ::testing::PrintToString(full) << "\n  got      "
                    << ::testing::PrintToString(got_full);
      if (mismatched > 10) break;
    }
    ++checked;
  }
  EXPECT_EQ(checked, 1041);
  EXPECT_EQ(mismatched, 0);
}

TEST(WordPieceTokenizerTest, SplitsPunctuationAndContinuesWordPieces) {
  ASSERT_OK_AND_ASSIGN(WordPieceTokenizer t,
                       WordPieceTokenizer::Create({"[PAD]", "[UNK]", "[CLS]", "[SEP]", "un",
                                                   "##aff", "##able", "hello", ",", "!", "cafe"},
                                                  {}));
  EXPECT_THAT(t.Tokenize("UnAffable, HELLO!"),
              ElementsAre("un", "##aff", "##able", ",", "hello", "!"));
  EXPECT_THAT(t.Tokenize("Café\tunknownword"), ElementsAre("cafe", "[UNK]"));
  EXPECT_THAT(t.Encode("hello hello hello", 4), ElementsAre(2, 7, 7, 3));
  EXPECT_THAT(t.Tokenize(std::string(101, 'a')), ElementsAre("[UNK]"));
}

// tokenizer_config.json nested 100,000 deep is refused by its depth before
// the JSON parser sees it (which would take minutes).
TEST(WordPieceTokenizerTest, AConfigNestedTooDeepIsRefusedNamingTheFileAndTheLimit) {
  const std::string deep =
      "{\"do_lower_case\":" + std::string(100'000, '[') + std::string(100'000, ']') + "}";
  EXPECT_THAT(WordPieceTokenizer::FromText("[PAD]\n[UNK]\n[CLS]\n[SEP]\n", deep, "vocab.txt",
                                           "m/tokenizer_config.json"),
              ftd::testing::StatusIs(
                  absl::StatusCode::kInvalidArgument,
                  ::testing::HasSubstr(
                      "m/tokenizer_config.json: line 1: JSON nested deeper than 64 levels")));
}

TEST(WordPieceTokenizerTest, AVocabularyWithoutSpecialTokensIsRejected) {
  EXPECT_THAT(
      WordPieceTokenizer::Create({"a", "b"}, {}),
      ftd::testing::StatusIs(absl::StatusCode::kInvalidArgument, ::testing::HasSubstr("[PAD]")));
  EXPECT_THAT(
      WordPieceTokenizer::FromModelFolder("/nonexistent"),
      ftd::testing::StatusIs(absl::StatusCode::kNotFound, ::testing::HasSubstr("vocab.txt")));
}

}  // namespace
}  // namespace ftd::training
