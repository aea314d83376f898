#include "storage/database.h"

#include <algorithm>
#include <filesystem>

#include "absl/strings/str_cat.h"

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
  db_options.create_missing_column_families = true;
  // The daemon writes little and rarely; keep the log and file counts small.
  db_options.keep_log_file_num = 4;
  db_options.max_manifest_file_size = 16 << 20;

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
    descriptors.emplace_back(name, rocksdb::ColumnFamilyOptions());
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

rocksdb::ColumnFamilyHandle* Database::column_family(const std::string& name) const {
  auto it = handles_.find(name);
  return it == handles_.end() ? nullptr : it->second;
}

}  // namespace ftd::storage
