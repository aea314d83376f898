// Micro-benchmark: the activation store with values in blob files against
// values in the SST files (RocksDB's defaults otherwise), on an epoch's worth
// of activations.
//
//   build/bench/cache_store_bench [--examples=N] [--bytes=B] [--batch=32]
//
// Per layout: writing the entries in training-batch WriteBatches, a full
// compaction (what a busy store pays again and again), reading an epoch in a
// shuffled order with MultiGet per batch, listing the segment, disk use.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <numeric>
#include <random>
#include <string>

#include "storage/activation_store.h"
#include "storage/database.h"

using namespace ftd::storage;
using Clock = std::chrono::steady_clock;

static double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

static uint64_t DiskBytes(const std::string& dir) {
  uint64_t total = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.is_regular_file()) total += e.file_size();
  }
  return total;
}

int main(int argc, char** argv) {
  int examples = 6000, bytes = 9344, batch = 32;
  for (int i = 1; i < argc; ++i) {
    if (std::sscanf(argv[i], "--examples=%d", &examples) == 1) continue;
    if (std::sscanf(argv[i], "--bytes=%d", &bytes) == 1) continue;
    if (std::sscanf(argv[i], "--batch=%d", &batch) == 1) continue;
  }
  std::printf("%d entries of %d bytes (%.1f MiB), batches of %d\n", examples, bytes,
              examples * static_cast<double>(bytes) / (1 << 20), batch);
  std::printf("%-12s %10s %12s %14s %14s %10s\n", "layout", "write s", "compact s", "read ms/batch",
              "list ms", "disk MiB");
  std::mt19937_64 rng(1);
  std::string payload(bytes, '\0');
  for (char& c : payload) c = static_cast<char>(rng());
  for (bool blobs : {true, false}) {
    const std::string dir = std::filesystem::temp_directory_path() / "ftd-cache-store-bench";
    std::filesystem::remove_all(dir);
    ActivationStore::Options options;
    options.tuning.blob_files = blobs;
    Database::Options db;
    db.path = dir;
    db.column_families = {ActivationStore::kColumnFamily};
    db.column_family_options[ActivationStore::kColumnFamily] =
        ActivationStore::ColumnFamilyOptions(options.tuning);
    auto database = Database::Open(db);
    if (!database.ok()) return 1;
    auto store = ActivationStore::Open(database->get(), options);
    if (!store.ok()) return 1;
    const SegmentKey key{std::string(16, 'n'), std::string(32, 'd'), 4};
    if (!(*store)->Acquire("bench", key, {}).ok()) return 1;

    auto start = Clock::now();
    for (int s = 0; s < examples; s += batch) {
      std::vector<std::pair<int64_t, std::string>> values;
      for (int e = s; e < std::min(examples, s + batch); ++e) {
        payload[e % bytes] ^= 1;  // every value different
        values.emplace_back(e, payload);
      }
      if (!(*store)->Put(key, values).ok()) return 1;
    }
    if (!(*store)->Flush().ok()) return 1;
    const double write = Seconds(start);

    start = Clock::now();
    {
      const Database::Session session = (*database)->session();
      session.db()->CompactRange(rocksdb::CompactRangeOptions(),
                                 session.cf(ActivationStore::kColumnFamily), nullptr, nullptr);
    }
    const double compact = Seconds(start);

    std::vector<int64_t> order(examples);
    std::iota(order.begin(), order.end(), 0);
    std::shuffle(order.begin(), order.end(), rng);
    start = Clock::now();
    size_t read_bytes = 0;
    for (int s = 0; s < examples; s += batch) {
      std::vector<std::pair<SegmentKey, int64_t>> keys;
      for (int e = s; e < std::min(examples, s + batch); ++e) keys.emplace_back(key, order[e]);
      for (auto& v : (*store)->MultiGet(keys)) read_bytes += v.ok() ? v->size() : 0;
    }
    const double read_ms = 1000 * Seconds(start) / ((examples + batch - 1) / batch);
    if (read_bytes != static_cast<size_t>(examples) * bytes) return 1;

    start = Clock::now();
    auto listed = (*store)->ListExamples(key);
    const double list_ms = 1000 * Seconds(start);
    if (!listed.ok() || listed->size() != static_cast<size_t>(examples)) return 1;

    std::printf("%-12s %10.2f %12.2f %14.2f %14.2f %10.1f\n", blobs ? "blob files" : "in SSTs",
                write, compact, read_ms, list_ms, DiskBytes(dir) / 1048576.0);
    store->reset();
    database->reset();
    std::filesystem::remove_all(dir);
  }
  return 0;
}
