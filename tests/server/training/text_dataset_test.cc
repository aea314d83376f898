#include "server/training/data/text_dataset.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace ftd::training {
namespace {

using ::ftd::testing::StatusIs;
using ::ftd::testing::WriteFile;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

class TextDatasetTest : public ::testing::Test {
 protected:
  v1::Dataset Spec(const std::string& name, const std::string& content) {
    WriteFile(dir_.Sub(name), content);
    v1::Dataset spec;
    spec.set_path(dir_.Sub(name));
    spec.set_format(name.find(".jsonl") != std::string::npos ? v1::DATASET_FORMAT_JSONL
                                                             : v1::DATASET_FORMAT_CSV);
    spec.set_text_column("text");
    spec.set_label_column("label");
    return spec;
  }
  ftd::testing::TempDir dir_;
};

TEST_F(TextDatasetTest, ReadsRfc4180Csv) {
  ASSERT_OK_AND_ASSIGN(
      TextDataset d,
      ReadTextDataset(Spec("a.csv",
                           "\xEF\xBB\xBFid,label,text\r\n1,pos,\"good, \"\"really\"\"\nvery\"\r\n"
                           "2,neg,plain\n\n3,neg,\n")));
  EXPECT_THAT(d.texts, ElementsAre("good, \"really\"\nvery", "plain", ""));
  EXPECT_THAT(d.labels, ElementsAre("pos", "neg", "neg"));
  EXPECT_THAT(d.lines, ElementsAre(2, 4, 6));
  EXPECT_EQ(d.fingerprint.size(), 64u);
}

TEST_F(TextDatasetTest, ReadsJsonl) {
  ASSERT_OK_AND_ASSIGN(TextDataset d,
                       ReadTextDataset(Spec("a.jsonl",
                                            "{\"text\": \"hi\", \"label\": 3}\n\n"
                                            "{\"label\": \"x\", \"text\": \"yo\"}\n")));
  EXPECT_THAT(d.texts, ElementsAre("hi", "yo"));
  EXPECT_THAT(d.labels, ElementsAre("3", "x"));
}

TEST_F(TextDatasetTest, ErrorsNameTheFileTheLineAndTheReason) {
  struct Case {
    std::string name, content, message;
  };
  const std::vector<Case> cases = {
      {"empty.csv", "", ": the file is empty"},
      {"header_only.csv", "text,label\n", ": the file has no rows"},
      {"no_column.csv", "sentence,label\nx,y\n",
       ":1: no column \"text\" in the header (it has 2 columns;"},
      {"ragged.csv", "text,label\na,b\nc\n", ":3: expected 2 fields, got 1"},
      {"open_quote.csv", "text,label\n\"abc,b\n", ":2: a quoted field is never closed"},
      {"stray_quote.csv", "text,label\nab\"c,d\n", ":2: a quote inside an unquoted field"},
      {"no_label.csv", "text,label\na,\n", ":2: the label is empty"},
      {"bad_utf8.csv", "text,label\na,b\n\xff\xfe,c\n", ":3: not valid UTF-8"},
      {"bad.jsonl", "{\"text\":\"a\",\"label\":\"b\"}\n{oops\n", ":2: not a JSON object"},
      {"nokey.jsonl", "{\"text\":\"a\"}\n", ":1: no key \"label\""},
  };
  for (const Case& c : cases) {
    EXPECT_THAT(
        ReadTextDataset(Spec(c.name, c.content)),
        StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(dir_.Sub(c.name) + c.message)))
        << c.name;
  }
}

// Found by fuzz/text_dataset_fuzzer: a JSON number label too large for an
// int64 was cast to one, which is undefined (UBSan stops on it; this test
// fails before the fix in an FTD_SANITIZE build, and the fuzz run's seed
// fuzz/corpus/text_dataset/regression-label-2.2e23 in any).
TEST_F(TextDatasetTest, JsonNumberLabelsOfAnySizeBecomeText) {
  ASSERT_OK_AND_ASSIGN(TextDataset d, ReadTextDataset(Spec("n.jsonl",
                                                           "{\"text\": \"a\", \"label\": 3}\n"
                                                           "{\"text\": \"b\", \"label\": 2.2e23}\n"
                                                           "{\"text\": \"c\", \"label\": -1e300}\n"
                                                           "{\"text\": \"d\", \"label\": 0.5}\n")));
  EXPECT_THAT(d.labels, ElementsAre("3", "2.2e+23", "-1e+300", "0.5"));
}

TEST_F(TextDatasetTest, LabelsComeFromTheTrainingFile) {
  ASSERT_OK_AND_ASSIGN(TextDataset train,
                       ReadTextDataset(Spec("t.csv", "text,label\na,z\nb,m\nc,z\n")));
  ASSERT_OK_AND_ASSIGN(TextDataset valid, ReadTextDataset(Spec("v.csv", "text,label\na,m\nb,q\n")));
  LabelSet labels = LabelSet::FromLabels(train.labels);
  EXPECT_THAT(labels.names(), ElementsAre("m", "z"));
  ASSERT_OK_AND_ASSIGN(auto ids, labels.Encode(train));
  EXPECT_THAT(ids, ElementsAre(1, 0, 1));
  EXPECT_THAT(labels.Encode(valid),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr(dir_.Sub("v.csv") +
                                 ":3: its label is not among the training file's 2 labels")));
  EXPECT_THAT(labels.Encode(valid), StatusIs(absl::StatusCode::kInvalidArgument,
                                             Not(HasSubstr("\"q\""))));  // not its contents
  // A checkpoint's own order wins when it names the same labels.
  EXPECT_THAT(LabelSet::FromLabels(train.labels, {"z", "m"}).names(), ElementsAre("z", "m"));
  EXPECT_THAT(LabelSet::FromLabels(train.labels, {"z", "other"}).names(), ElementsAre("m", "z"));
}

}  // namespace
}  // namespace ftd::training
