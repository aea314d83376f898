// The engine's activation cache on a real RocksDB: the cached path computes
// what the uncached path computes, and bad entries are recomputed.
#include "server/training/cache/activation_cache.h"

#include <torch/torch.h>

#include <memory>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/training/cache/cache_key.h"
#include "server/training/model/bert_config.h"
#include "storage/activation_codec.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"
#include "tests/testing/tiny_bert.h"

namespace ftd::training {
namespace {

using storage::ActivationDtype;
using ::testing::HasSubstr;

constexpr int kLayers = 3;
// Six examples of different lengths (token ids of the tiny vocabulary).
const std::vector<std::vector<int64_t>> kExamples = {{2, 10, 11, 12, 3},         {2, 13, 3},
                                                     {2, 14, 15, 16, 17, 18, 3}, {2, 19, 20, 3},
                                                     {2, 21, 22, 23, 24, 3},     {2, 25, 3}};

struct Batch {
  torch::Tensor ids, bias;
};

Batch MakeBatch(const std::vector<int64_t>& rows) {
  size_t longest = 0;
  for (int64_t r : rows) longest = std::max(longest, kExamples[r].size());
  torch::Tensor ids = torch::zeros(
      {static_cast<int64_t>(rows.size()), static_cast<int64_t>(longest)}, torch::kLong);
  torch::Tensor mask = torch::zeros_like(ids);
  for (size_t i = 0; i < rows.size(); ++i) {
    for (size_t t = 0; t < kExamples[rows[i]].size(); ++t) {
      ids[i][t] = kExamples[rows[i]][t];
      mask[i][t] = 1;
    }
  }
  return {ids, BertClassifierImpl::MaskBias(mask, torch::kFloat)};
}

class ActivationCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ftd::testing::WriteTinyBert(dir_.Sub("model"), kLayers);
    ASSERT_OK_AND_ASSIGN(BertConfig config, BertConfig::FromModelFolder(dir_.Sub("model")));
    torch::manual_seed(7);
    model_ = BertClassifier(config, 3);
    model_->eval();
    OpenStore(int64_t{1} << 30);
  }

  void OpenStore(int64_t capacity) {
    store_.reset();
    database_.reset();
    storage::ActivationStore::Options options;
    options.capacity_bytes = capacity;
    storage::Database::Options db;
    db.path = dir_.Sub("db");
    db.column_families = {storage::ActivationStore::kColumnFamily};
    db.column_family_options[storage::ActivationStore::kColumnFamily] =
        storage::ActivationStore::ColumnFamilyOptions(options.tuning);
    ASSERT_OK_AND_ASSIGN(database_, storage::Database::Open(db));
    ASSERT_OK_AND_ASSIGN(store_, storage::ActivationStore::Open(database_.get(), options));
  }

  std::unique_ptr<JobActivationCache> NewCache(ActivationDtype dtype,
                                               const std::string& job = "job-1") {
    JobActivationCache::Options options;
    options.store = store_.get();
    options.job_id = job;
    options.dataset_fingerprint = std::string(64, 'f');
    options.inputs_digest = "inputs";
    options.base_model = dir_.Sub("model");
    options.dtype = dtype;
    for (const auto& e : kExamples) options.lengths.push_back(static_cast<int64_t>(e.size()));
    options.hidden_size = 32;
    return std::make_unique<JobActivationCache>(std::move(options));
  }

  std::vector<std::string> Digests(int depth) {
    std::vector<std::string> out = {ParameterDigest(*model_->bert->embeddings)};
    for (int i = 0; i < depth; ++i) out.push_back(ParameterDigest(model_->layer(i)));
    return out;
  }

  // Logits from the input of layer `depth`.
  torch::Tensor Logits(const torch::Tensor& hidden, const Batch& b, int depth) {
    torch::NoGradGuard no_grad;
    return model_->Head(model_->RunLayers(hidden, b.bias, depth, kLayers));
  }
  // The uncached input of layer `depth`, as the trainer computes it.
  torch::Tensor Reference(const Batch& b, int depth) {
    torch::NoGradGuard no_grad;
    return model_->RunPrefix(model_->Embed(b.ids), b.bias, 0, depth);
  }

  // One pass over `order` in batches of `batch_size` at the cache's depth:
  // the cached path's logits, batch by batch.
  std::vector<torch::Tensor> Epoch(JobActivationCache& cache, const std::vector<int64_t>& order,
                                   int64_t batch_size, bool store = true) {
    cache.StartEpoch(order, batch_size);
    std::vector<torch::Tensor> logits;
    for (int64_t b = 0; b * batch_size < static_cast<int64_t>(order.size()); ++b) {
      std::vector<int64_t> rows(
          order.begin() + b * batch_size,
          order.begin() +
              std::min<int64_t>((b + 1) * batch_size, static_cast<int64_t>(order.size())));
      std::vector<CachedActivation> cached = cache.Take(b);
      Batch batch = MakeBatch(rows);
      torch::Tensor hidden =
          PrefixOutput(*model_, batch.ids, batch.bias, cached, cache.depth(), torch::kCPU);
      if (store) cache.Store(rows.data(), rows.size(), cached, hidden);
      logits.push_back(Logits(hidden, batch, cache.depth()));
    }
    return logits;
  }

  ftd::testing::TempDir dir_;
  BertClassifier model_{nullptr};
  std::unique_ptr<storage::Database> database_;
  std::unique_ptr<storage::ActivationStore> store_;
};

// Tenants never share entries: the inputs digest (and so the namespace)
// differs by tenant, and "" is the digest of before tenants.
TEST(InputsDigestTest, KeepsTenantsApart) {
  const std::vector<std::vector<int32_t>> rows = {{2, 7, 3}, {2, 9, 3}};
  const std::string none = InputsDigest(rows, "{}", "fp32");
  EXPECT_EQ(InputsDigest(rows, "{}", "fp32", ""), none);
  EXPECT_NE(InputsDigest(rows, "{}", "fp32", "alice"), none);
  EXPECT_NE(InputsDigest(rows, "{}", "fp32", "alice"), InputsDigest(rows, "{}", "fp32", "bob"));
  EXPECT_EQ(InputsDigest(rows, "{}", "fp32", "alice"), InputsDigest(rows, "{}", "fp32", "alice"));
  EXPECT_NE(InputsDigest(rows, "{}", "bf16-autocast"), none);
}

TEST_F(ActivationCacheTest, CachedLogitsEqualUncachedExactlyInFp32) {
  const std::vector<int64_t> order = {0, 1, 2, 3, 4, 5};
  const Batch batch = MakeBatch(order);
  const torch::Tensor expected = Logits(Reference(batch, 2), batch, 2);
  auto cache = NewCache(ActivationDtype::kFp32);
  cache->SetDepth(Digests(2));

  std::vector<torch::Tensor> first = Epoch(*cache, order, 6);  // computes and stores
  EXPECT_TRUE(torch::equal(first[0], expected));
  v1::CacheReport r1 = cache->EndEpoch(1);
  EXPECT_EQ(r1.epoch().misses(), 6);
  EXPECT_EQ(r1.epoch().entries_written(), 6);

  std::vector<torch::Tensor> second = Epoch(*cache, order, 6);  // reads
  EXPECT_TRUE(torch::equal(second[0], expected))
      << (second[0] - expected).abs().max().item<float>();
  v1::CacheReport r2 = cache->EndEpoch(2);
  EXPECT_EQ(r2.epoch().hits(), 6);
  EXPECT_EQ(r2.epoch().misses(), 0);
  EXPECT_EQ(r2.epoch().frozen_layers(), 2);
  EXPECT_GT(r2.epoch().bytes_read(), 0);
  EXPECT_EQ(r2.totals().examples(), 12);
  ASSERT_EQ(r2.segments_size(), 1);
  EXPECT_EQ(r2.segments(0).entries(), 6);
  // 24 header bytes + tokens x 32 x 4 per example.
  int64_t tokens = 0;
  for (const auto& e : kExamples) tokens += static_cast<int64_t>(e.size());
  EXPECT_EQ(r2.segments(0).bytes(), 6 * 24 + tokens * 32 * 4);
}

TEST_F(ActivationCacheTest, Bf16EntriesAreWithinBf16RoundingAndHalfTheSize) {
  const std::vector<int64_t> order = {0, 1, 2, 3, 4, 5};
  const Batch batch = MakeBatch(order);
  const torch::Tensor reference = Reference(batch, 1);
  const torch::Tensor expected = Logits(reference, batch, 1);
  auto cache = NewCache(ActivationDtype::kBf16);
  cache->SetDepth(Digests(1));
  Epoch(*cache, order, 3);
  cache->EndEpoch(1);
  std::vector<torch::Tensor> cached = Epoch(*cache, order, 6, /*store=*/false);
  v1::CacheReport report = cache->EndEpoch(2);
  EXPECT_EQ(report.epoch().hits(), 6);
  EXPECT_FALSE(torch::equal(cached[0], expected)) << "bf16 should round";
  EXPECT_TRUE(torch::allclose(cached[0], expected, /*rtol=*/2e-2, /*atol=*/2e-2))
      << (cached[0] - expected).abs().max().item<float>();
  int64_t tokens = 0;
  for (const auto& e : kExamples) tokens += static_cast<int64_t>(e.size());
  EXPECT_EQ(report.segments(0).bytes(), 6 * 24 + tokens * 32 * 2);
}

TEST_F(ActivationCacheTest, AGrowingPrefixStartsFromTheShallowerEntriesAndDropsThem) {
  auto cache = NewCache(ActivationDtype::kFp32);
  cache->SetDepth(Digests(1));
  // Only the first batch gets stored at depth 1.
  cache->StartEpoch({0, 1, 2, 3, 4, 5}, 3);
  {
    std::vector<CachedActivation> cached = cache->Take(0);
    Batch b = MakeBatch({0, 1, 2});
    const std::vector<int64_t> rows = {0, 1, 2};
    cache->Store(rows.data(), 3, cached,
                 PrefixOutput(*model_, b.ids, b.bias, cached, 1, torch::kCPU));
    cache->Take(1);
  }
  cache->EndEpoch(1);
  cache->SetDepth(Digests(2));
  const std::vector<int64_t> order = {0, 3, 1, 4, 2, 5};
  std::vector<torch::Tensor> logits = Epoch(*cache, order, 3);
  for (int b = 0; b < 2; ++b) {
    Batch batch = MakeBatch({order[3 * b], order[3 * b + 1], order[3 * b + 2]});
    torch::Tensor expected = Logits(Reference(batch, 2), batch, 2);
    EXPECT_TRUE(torch::allclose(logits[b], expected, 1e-5, 1e-5))
        << (logits[b] - expected).abs().max().item<float>();
  }
  v1::CacheReport report = cache->EndEpoch(2);
  EXPECT_EQ(report.epoch().partial_hits(), 3);
  EXPECT_EQ(report.epoch().misses(), 3);
  EXPECT_EQ(report.epoch().entries_written(), 6);
  // Every example moved on to depth 2: the depth-1 entries are gone.
  std::vector<v1::CacheSegment> segments = store_->Segments();
  ASSERT_EQ(segments.size(), 1u);
  EXPECT_EQ(segments[0].layer(), 2);
  EXPECT_EQ(segments[0].entries(), 6);
  Epoch(*cache, order, 3);
  EXPECT_EQ(cache->EndEpoch(3).epoch().hits(), 6);
}

TEST_F(ActivationCacheTest, CorruptEntriesAreRecomputedCountedAndRewritten) {
  const std::vector<int64_t> order = {0, 1, 2, 3, 4, 5};
  const Batch batch = MakeBatch(order);
  const torch::Tensor expected = Logits(Reference(batch, 1), batch, 1);
  auto cache = NewCache(ActivationDtype::kFp32);
  cache->SetDepth(Digests(1));
  Epoch(*cache, order, 6);
  cache->EndEpoch(1);

  // Damage two entries the way a disk or a bug could: a flipped payload bit,
  // and a well-formed value of the wrong shape.
  const v1::CacheSegment segment = store_->Segments()[0];
  ASSERT_OK_AND_ASSIGN(
      storage::SegmentKey key,
      storage::SegmentKey::FromHex(segment.namespace_(), segment.dataset_fingerprint(), 1));
  std::string flipped = *store_->MultiGet({{key, 2}})[0];
  flipped[100] ^= 0x04;
  std::vector<float> wrong(3 * 32, 1.0f);
  ASSERT_OK(store_->Acquire("vandal", key, segment));
  ASSERT_OK(store_->Put(
      key,
      {{2, flipped}, {4, storage::EncodeActivation(ActivationDtype::kFp32, 3, 32, wrong.data())}}));

  std::vector<torch::Tensor> logits = Epoch(*cache, order, 6);
  EXPECT_TRUE(torch::allclose(logits[0], expected, 1e-6, 1e-6))
      << (logits[0] - expected).abs().max().item<float>();
  v1::CacheReport report = cache->EndEpoch(2);
  EXPECT_EQ(report.epoch().corrupt(), 2);
  EXPECT_EQ(report.epoch().hits(), 4);
  EXPECT_EQ(report.epoch().misses(), 2);
  EXPECT_EQ(report.epoch().entries_written(), 2);
  // Written again: the next epoch reads all of them.
  Epoch(*cache, order, 6);
  report = cache->EndEpoch(3);
  EXPECT_EQ(report.epoch().hits(), 6);
  EXPECT_EQ(report.epoch().corrupt(), 0);
}

TEST_F(ActivationCacheTest, ASecondJobWithTheSamePrefixReadsTheFirstsEntries) {
  const std::vector<int64_t> order = {5, 4, 3, 2, 1, 0};
  {
    auto first = NewCache(ActivationDtype::kBf16, "job-1");
    first->SetDepth(Digests(2));
    Epoch(*first, order, 4);
  }
  OpenStore(int64_t{1} << 30);  // as after a restart
  auto second = NewCache(ActivationDtype::kBf16, "job-2");
  second->SetDepth(Digests(2));
  Epoch(*second, order, 4);
  EXPECT_EQ(second->EndEpoch(1).epoch().hits(), 6);
  // Other weights are another namespace: nothing to read.
  {
    torch::NoGradGuard no_grad;
    model_->layer(0).output->dense->bias.add_(0.5);
  }
  auto third = NewCache(ActivationDtype::kBf16, "job-3");
  third->SetDepth(Digests(2));
  Epoch(*third, order, 4);
  EXPECT_EQ(third->EndEpoch(1).epoch().misses(), 6);
}

TEST_F(ActivationCacheTest, OverTheCapCachingTurnsOffAndTrainingGoesOn) {
  OpenStore(/*capacity=*/500);
  const std::vector<int64_t> order = {0, 1, 2, 3, 4, 5};
  const Batch batch = MakeBatch(order);
  const torch::Tensor expected = Logits(Reference(batch, 1), batch, 1);
  auto cache = NewCache(ActivationDtype::kFp32);
  cache->SetDepth(Digests(1));
  std::vector<torch::Tensor> logits = Epoch(*cache, order, 6);
  EXPECT_TRUE(torch::equal(logits[0], expected));
  EXPECT_FALSE(cache->enabled());
  EXPECT_THAT(cache->disabled_reason(), HasSubstr("--cache_max_mb"));
  v1::CacheReport report;
  ASSERT_TRUE(cache->TakeDisabledReport(&report));
  EXPECT_THAT(report.disabled_reason(), HasSubstr("training goes on"));
  EXPECT_FALSE(cache->TakeDisabledReport(&report));  // once
  // Later epochs compute everything.
  logits = Epoch(*cache, order, 6);
  EXPECT_TRUE(torch::equal(logits[0], expected));
}

}  // namespace
}  // namespace ftd::training
