// The daemon's one RocksDB instance. Components keep their data in column
// families of their own (the job store in "jobs", the activation cache in
// "activations"), so that each can be tuned and dropped independently.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "rocksdb/db.h"

namespace ftd::storage {

class Database {
 public:
  struct Options {
    // Folder of the database; created when missing.
    std::string path;
    // Column families to open (created when missing), besides "default".
    std::vector<std::string> column_families = {"jobs"};
    // Options of a column family by name; RocksDB's defaults for the others.
    std::map<std::string, rocksdb::ColumnFamilyOptions> column_family_options;
  };

  // Opens or creates the database. Errors: UNAVAILABLE when RocksDB cannot
  // open it (another daemon holds its lock, the folder is not writable, ...),
  // with RocksDB's reason and the path.
  static absl::StatusOr<std::unique_ptr<Database>> Open(const Options& options);

  ~Database();
  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;

  rocksdb::DB* db() const { return db_.get(); }
  // The handle of a column family named in Options; nullptr for another name.
  rocksdb::ColumnFamilyHandle* column_family(const std::string& name) const;
  const std::string& path() const { return path_; }

  // An integer property of each column family, by name (for example
  // "rocksdb.estimate-live-data-size"); families without it are left out.
  std::map<std::string, uint64_t> IntProperty(const std::string& property) const;

  // Drops a column family with everything in it and creates it again empty
  // (for data that can be rebuilt, such as the activation cache, when it is
  // unreadable). Handles to it from before are invalid afterwards.
  absl::Status ResetColumnFamily(const std::string& name,
                                 const rocksdb::ColumnFamilyOptions& options);

 private:
  Database() = default;

  std::string path_;
  std::unique_ptr<rocksdb::DB> db_;
  std::map<std::string, rocksdb::ColumnFamilyHandle*> handles_;  // owned; closed before db_
};

// Maps a RocksDB status to an absl::Status whose message starts with `what`.
absl::Status FromRocksDb(const rocksdb::Status& status, const std::string& what);

}  // namespace ftd::storage
