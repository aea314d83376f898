// ActivationStore: the activation cache's entries in the daemon's RocksDB,
// in a column family of their own ("activations").
//
// Entries come in segments: the outputs of the first `layer` blocks of a
// model for one dataset's examples, under a namespace that digests everything
// those outputs depend on. Keys put one segment's entries in one range:
//
//   'a' namespace(16) dataset(32) layer(be32) example(be64)  -> encoded value
//   'i' namespace(16) dataset(32) layer(be32) example(be64)  -> "" (an index:
//       listing a segment reads these, never the values in the blob files)
//   'm' namespace(16) dataset(32) layer(be32)                -> CacheSegment
//
// The store keeps each segment's size and users in memory (and its record on
// disk), drops a segment's entries with one range delete, and holds the total
// under a cap by evicting the least recently used segments no job uses.
// Thread-safe.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "ftd/v1/ftd.pb.h"
#include "rocksdb/options.h"
#include "storage/database.h"

namespace ftd::storage {

struct SegmentKey {
  std::string ns;       // 16 bytes
  std::string dataset;  // 32 bytes (a SHA-256)
  int32_t layer = 0;

  // From the hex strings a CacheSegment carries. INVALID_ARGUMENT when they
  // are not 32 and 64 hex digits.
  static absl::StatusOr<SegmentKey> FromHex(const std::string& ns_hex,
                                            const std::string& dataset_hex, int32_t layer);
  std::string NamespaceHex() const;
  std::string DatasetHex() const;
  // "3fa2c1d0e9b87a65/9c1e0a2f4b7d/4": short, for messages.
  std::string ToString() const;

  bool operator<(const SegmentKey& o) const {
    return std::tie(ns, dataset, layer) < std::tie(o.ns, o.dataset, o.layer);
  }
  bool operator==(const SegmentKey& o) const {
    return ns == o.ns && dataset == o.dataset && layer == o.layer;
  }
};

class ActivationStore {
 public:
  static constexpr char kColumnFamily[] = "activations";

  // How the column family is tuned: memory bounds and value placement.
  struct Tuning {
    int64_t block_cache_bytes = int64_t{32} << 20;
    int64_t write_buffer_bytes = int64_t{16} << 20;
    // Values in blob files (key-value separation): compactions do not
    // rewrite the activations. See docs/performance.md.
    bool blob_files = true;
  };
  static rocksdb::ColumnFamilyOptions ColumnFamilyOptions(const Tuning& tuning);

  struct Options {
    // The size cap, in bytes of stored values.
    int64_t capacity_bytes = int64_t{8} << 30;
    // Each tenant's share of it (CacheSegment.tenant; 0: none besides the
    // cap): a tenant's writes past it evict the tenant's own least recently
    // used segments, never another tenant's.
    int64_t tenant_capacity_bytes = 0;
    // Must be what the column family was opened with.
    Tuning tuning;
    // Called on the compactor's thread before each compaction of a dropped
    // segment's range (tests hold a compaction there, as a long one would).
    std::function<void()> before_compaction;
  };

  // `database` must have the kColumnFamily column family open, opened with
  // ColumnFamilyOptions(options.tuning), and outlive the store. Loads the
  // segment records; when they cannot be read (a damaged file), the cache
  // starts empty, with a warning in the log: it can always be rebuilt.
  static absl::StatusOr<std::unique_ptr<ActivationStore>> Open(Database* database,
                                                               const Options& options);
  // Stops the background compactions (queued ones are left to RocksDB).
  ~ActivationStore();

  // Registers `user` (a job id) as a reader and writer of the segment, and
  // creates its record when new (`info` gives its dtype and base model).
  absl::Status Acquire(const std::string& user, const SegmentKey& key,
                       const v1::CacheSegment& info);
  // Ends `user`'s use. With `drop`, also deletes the segment unless another
  // user holds it.
  absl::Status Release(const std::string& user, const SegmentKey& key, bool drop);

  // The examples the segment holds, in order.
  absl::StatusOr<std::vector<int64_t>> ListExamples(const SegmentKey& key);

  // Stores entries of a segment the caller holds. RESOURCE_EXHAUSTED when they
  // do not fit under the cap even after evicting every unused segment, or the
  // disk is full; other RocksDB errors as FromRocksDb maps them.
  absl::Status Put(const SegmentKey& key,
                   const std::vector<std::pair<int64_t, std::string>>& values);

  // One result per key: the value, NOT_FOUND, or the RocksDB error.
  std::vector<absl::StatusOr<std::string>> MultiGet(
      const std::vector<std::pair<SegmentKey, int64_t>>& keys);

  // Deletes one entry (a corrupt one, so that it is written again).
  absl::Status Delete(const SegmentKey& key, int64_t example);

  // Every segment, least recently used first, with its users.
  std::vector<v1::CacheSegment> Segments() const;
  // One segment; NOT_FOUND when it is not stored.
  absl::StatusOr<v1::CacheSegment> Segment(const SegmentKey& key) const;

  // Deletes the segments no user holds; those held go to `kept`.
  absl::Status Clear(const std::vector<SegmentKey>& keys, std::vector<v1::CacheSegment>* cleared,
                     std::vector<v1::CacheSegment>* kept);

  int64_t bytes() const;
  int64_t capacity_bytes() const { return options_.capacity_bytes; }
  int64_t evictions() const;

  // Writes the memtable out, so that a restart finds everything without
  // replaying the log.
  absl::Status Flush();

 private:
  struct Record {
    v1::CacheSegment info;
    std::multiset<std::string> users;
  };

  ActivationStore(Database* database, const Options& options);
  // Runs the compactions that drops queue, off the callers' path and
  // outside mu_ (a compaction of a large segment takes seconds).
  void CompactLoop();
  absl::Status LoadLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  v1::CacheSegment Describe(const SegmentKey& key, const Record& record) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // Deletes a segment's entries and record.
  absl::Status DropLocked(const SegmentKey& key) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Evicts unused segments, least recently used first, until `incoming` more
  // bytes fit.
  absl::Status MakeTenantRoomLocked(const std::string& tenant, int64_t incoming)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status MakeRoomLocked(int64_t incoming) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  Database* const database_;
  const Options options_;
  mutable absl::Mutex mu_;
  std::map<SegmentKey, Record> segments_ ABSL_GUARDED_BY(mu_);
  int64_t bytes_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t evictions_ ABSL_GUARDED_BY(mu_) = 0;

  absl::Mutex compact_mu_;
  // Key ranges whose space a drop gives back.
  std::vector<std::pair<std::string, std::string>> compactions_ ABSL_GUARDED_BY(compact_mu_);
  bool stopping_ ABSL_GUARDED_BY(compact_mu_) = false;
  std::thread compactor_;
};

}  // namespace ftd::storage
