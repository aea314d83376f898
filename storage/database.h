// The daemon's one RocksDB instance. Components keep their data in column
// families of their own (the job store in "jobs", the activation cache in
// "activations"), so that each can be tuned and dropped independently.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "rocksdb/db.h"

namespace ftd::storage {

class Database {
 public:
  struct Options {
    // Folder of the database; created when missing.
    std::string path;
    // Column families to open (created when missing), besides "default".
    std::vector<std::string> column_families = {"jobs"};
    // Options of a column family by name; RecordsColumnFamilyOptions() for
    // the others.
    std::map<std::string, rocksdb::ColumnFamilyOptions> column_family_options;
    // The environment RocksDB's files go through; nullptr: the default (a
    // test's fault-injecting one otherwise). Must outlive the database.
    rocksdb::Env* env = nullptr;
  };

  // For families of small records (jobs, events, files): memtables of
  // kRecordsWriteBufferBytes (two at most) and a block cache of
  // kRecordsBlockCacheBytes, so that what they hold in memory is bounded.
  static constexpr size_t kRecordsWriteBufferBytes = 4 << 20;
  static constexpr size_t kRecordsBlockCacheBytes = 8 << 20;
  static rocksdb::ColumnFamilyOptions RecordsColumnFamilyOptions();

  // Opens or creates the database. Errors: UNAVAILABLE when RocksDB cannot
  // open it (another daemon holds its lock, the folder is not writable, ...),
  // with RocksDB's reason and the path.
  static absl::StatusOr<std::unique_ptr<Database>> Open(const Options& options);

  ~Database();
  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;

  // The open RocksDB and its column family handles, valid while the Session
  // lives: take one for each piece of work (a read, a scan, a write) and
  // drop it when done, since a reopen (see Write) waits for the sessions on
  // the instance it closes before it opens a writable one.
  class Session {
   public:
    rocksdb::DB* db() const;
    // The handle of a column family named in Options; nullptr for another.
    rocksdb::ColumnFamilyHandle* cf(const std::string& name) const;

   private:
    friend class Database;
    struct Instance;
    explicit Session(std::shared_ptr<Instance> instance) : instance_(std::move(instance)) {}
    std::shared_ptr<Instance> instance_;

   public:
    Session(Session&&) = default;
    Session& operator=(Session&&) = default;
    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;
  };
  Session session() const;

  // Writes `batch` through `session` (whose handles built it). A write that fails (a full disk, an
  // I/O error) leaves RocksDB refusing every write until it recovers: a recoverable error is
  // resumed here and the write tried again; after a fatal one (a failed write
  // of the log) RocksDB needs reopening, which a background thread does,
  // once a second at first and then less often, until it succeeds: while
  // the fault lasts, the database is open read-only (reads are served,
  // writes fail UNAVAILABLE), and once it clears, writes succeed again
  // without a restart. What RocksDB acknowledged is never lost in between.
  rocksdb::Status Write(const Session& session, const rocksdb::WriteOptions& options,
                        rocksdb::WriteBatch* batch);
  // True while writes wait for a reopen.
  bool read_only() const;
  const std::string& path() const { return options_.path; }

  // An integer property of each column family, by name (for example
  // "rocksdb.estimate-live-data-size"); families without it are left out.
  std::map<std::string, uint64_t> IntProperty(const std::string& property) const;

  // Drops a column family and creates it empty with `options` (the cache
  // starts over when it cannot be read). At start-up only, before any other
  // session: it changes the current instance's handles in place.
  absl::Status ResetColumnFamily(const std::string& name,
                                 const rocksdb::ColumnFamilyOptions& options);

 private:
  explicit Database(Options options) : options_(std::move(options)) {}
  // A RocksDB instance on options_ (read-only: for reads while writes fail).
  static absl::StatusOr<std::shared_ptr<Session::Instance>> OpenInstance(const Options& options,
                                                                         bool read_only);
  void ReopenLoop();
  // Serves reads from a read-only instance, closes the failed one once its
  // sessions are done (or gives up after a few seconds, for a later try)
  // and opens a writable one. True once writable.
  bool Reopen();

  Options options_;
  mutable absl::Mutex mu_;
  // Never null: a read-only instance serves while a failed one closes.
  std::shared_ptr<Session::Instance> current_ ABSL_GUARDED_BY(mu_);
  bool needs_reopen_ ABSL_GUARDED_BY(mu_) = false;
  rocksdb::Status last_error_ ABSL_GUARDED_BY(mu_);  // what writes get until the reopen
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread reopener_;
};

// Maps a RocksDB status to an absl::Status whose message starts with `what`.
absl::Status FromRocksDb(const rocksdb::Status& status, const std::string& what);

}  // namespace ftd::storage
