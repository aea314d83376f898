#include "storage/activation_store.h"

#include <algorithm>
#include <tuple>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "common/time_util.h"
#include "rocksdb/cache.h"
#include "rocksdb/filter_policy.h"
#include "rocksdb/table.h"
#include "rocksdb/write_batch.h"

namespace ftd::storage {
namespace {

constexpr char kEntryPrefix = 'a';
constexpr char kIndexPrefix = 'i';  // one empty value per entry: listing never reads blobs
constexpr char kRecordPrefix = 'm';
constexpr size_t kNamespaceBytes = 16;
constexpr size_t kDatasetBytes = 32;
constexpr size_t kSegmentBytes = kNamespaceBytes + kDatasetBytes + 4;

void AppendBigEndian(std::string* out, uint64_t v, int bytes) {
  for (int shift = 8 * (bytes - 1); shift >= 0; shift -= 8)
    out->push_back(static_cast<char>((v >> shift) & 0xff));
}

uint64_t ReadBigEndian(std::string_view bytes) {
  uint64_t v = 0;
  for (char c : bytes) v = (v << 8) | static_cast<uint8_t>(c);
  return v;
}

std::string SegmentBytes(const SegmentKey& key) {
  std::string out = key.ns + key.dataset;
  AppendBigEndian(&out, static_cast<uint32_t>(key.layer), 4);
  return out;
}

std::string EntryKey(const SegmentKey& key, int64_t example, char prefix = kEntryPrefix) {
  std::string out(1, prefix);
  out += SegmentBytes(key);
  AppendBigEndian(&out, static_cast<uint64_t>(example), 8);
  return out;
}

std::string RecordKey(const SegmentKey& key) { return kRecordPrefix + SegmentBytes(key); }

google::protobuf::Timestamp Now() { return ToTimestamp(absl::Now()); }

bool Older(const google::protobuf::Timestamp& a, const google::protobuf::Timestamp& b) {
  return std::make_pair(a.seconds(), a.nanos()) < std::make_pair(b.seconds(), b.nanos());
}

}  // namespace

absl::StatusOr<SegmentKey> SegmentKey::FromHex(const std::string& ns_hex,
                                               const std::string& dataset_hex, int32_t layer) {
  auto is_hex = [](const std::string& s, size_t n) {
    return s.size() == n && std::all_of(s.begin(), s.end(), [](char c) {
             return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
           });
  };
  if (!is_hex(ns_hex, 2 * kNamespaceBytes)) {
    return absl::InvalidArgumentError(
        absl::StrCat("namespace: \"", ns_hex, "\" is not ", 2 * kNamespaceBytes, " hex digits"));
  }
  if (!is_hex(dataset_hex, 2 * kDatasetBytes)) {
    return absl::InvalidArgumentError(absl::StrCat("dataset_fingerprint: \"", dataset_hex,
                                                   "\" is not ", 2 * kDatasetBytes, " hex digits"));
  }
  if (layer < 0) return absl::InvalidArgumentError(absl::StrCat("layer: ", layer, " < 0"));
  return SegmentKey{absl::HexStringToBytes(ns_hex), absl::HexStringToBytes(dataset_hex), layer};
}

std::string SegmentKey::NamespaceHex() const { return absl::BytesToHexString(ns); }
std::string SegmentKey::DatasetHex() const { return absl::BytesToHexString(dataset); }
std::string SegmentKey::ToString() const {
  return absl::StrCat(NamespaceHex().substr(0, 16), "/", DatasetHex().substr(0, 12), "/", layer);
}

rocksdb::ColumnFamilyOptions ActivationStore::ColumnFamilyOptions(const Tuning& tuning) {
  rocksdb::ColumnFamilyOptions options;
  options.write_buffer_size = static_cast<size_t>(tuning.write_buffer_bytes);
  options.max_write_buffer_number = 2;
  rocksdb::BlockBasedTableOptions table;
  table.block_cache = rocksdb::NewLRUCache(static_cast<size_t>(tuning.block_cache_bytes));
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  table.cache_index_and_filter_blocks = true;  // inside the block cache's bound
  options.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  // Activations are dense floats: general-purpose compression buys little.
  options.compression = rocksdb::kNoCompression;
  if (tuning.blob_files) {
    options.enable_blob_files = true;
    options.min_blob_size = 256;  // every activation; records stay in the tables
    options.blob_file_size = 64 << 20;
    options.blob_compression_type = rocksdb::kNoCompression;
    options.enable_blob_garbage_collection = true;
    options.blob_garbage_collection_age_cutoff = 0.5;
  }
  return options;
}

ActivationStore::ActivationStore(Database* database, const Options& options)
    : database_(database), options_(options), compactor_([this] { CompactLoop(); }) {}

ActivationStore::~ActivationStore() {
  {
    absl::MutexLock lock(&compact_mu_);
    stopping_ = true;  // what is still queued is left to RocksDB's own compactions
  }
  compactor_.join();
}

void ActivationStore::CompactLoop() {
  while (true) {
    std::pair<std::string, std::string> range;
    {
      absl::MutexLock lock(&compact_mu_);
      compact_mu_.Await(absl::Condition(
          +[](ActivationStore* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(self->compact_mu_) {
            return self->stopping_ || !self->compactions_.empty();
          },
          this));
      if (stopping_) return;
      range = std::move(compactions_.front());
      compactions_.erase(compactions_.begin());
    }
    if (options_.before_compaction) options_.before_compaction();
    // The range's tables go, and blob files no table refers to any more.
    rocksdb::Slice b(range.first), e(range.second);
    rocksdb::CompactRangeOptions compact;
    compact.bottommost_level_compaction = rocksdb::BottommostLevelCompaction::kForceOptimized;
    const Database::Session session = database_->session();
    session.db()->CompactRange(compact, session.cf(kColumnFamily), &b, &e).PermitUncheckedError();
  }
}

absl::StatusOr<std::unique_ptr<ActivationStore>> ActivationStore::Open(Database* database,
                                                                       const Options& options) {
  if (database->session().cf(kColumnFamily) == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat("the database at ", database->path(),
                                                      " has no \"", kColumnFamily,
                                                      "\" column family open"));
  }
  std::unique_ptr<ActivationStore> store(new ActivationStore(database, options));
  absl::MutexLock lock(&store->mu_);
  if (absl::Status loaded = store->LoadLocked(); !loaded.ok()) {
    Log(LogLevel::kWarning,
        absl::StrCat("the activation cache in ", database->path(), " cannot be read (",
                     loaded.message(), "); it starts empty"));
    RETURN_IF_ERROR(
        database->ResetColumnFamily(kColumnFamily, ColumnFamilyOptions(options.tuning)));
    store->segments_.clear();
    store->bytes_ = 0;
  }
  return store;
}

absl::Status ActivationStore::LoadLocked() {
  const Database::Session session = database_->session();
  rocksdb::ColumnFamilyHandle* const cf = session.cf(kColumnFamily);
  std::unique_ptr<rocksdb::Iterator> it(session.db()->NewIterator(rocksdb::ReadOptions(), cf));
  const std::string prefix(1, kRecordPrefix);
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
    const std::string_view key(it->key().data() + 1, it->key().size() - 1);
    v1::CacheSegment info;
    if (key.size() != kSegmentBytes ||
        !info.ParseFromArray(it->value().data(), static_cast<int>(it->value().size()))) {
      return absl::DataLossError("a segment record does not parse");
    }
    SegmentKey segment{std::string(key.substr(0, kNamespaceBytes)),
                       std::string(key.substr(kNamespaceBytes, kDatasetBytes)),
                       static_cast<int32_t>(ReadBigEndian(key.substr(kSegmentBytes - 4)))};
    bytes_ += info.bytes();
    segments_[segment].info = std::move(info);
  }
  return FromRocksDb(it->status(), "reading the segment records");
}

v1::CacheSegment ActivationStore::Describe(const SegmentKey& key, const Record& record) const {
  v1::CacheSegment out = record.info;
  out.set_namespace_(key.NamespaceHex());
  out.set_dataset_fingerprint(key.DatasetHex());
  out.set_layer(key.layer);
  std::set<std::string> users(record.users.begin(), record.users.end());
  for (const std::string& user : users) out.add_in_use_by(user);
  return out;
}

absl::Status ActivationStore::Acquire(const std::string& user, const SegmentKey& key,
                                      const v1::CacheSegment& info) {
  absl::MutexLock lock(&mu_);
  auto [it, created] = segments_.try_emplace(key);
  Record& record = it->second;
  if (created) {
    record.info.set_dtype(info.dtype());
    record.info.set_base_model(info.base_model());
    record.info.set_tenant(info.tenant());
    *record.info.mutable_create_time() = Now();
  }
  *record.info.mutable_last_used_time() = Now();
  const Database::Session session = database_->session();
  rocksdb::ColumnFamilyHandle* const cf = session.cf(kColumnFamily);
  rocksdb::WriteBatch batch;
  rocksdb::Status s = batch.Put(cf, RecordKey(key), record.info.SerializeAsString());
  if (s.ok()) s = database_->Write(session, rocksdb::WriteOptions(), &batch);
  if (!s.ok()) {
    if (created) segments_.erase(it);
    return FromRocksDb(s, absl::StrCat("recording cache segment ", key.ToString()));
  }
  record.users.insert(user);
  return absl::OkStatus();
}

absl::Status ActivationStore::Release(const std::string& user, const SegmentKey& key, bool drop) {
  absl::MutexLock lock(&mu_);
  auto it = segments_.find(key);
  if (it == segments_.end()) return absl::OkStatus();  // evicted or cleared meanwhile
  auto user_it = it->second.users.find(user);
  if (user_it != it->second.users.end()) it->second.users.erase(user_it);
  if (drop && it->second.users.empty()) return DropLocked(key);
  *it->second.info.mutable_last_used_time() = Now();
  const Database::Session session = database_->session();
  rocksdb::ColumnFamilyHandle* const cf = session.cf(kColumnFamily);
  rocksdb::WriteBatch batch;
  rocksdb::Status s = batch.Put(cf, RecordKey(key), it->second.info.SerializeAsString());
  if (s.ok()) s = database_->Write(session, rocksdb::WriteOptions(), &batch);
  return FromRocksDb(s, absl::StrCat("recording cache segment ", key.ToString()));
}

absl::Status ActivationStore::DropLocked(const SegmentKey& key) {
  const std::string begin = EntryKey(key, 0);
  const std::string end = kEntryPrefix + SegmentBytes(key) + std::string(9, '\xff');
  rocksdb::WriteBatch batch;
  {
    const Database::Session session = database_->session();
    rocksdb::ColumnFamilyHandle* const cf = session.cf(kColumnFamily);
    rocksdb::Status s = batch.DeleteRange(cf, begin, end);
    if (s.ok()) {
      s = batch.DeleteRange(cf, EntryKey(key, 0, kIndexPrefix),
                            kIndexPrefix + SegmentBytes(key) + std::string(9, '\xff'));
    }
    if (s.ok()) s = batch.Delete(cf, RecordKey(key));
    // Synced: a drop is what a user's delete acknowledges, and what it
    // deleted must not come back after a power loss.
    rocksdb::WriteOptions synced;
    synced.sync = true;
    if (s.ok()) s = database_->Write(session, synced, &batch);
    RETURN_IF_ERROR(FromRocksDb(s, absl::StrCat("dropping cache segment ", key.ToString())));
  }
  auto it = segments_.find(key);
  if (it != segments_.end()) {
    bytes_ -= it->second.info.bytes();
    segments_.erase(it);
  }
  // Give the space back soon rather than at some later compaction, on the
  // compactor's thread: not under mu_, which every cache read takes.
  {
    absl::MutexLock lock(&compact_mu_);
    compactions_.emplace_back(begin, end);
  }
  return absl::OkStatus();
}

absl::Status ActivationStore::MakeTenantRoomLocked(const std::string& tenant, int64_t incoming) {
  if (options_.tenant_capacity_bytes <= 0) return absl::OkStatus();
  while (true) {
    int64_t used = 0;
    const SegmentKey* victim = nullptr;
    const v1::CacheSegment* victim_info = nullptr;
    for (const auto& [key, record] : segments_) {
      if (record.info.tenant() != tenant) continue;
      used += record.info.bytes();
      if (!record.users.empty()) continue;
      if (victim == nullptr || Older(record.info.last_used_time(), victim_info->last_used_time())) {
        victim = &key;
        victim_info = &record.info;
      }
    }
    if (used + incoming <= options_.tenant_capacity_bytes) return absl::OkStatus();
    if (victim == nullptr) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "the tenant's share of the activation cache, ", options_.tenant_capacity_bytes >> 20,
          " MiB (--cache_max_mb_per_tenant), is full and every one of its segments is in use"));
    }
    const SegmentKey key = *victim;
    RETURN_IF_ERROR(DropLocked(key));
    ++evictions_;
  }
}

absl::Status ActivationStore::MakeRoomLocked(int64_t incoming) {
  while (bytes_ + incoming > options_.capacity_bytes) {
    const SegmentKey* victim = nullptr;
    const v1::CacheSegment* victim_info = nullptr;
    for (const auto& [key, record] : segments_) {
      if (!record.users.empty()) continue;
      if (victim == nullptr || Older(record.info.last_used_time(), victim_info->last_used_time())) {
        victim = &key;
        victim_info = &record.info;
      }
    }
    if (victim == nullptr) {
      // Without the cap's size: the message reaches the job's record, and
      // the whole cache's size is for admins (GetCache).
      return absl::ResourceExhaustedError(
          "the activation cache is full (--cache_max_mb) and every segment in it is in use");
    }
    const SegmentKey key = *victim;
    RETURN_IF_ERROR(DropLocked(key));
    ++evictions_;
  }
  return absl::OkStatus();
}

absl::Status ActivationStore::Put(const SegmentKey& key,
                                  const std::vector<std::pair<int64_t, std::string>>& values) {
  if (values.empty()) return absl::OkStatus();
  int64_t incoming = 0;
  rocksdb::WriteBatch batch;
  {
    // The batch holds column family ids, valid in any instance of the
    // database: the session is let go before mu_ is taken.
    const Database::Session session = database_->session();
    rocksdb::ColumnFamilyHandle* const cf = session.cf(kColumnFamily);
    for (const auto& [example, value] : values) {
      incoming += static_cast<int64_t>(value.size());
      RETURN_IF_ERROR(
          FromRocksDb(batch.Put(cf, EntryKey(key, example), value), "batching cache entries"));
      RETURN_IF_ERROR(FromRocksDb(batch.Put(cf, EntryKey(key, example, kIndexPrefix), ""),
                                  "batching cache entries"));
    }
  }
  absl::MutexLock lock(&mu_);
  auto it = segments_.find(key);
  if (it == segments_.end()) {
    return absl::FailedPreconditionError(
        absl::StrCat("cache segment ", key.ToString(), " is not held (evicted or cleared)"));
  }
  // The segment in hand is in use, so eviction never picks it.
  RETURN_IF_ERROR(MakeTenantRoomLocked(it->second.info.tenant(), incoming));
  RETURN_IF_ERROR(MakeRoomLocked(incoming));
  v1::CacheSegment info = it->second.info;
  info.set_entries(info.entries() + static_cast<int64_t>(values.size()));
  info.set_bytes(info.bytes() + incoming);
  const Database::Session session = database_->session();
  rocksdb::ColumnFamilyHandle* const cf = session.cf(kColumnFamily);
  RETURN_IF_ERROR(
      FromRocksDb(batch.Put(cf, RecordKey(key), info.SerializeAsString()), "batching a record"));
  RETURN_IF_ERROR(FromRocksDb(database_->Write(session, rocksdb::WriteOptions(), &batch),
                              absl::StrCat("writing cache segment ", key.ToString())));
  it->second.info = std::move(info);
  bytes_ += incoming;
  return absl::OkStatus();
}

std::vector<absl::StatusOr<std::string>> ActivationStore::MultiGet(
    const std::vector<std::pair<SegmentKey, int64_t>>& keys) {
  std::vector<std::string> key_bytes;
  key_bytes.reserve(keys.size());
  for (const auto& [segment, example] : keys) key_bytes.push_back(EntryKey(segment, example));
  std::vector<rocksdb::Slice> slices(key_bytes.begin(), key_bytes.end());
  std::vector<rocksdb::PinnableSlice> values(keys.size());
  std::vector<rocksdb::Status> statuses(keys.size());
  // The values are pinned in the instance's memory: copied out before the
  // session ends.
  const Database::Session session = database_->session();
  rocksdb::ColumnFamilyHandle* const cf = session.cf(kColumnFamily);
  session.db()->MultiGet(rocksdb::ReadOptions(), cf, slices.size(), slices.data(), values.data(),
                         statuses.data());
  std::vector<absl::StatusOr<std::string>> out;
  out.reserve(keys.size());
  for (size_t i = 0; i < keys.size(); ++i) {
    if (statuses[i].ok()) {
      out.emplace_back(values[i].ToString());
    } else {
      out.emplace_back(FromRocksDb(statuses[i], "reading a cache entry"));
    }
  }
  return out;
}

absl::Status ActivationStore::Delete(const SegmentKey& key, int64_t example) {
  const Database::Session session = database_->session();
  rocksdb::ColumnFamilyHandle* const cf = session.cf(kColumnFamily);
  rocksdb::WriteBatch batch;
  rocksdb::Status s = batch.Delete(cf, EntryKey(key, example));
  if (s.ok()) s = batch.Delete(cf, EntryKey(key, example, kIndexPrefix));
  if (s.ok()) s = database_->Write(session, rocksdb::WriteOptions(), &batch);
  return FromRocksDb(s, "deleting a cache entry");
}

absl::StatusOr<std::vector<int64_t>> ActivationStore::ListExamples(const SegmentKey& key) {
  const std::string prefix = kIndexPrefix + SegmentBytes(key);
  rocksdb::ReadOptions read;
  const std::string upper = prefix + std::string(9, '\xff');
  rocksdb::Slice upper_slice(upper);
  read.iterate_upper_bound = &upper_slice;
  const Database::Session session = database_->session();
  rocksdb::ColumnFamilyHandle* const cf = session.cf(kColumnFamily);
  std::unique_ptr<rocksdb::Iterator> it(session.db()->NewIterator(read, cf));
  std::vector<int64_t> examples;
  // The index keys: walking the entries themselves would read every value.
  for (it->Seek(prefix); it->Valid(); it->Next()) {
    if (it->key().size() != prefix.size() + 8) continue;
    examples.push_back(
        static_cast<int64_t>(ReadBigEndian(std::string_view(it->key().data() + prefix.size(), 8))));
  }
  RETURN_IF_ERROR(
      FromRocksDb(it->status(), absl::StrCat("listing cache segment ", key.ToString())));
  return examples;
}

std::vector<v1::CacheSegment> ActivationStore::Segments() const {
  absl::ReaderMutexLock lock(&mu_);
  std::vector<v1::CacheSegment> out;
  for (const auto& [key, record] : segments_) out.push_back(Describe(key, record));
  std::stable_sort(out.begin(), out.end(), [](const auto& a, const auto& b) {
    return Older(a.last_used_time(), b.last_used_time());
  });
  return out;
}

absl::StatusOr<v1::CacheSegment> ActivationStore::Segment(const SegmentKey& key) const {
  absl::ReaderMutexLock lock(&mu_);
  auto it = segments_.find(key);
  if (it == segments_.end()) {
    return absl::NotFoundError(absl::StrCat("cache segment ", key.ToString(), " is not stored"));
  }
  return Describe(key, it->second);
}

absl::Status ActivationStore::Clear(const std::vector<SegmentKey>& keys,
                                    std::vector<v1::CacheSegment>* cleared,
                                    std::vector<v1::CacheSegment>* kept) {
  absl::MutexLock lock(&mu_);
  for (const SegmentKey& key : keys) {
    auto it = segments_.find(key);
    if (it == segments_.end()) continue;
    v1::CacheSegment described = Describe(key, it->second);
    if (!it->second.users.empty()) {
      kept->push_back(std::move(described));
      continue;
    }
    RETURN_IF_ERROR(DropLocked(key));
    cleared->push_back(std::move(described));
  }
  return absl::OkStatus();
}

int64_t ActivationStore::bytes() const {
  absl::ReaderMutexLock lock(&mu_);
  return bytes_;
}

int64_t ActivationStore::evictions() const {
  absl::ReaderMutexLock lock(&mu_);
  return evictions_;
}

absl::Status ActivationStore::Flush() {
  const Database::Session session = database_->session();
  rocksdb::ColumnFamilyHandle* const cf = session.cf(kColumnFamily);
  return FromRocksDb(session.db()->Flush(rocksdb::FlushOptions(), cf),
                     "flushing the activation cache");
}

}  // namespace ftd::storage
