#include "storage/database.h"

#include <algorithm>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace ftd::storage {

absl::Status FromRocksDb(const rocksdb::Status& status, const std::string& what) {
  if (status.ok()) return absl::OkStatus();
  std::string message = absl::StrCat(what, ": ", status.ToString());
  if (status.IsNotFound()) return absl::NotFoundError(message);
  if (status.IsCorruption()) return absl::DataLossError(message);
  if (status.IsInvalidArgument()) return absl::InvalidArgumentError(message);
  if (status.IsNoSpace()) return absl::ResourceExhaustedError(message);
  return absl::UnavailableError(message);
}

absl::StatusOr<std::unique_ptr<Database>> Database::Open(const Options& options) {
  std::error_code ec;
  std::filesystem::create_directories(options.path, ec);
  if (ec) {
    return absl::UnavailableError(
        absl::StrCat("cannot create the database folder \"", options.path, "\": ", ec.message()));
  }
  rocksdb::DBOptions db_options;
  db_options.create_if_missing = true;
  // Flushes and compactions run at the lowest CPU priority: on a machine whose
  // cores all train, they must not preempt the training's threads.
  db_options.env
      ->LowerThreadPoolCPUPriority(rocksdb::Env::Priority::HIGH, rocksdb::CpuPriority::kIdle)
      .PermitUncheckedError();
  db_options.env
      ->LowerThreadPoolCPUPriority(rocksdb::Env::Priority::LOW, rocksdb::CpuPriority::kIdle)
      .PermitUncheckedError();
  db_options.create_missing_column_families = true;
  // The daemon writes little and rarely; keep the log and file counts small.
  db_options.keep_log_file_num = 4;
  db_options.max_manifest_file_size = 16 << 20;
  // The activation cache writes much more than the job store: past this much
  // log, RocksDB flushes the column families that keep old logs alive (the
  // job store's), so that the logs do not hold a second copy of the cache.
  db_options.max_total_wal_size = 64 << 20;

  std::vector<std::string> names = {rocksdb::kDefaultColumnFamilyName};
  // Column families that exist on disk must be opened too.
  std::vector<std::string> existing;
  if (rocksdb::DB::ListColumnFamilies(db_options, options.path, &existing).ok()) {
    for (const std::string& name : existing) {
      if (name != rocksdb::kDefaultColumnFamilyName) names.push_back(name);
    }
  }
  for (const std::string& name : options.column_families) {
    if (std::find(names.begin(), names.end(), name) == names.end()) names.push_back(name);
  }
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  for (const std::string& name : names) {
    auto it = options.column_family_options.find(name);
    descriptors.emplace_back(name, it != options.column_family_options.end()
                                       ? it->second
                                       : rocksdb::ColumnFamilyOptions());
  }

  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(db_options, options.path, descriptors, &handles, &raw);
  if (!s.ok()) {
    return absl::UnavailableError(
        absl::StrCat("cannot open the database at \"", options.path, "\": ", s.ToString()));
  }
  std::unique_ptr<Database> database(new Database());
  database->path_ = options.path;
  database->db_.reset(raw);
  for (size_t i = 0; i < names.size(); ++i) database->handles_[names[i]] = handles[i];
  return database;
}

Database::~Database() {
  if (db_ == nullptr) return;
  for (auto& [name, handle] : handles_) {
    db_->DestroyColumnFamilyHandle(handle);
  }
  db_->Close();
}

absl::Status Database::ResetColumnFamily(const std::string& name,
                                         const rocksdb::ColumnFamilyOptions& options) {
  auto it = handles_.find(name);
  if (it == handles_.end()) return absl::NotFoundError(absl::StrCat("no column family ", name));
  RETURN_IF_ERROR(FromRocksDb(db_->DropColumnFamily(it->second), "dropping " + name));
  db_->DestroyColumnFamilyHandle(it->second);
  handles_.erase(it);
  rocksdb::ColumnFamilyHandle* handle = nullptr;
  RETURN_IF_ERROR(FromRocksDb(db_->CreateColumnFamily(options, name, &handle), "creating " + name));
  handles_[name] = handle;
  return absl::OkStatus();
}

std::map<std::string, uint64_t> Database::IntProperty(const std::string& property) const {
  std::map<std::string, uint64_t> values;
  for (const auto& [name, handle] : handles_) {
    uint64_t value = 0;
    if (db_->GetIntProperty(handle, property, &value)) values[name] = value;
  }
  return values;
}

rocksdb::ColumnFamilyHandle* Database::column_family(const std::string& name) const {
  auto it = handles_.find(name);
  return it == handles_.end() ? nullptr : it->second;
}

}  // namespace ftd::storage
