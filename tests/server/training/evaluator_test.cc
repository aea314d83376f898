// The evaluator, with and without the validation rows' prefix outputs from
// the activation cache (a real RocksDB).
#include "server/training/engine/evaluator.h"

#include <torch/torch.h>

#include <memory>

#include "gtest/gtest.h"
#include "server/training/model/bert_config.h"
#include "storage/activation_store.h"
#include "tests/testing/activation_store.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"
#include "tests/testing/tiny_bert.h"

namespace ftd::training {
namespace {

TEST(EvaluatorTest, StartingFromTheCachedPrefixGivesTheSameResult) {
  ftd::testing::TempDir dir;
  ftd::testing::WriteTinyBert(dir.Sub("model"), 3);
  ASSERT_OK_AND_ASSIGN(BertConfig config, BertConfig::FromModelFolder(dir.Sub("model")));
  torch::manual_seed(11);
  BertClassifier model(config, 3);
  EncodedData data;
  for (int i = 0; i < 37; ++i) {
    std::vector<int32_t> row = {2};
    for (int t = 0; t < 3 + i % 9; ++t) row.push_back(5 + (i * 7 + t * 3) % 10);
    row.push_back(3);
    data.ids.push_back(row);
    data.labels.push_back(i % 3);
  }
  const EvalResult plain = Evaluate(*model, data, 8, 0, torch::kCPU);

  ASSERT_OK_AND_ASSIGN(ftd::testing::TestActivationStore opened,
                       ftd::testing::OpenActivationStore(dir.Sub("db")));
  storage::ActivationStore* store = opened.store.get();
  JobActivationCache::Options options;
  options.store = store;
  options.job_id = "job-1";
  options.dataset_fingerprint = std::string(64, 'e');
  options.inputs_digest = "validation";
  options.base_model = dir.Sub("model");
  options.dtype = storage::ActivationDtype::kFp32;
  for (const auto& row : data.ids) options.lengths.push_back(static_cast<int64_t>(row.size()));
  options.hidden_size = config.hidden_size;
  JobActivationCache cache(std::move(options));
  const int frozen = 2;
  cache.SetDepth({ParameterDigest(*model->bert->embeddings), ParameterDigest(model->layer(0)),
                  ParameterDigest(model->layer(1))});

  const EvalResult first = Evaluate(*model, data, 8, 0, torch::kCPU, &cache, frozen);
  EXPECT_EQ(first.rows_from_cache, 0);
  const EvalResult second = Evaluate(*model, data, 8, 0, torch::kCPU, &cache, frozen);
  EXPECT_EQ(second.rows_from_cache, 37);
  for (const EvalResult& r : {first, second}) {
    EXPECT_DOUBLE_EQ(r.accuracy, plain.accuracy);
    EXPECT_NEAR(r.loss, plain.loss, 1e-6);
    EXPECT_NEAR(r.macro_f1, plain.macro_f1, 1e-12);
  }
}

}  // namespace
}  // namespace ftd::training
