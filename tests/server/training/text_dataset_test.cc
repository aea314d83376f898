#include "server/training/data/text_dataset.h"

#include <filesystem>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace ftd::training {
namespace {

using ::ftd::testing::StatusIs;
using ::ftd::testing::WriteFile;
using ::testing::AllOf;
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

// A row nested 100,000 deep (200 KB) cost protobuf's parser minutes: it is
// refused by its depth before the parser sees it, naming the line and the
// limit (not "is it CSV?").
TEST_F(TextDatasetTest, ARowNestedTooDeepIsRefusedNamingTheLineAndTheLimit) {
  const std::string deep = "{\"text\":\"a\",\"label\":\"b\",\"x\":" + std::string(100'000, '[') +
                           std::string(100'000, ']') + "}\n";
  const std::string good = "{\"text\":\"a\",\"label\":\"b\"}\n";
  EXPECT_THAT(
      ReadTextDataset(Spec("deep.jsonl", good + deep)),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr(dir_.Sub("deep.jsonl") + ":2: JSON nested deeper than 64 levels")));
  EXPECT_THAT(DescribeTextDataset(v1::DATASET_FORMAT_JSONL, "first.jsonl", deep),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("first.jsonl:1: JSON nested deeper than 64 levels"),
                             Not(HasSubstr("CSV")))));
}

// What one dataset can make the daemon hold is bounded: a file of short
// fields or long JSON lines costs many times its size once parsed, and a
// sparse file of any size costs no disk.
TEST_F(TextDatasetTest, WhatADatasetMakesTheDaemonHoldIsBounded) {
  std::string wide = "text,label";
  for (size_t i = 3; i <= kMaxDatasetColumns; ++i) wide += ",c" + std::to_string(i);
  const std::string commas(kMaxDatasetColumns, ',');  // one field more than the most
  EXPECT_THAT(ReadTextDataset(Spec("wide_header.csv", wide + ",one_more\na,b\n")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr(":1: more than 1000 fields, the most ftd reads of a record")));
  EXPECT_THAT(ReadTextDataset(Spec("wide_row.csv", "text,label\na,b\n" + commas + "\n")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(":3: more than 1000 fields")));
  // As many as the most is read.
  ASSERT_OK_AND_ASSIGN(
      TextDataset widest,
      ReadTextDataset(
          Spec("widest.csv", wide + "\na,b" + std::string(kMaxDatasetColumns - 2, ',') + "\n")));
  EXPECT_THAT(widest.labels, ElementsAre("b"));
  EXPECT_THAT(
      ReadTextDataset(Spec("long.jsonl", "{\"text\": \"" + std::string(kMaxJsonlLineBytes, 'a') +
                                             "\", \"label\": \"x\"}\n")),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr(":1: longer than 4 MiB, the most ftd reads of a JSONL line")));
  v1::Dataset huge = Spec("huge.csv", "text,label\na,b\n");
  std::filesystem::resize_file(huge.path(), static_cast<uintmax_t>(kMaxDatasetBytes) + 1);
  EXPECT_THAT(ReadTextDataset(huge), StatusIs(absl::StatusCode::kInvalidArgument,
                                              HasSubstr("more than the 2000 MiB ftd reads")));

  // An upload's description keeps its columns: their count and names too.
  EXPECT_THAT(DescribeTextDataset(v1::DATASET_FORMAT_CSV, "long_name.csv",
                                  "text," + std::string(kMaxColumnNameBytes + 1, 'n') + "\na,b\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("long_name.csv:1: a column's name is longer than 256 bytes")));
  std::string keys = "{";
  for (size_t i = 0; i <= kMaxDatasetColumns; ++i) keys += "\"k" + std::to_string(i) + "\": 1,";
  keys.back() = '}';
  EXPECT_THAT(DescribeTextDataset(v1::DATASET_FORMAT_JSONL, "keys.jsonl", keys + "\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("keys.jsonl:1: 1001 columns, more than the 1000 ftd reads")));
  ASSERT_OK_AND_ASSIGN(DatasetShape shape,
                       DescribeTextDataset(v1::DATASET_FORMAT_CSV, "ok.csv", "text,label\na,b\n"));
  EXPECT_THAT(shape.columns, ElementsAre("text", "label"));
  EXPECT_EQ(shape.rows, 1);
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
