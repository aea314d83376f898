#include "storage/activation_store.h"

#include <chrono>
#include <future>
#include <memory>
#include <thread>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "storage/activation_codec.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace ftd::storage {
namespace {

using ::ftd::testing::IsOkAndHolds;
using ::ftd::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

SegmentKey Key(char ns, int layer, char dataset = 'd') {
  return SegmentKey{std::string(16, ns), std::string(32, dataset), layer};
}

std::string Value(int64_t example, size_t bytes = 1000) {
  return std::string(bytes, static_cast<char>('a' + example % 26));
}

std::vector<std::pair<int64_t, std::string>> Values(int64_t from, int64_t to, size_t bytes = 1000) {
  std::vector<std::pair<int64_t, std::string>> out;
  for (int64_t e = from; e < to; ++e) out.emplace_back(e, Value(e, bytes));
  return out;
}

class ActivationStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { Open(); }

  void Open(int64_t capacity = int64_t{1} << 30, int64_t tenant_capacity = 0) {
    store_.reset();
    database_.reset();
    ActivationStore::Options options;
    options.capacity_bytes = capacity;
    options.tenant_capacity_bytes = tenant_capacity;
    options.tuning.write_buffer_bytes = 1 << 20;
    options.before_compaction = [this] {
      absl::MutexLock lock(&hold_mu_);
      ++compactions_begun_;
      hold_mu_.Await(absl::Condition(&release_compactions_));
    };
    Database::Options db;
    db.path = dir_.Sub("db");
    db.column_families = {"jobs", ActivationStore::kColumnFamily};
    db.column_family_options[ActivationStore::kColumnFamily] =
        ActivationStore::ColumnFamilyOptions(options.tuning);
    ASSERT_OK_AND_ASSIGN(database_, Database::Open(db));
    ASSERT_OK_AND_ASSIGN(store_, ActivationStore::Open(database_.get(), options));
  }

  v1::CacheSegment Info(const std::string& tenant = "") {
    v1::CacheSegment info;
    info.set_tenant(tenant);
    info.set_dtype(v1::ActivationCache::DTYPE_BF16);
    info.set_base_model("/models/tiny");
    return info;
  }

  void HoldCompactions(bool hold) {
    absl::MutexLock lock(&hold_mu_);
    release_compactions_ = !hold;
  }
  int compactions_begun() {
    absl::MutexLock lock(&hold_mu_);
    return compactions_begun_;
  }

  absl::Mutex hold_mu_;
  bool release_compactions_ ABSL_GUARDED_BY(hold_mu_) = true;
  int compactions_begun_ ABSL_GUARDED_BY(hold_mu_) = 0;
  ftd::testing::TempDir dir_;
  std::unique_ptr<Database> database_;
  std::unique_ptr<ActivationStore> store_;
};

// Dropping a segment compacts its range on the compactor's thread, not under
// the lock every cache read and write takes: a long compaction holds up no
// job's reads or writes. Before the fix the compaction ran in the drop,
// under that lock.
TEST_F(ActivationStoreTest, ACompactionHoldsUpNoReadOrWrite) {
  const SegmentKey dropped = Key('a', 1), used = Key('b', 1);
  ASSERT_OK(store_->Acquire("job-1", dropped, Info()));
  ASSERT_OK(store_->Put(dropped, Values(0, 20)));
  ASSERT_OK(store_->Acquire("job-2", used, Info()));
  ASSERT_OK(store_->Put(used, Values(0, 5)));
  HoldCompactions(true);
  auto drop = std::async(std::launch::async,
                         [&] { return store_->Release("job-1", dropped, /*drop=*/true); });
  ASSERT_EQ(drop.wait_for(std::chrono::seconds(5)), std::future_status::ready)
      << "the drop waited for its compaction";
  EXPECT_OK(drop.get());
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (compactions_begun() == 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ASSERT_EQ(compactions_begun(), 1);  // and it is held there now
  auto work = std::async(std::launch::async, [&] {
    absl::Status put = store_->Put(used, Values(5, 10));
    return put.ok() ? store_->MultiGet({{used, 7}})[0].status() : put;
  });
  const bool answered = work.wait_for(std::chrono::seconds(5)) == std::future_status::ready;
  EXPECT_TRUE(answered) << "a read or write waited for a compaction";
  HoldCompactions(false);
  if (answered) EXPECT_OK(work.get());
}

TEST_F(ActivationStoreTest, StoresReadsAndListsASegmentsEntries) {
  const SegmentKey key = Key('n', 2);
  ASSERT_OK(store_->Acquire("job-1", key, Info()));
  ASSERT_OK(store_->Put(key, {{7, Value(7)}, {3, Value(3)}, {300, Value(300)}}));
  // Another layer and another dataset are other ranges.
  ASSERT_OK(store_->Acquire("job-1", Key('n', 3), Info()));
  ASSERT_OK(store_->Put(Key('n', 3), {{4, Value(4)}}));
  ASSERT_OK(store_->Acquire("job-1", Key('n', 2, 'e'), Info()));
  ASSERT_OK(store_->Put(Key('n', 2, 'e'), {{5, Value(5)}}));

  EXPECT_THAT(store_->ListExamples(key), IsOkAndHolds(ElementsAre(3, 7, 300)));
  std::vector<absl::StatusOr<std::string>> got =
      store_->MultiGet({{key, 7}, {key, 4}, {Key('n', 3), 4}, {key, 300}});
  ASSERT_EQ(got.size(), 4u);
  EXPECT_THAT(got[0], IsOkAndHolds(Value(7)));
  EXPECT_THAT(got[1].status(), StatusIs(absl::StatusCode::kNotFound, HasSubstr("cache entry")));
  EXPECT_THAT(got[2], IsOkAndHolds(Value(4)));
  EXPECT_THAT(got[3], IsOkAndHolds(Value(300)));

  ASSERT_OK_AND_ASSIGN(v1::CacheSegment segment, store_->Segment(key));
  EXPECT_EQ(segment.entries(), 3);
  EXPECT_EQ(segment.bytes(), 3000);
  EXPECT_EQ(segment.layer(), 2);
  EXPECT_EQ(segment.namespace_(), "6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e");  // 'n' x 16
  EXPECT_EQ(segment.base_model(), "/models/tiny");
  EXPECT_THAT(segment.in_use_by(), ElementsAre("job-1"));
  EXPECT_EQ(store_->bytes(), 5000);
}

TEST_F(ActivationStoreTest, SurvivesAReopenWithItsRecords) {
  const SegmentKey key = Key('n', 1);
  ASSERT_OK(store_->Acquire("job-1", key, Info()));
  ASSERT_OK(store_->Put(key, Values(0, 50)));
  ASSERT_OK(store_->Release("job-1", key, /*drop=*/false));
  Open();
  EXPECT_EQ(store_->bytes(), 50000);
  ASSERT_OK_AND_ASSIGN(v1::CacheSegment segment, store_->Segment(key));
  EXPECT_EQ(segment.entries(), 50);
  EXPECT_THAT(segment.in_use_by(), IsEmpty());
  EXPECT_THAT(store_->MultiGet({{key, 49}})[0], IsOkAndHolds(Value(49)));
}

TEST_F(ActivationStoreTest, DropsASegmentOnlyWhenNoOtherJobUsesIt) {
  const SegmentKey key = Key('n', 1);
  ASSERT_OK(store_->Acquire("job-1", key, Info()));
  ASSERT_OK(store_->Acquire("job-2", key, Info()));
  ASSERT_OK(store_->Put(key, Values(0, 10)));
  ASSERT_OK(store_->Release("job-1", key, /*drop=*/true));
  EXPECT_THAT(store_->ListExamples(key), IsOkAndHolds(::testing::SizeIs(10)));
  ASSERT_OK(store_->Release("job-2", key, /*drop=*/true));
  EXPECT_THAT(store_->ListExamples(key), IsOkAndHolds(IsEmpty()));
  EXPECT_THAT(store_->Segment(key).status(), StatusIs(absl::StatusCode::kNotFound, ::testing::_));
  EXPECT_EQ(store_->bytes(), 0);
  Open();
  EXPECT_THAT(store_->Segments(), IsEmpty());
}

TEST_F(ActivationStoreTest, TheCapEvictsTheLeastRecentlyUsedUnusedSegments) {
  Open(/*capacity=*/25000);
  for (char ns : {'a', 'b', 'c'}) {
    ASSERT_OK(store_->Acquire("job-1", Key(ns, 1), Info()));
    ASSERT_OK(store_->Put(Key(ns, 1), Values(0, 8)));  // 8000 bytes each
    ASSERT_OK(store_->Release("job-1", Key(ns, 1), /*drop=*/false));
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  // 'a' is used again: 'b' is now the least recently used.
  ASSERT_OK(store_->Acquire("job-2", Key('a', 1), Info()));
  ASSERT_OK(store_->Release("job-2", Key('a', 1), /*drop=*/false));
  ASSERT_OK(store_->Acquire("job-3", Key('d', 1), Info()));
  ASSERT_OK(store_->Put(Key('d', 1), Values(0, 8)));
  EXPECT_EQ(store_->evictions(), 1);
  EXPECT_THAT(store_->Segment(Key('b', 1)).status(),
              StatusIs(absl::StatusCode::kNotFound, ::testing::_));
  EXPECT_THAT(store_->MultiGet({{Key('b', 1), 0}})[0].status(),
              StatusIs(absl::StatusCode::kNotFound, ::testing::_));
  EXPECT_OK(store_->Segment(Key('a', 1)).status());
  EXPECT_LE(store_->bytes(), 25000);

  // Segments in use are never evicted: past them, the write is refused.
  ASSERT_OK(store_->Acquire("job-4", Key('a', 1), Info()));
  ASSERT_OK(store_->Acquire("job-4", Key('c', 1), Info()));
  EXPECT_THAT(
      store_->Put(Key('d', 1), Values(8, 12)),
      StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("every segment in it is in use")));
}

TEST_F(ActivationStoreTest, ClearKeepsWhatARunningJobUses) {
  ASSERT_OK(store_->Acquire("job-1", Key('a', 1), Info()));
  ASSERT_OK(store_->Put(Key('a', 1), Values(0, 4)));
  ASSERT_OK(store_->Release("job-1", Key('a', 1), false));
  ASSERT_OK(store_->Acquire("job-1", Key('b', 2), Info()));
  ASSERT_OK(store_->Put(Key('b', 2), Values(0, 2)));
  std::vector<v1::CacheSegment> cleared, kept;
  ASSERT_OK(store_->Clear({Key('a', 1), Key('b', 2), Key('z', 9)}, &cleared, &kept));
  ASSERT_EQ(cleared.size(), 1u);
  EXPECT_EQ(cleared[0].layer(), 1);
  EXPECT_EQ(cleared[0].bytes(), 4000);
  ASSERT_EQ(kept.size(), 1u);
  EXPECT_THAT(kept[0].in_use_by(), ElementsAre("job-1"));
  EXPECT_EQ(store_->bytes(), 2000);
}

TEST_F(ActivationStoreTest, WritingASegmentNobodyHoldsIsRefused) {
  EXPECT_THAT(store_->Put(Key('a', 1), Values(0, 1)),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("is not held")));
}

TEST(SegmentKeyTest, ParsesHexAndNamesTheBadField) {
  ASSERT_OK_AND_ASSIGN(SegmentKey key,
                       SegmentKey::FromHex(std::string(32, 'a'), std::string(64, '0'), 3));
  EXPECT_EQ(key.ns, std::string(16, '\xaa'));
  EXPECT_EQ(key.ToString(), "aaaaaaaaaaaaaaaa/000000000000/3");
  EXPECT_THAT(SegmentKey::FromHex("xyz", std::string(64, '0'), 3).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("namespace")));
  EXPECT_THAT(SegmentKey::FromHex(std::string(32, 'a'), "00", 3).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("dataset_fingerprint")));
}

// Each tenant's share: a tenant past it evicts its own least recently used
// segments, never another tenant's, and is refused when all of its own are in
// use; the other tenant writes on.
TEST_F(ActivationStoreTest, ATenantPastItsShareEvictsOnlyItsOwnSegments) {
  Open(/*capacity=*/100000, /*tenant_capacity=*/30000);
  ASSERT_OK(store_->Acquire("job-b", Key('b', 1), Info("bob")));
  ASSERT_OK(store_->Put(Key('b', 1), Values(0, 20)));  // 20,000 bytes of bob's
  ASSERT_OK(store_->Release("job-b", Key('b', 1), /*drop=*/false));
  for (char ns : {'p', 'q', 'r'}) {
    ASSERT_OK(store_->Acquire("job-a", Key(ns, 1), Info("alice")));
    ASSERT_OK(store_->Put(Key(ns, 1), Values(0, 10)));  // 10,000 bytes each
    ASSERT_OK(store_->Release("job-a", Key(ns, 1), /*drop=*/false));
  }
  // A fourth alice segment: her oldest goes, bob's stays though older.
  ASSERT_OK(store_->Acquire("job-a", Key('s', 1), Info("alice")));
  ASSERT_OK(store_->Put(Key('s', 1), Values(0, 10)));
  EXPECT_THAT(store_->Segment(Key('p', 1)).status(),
              StatusIs(absl::StatusCode::kNotFound, ::testing::_));
  ASSERT_OK_AND_ASSIGN(v1::CacheSegment bobs, store_->Segment(Key('b', 1)));
  EXPECT_EQ(bobs.bytes(), 20000);
  EXPECT_EQ(bobs.tenant(), "bob");
  // All her segments in use and her share full: refused, naming the flag.
  ASSERT_OK(store_->Acquire("job-a", Key('q', 1), Info("alice")));
  ASSERT_OK(store_->Acquire("job-a", Key('r', 1), Info("alice")));
  EXPECT_THAT(
      store_->Put(Key('s', 1), Values(10, 20)),
      StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("--cache_max_mb_per_tenant")));
  // Bob writes on.
  ASSERT_OK(store_->Acquire("job-b", Key('b', 1), Info("bob")));
  EXPECT_OK(store_->Put(Key('b', 1), Values(20, 25)));
}

}  // namespace
}  // namespace ftd::storage
