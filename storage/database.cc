#include "storage/database.h"

#include <algorithm>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "rocksdb/cache.h"
#include "rocksdb/table.h"

namespace ftd::storage {

rocksdb::ColumnFamilyOptions Database::RecordsColumnFamilyOptions() {
  rocksdb::ColumnFamilyOptions options;
  // RocksDB's default (64 MiB a memtable, two of them) would let a busy
  // daemon's job records and events hold up to 128 MiB in memory before a
  // flush; these families take a few writes a second of small records.
  options.write_buffer_size = kRecordsWriteBufferBytes;
  options.max_write_buffer_number = 2;
  rocksdb::BlockBasedTableOptions table;
  table.block_cache = rocksdb::NewLRUCache(kRecordsBlockCacheBytes);
  options.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  return options;
}

absl::Status FromRocksDb(const rocksdb::Status& status, const std::string& what) {
  if (status.ok()) return absl::OkStatus();
  std::string message = absl::StrCat(what, ": ", status.ToString());
  if (status.IsNotFound()) return absl::NotFoundError(message);
  if (status.IsCorruption()) return absl::DataLossError(message);
  if (status.IsInvalidArgument()) return absl::InvalidArgumentError(message);
  if (status.IsNoSpace()) return absl::ResourceExhaustedError(message);
  return absl::UnavailableError(message);
}

struct Database::Session::Instance {
  std::unique_ptr<rocksdb::DB> db;
  std::map<std::string, rocksdb::ColumnFamilyHandle*> handles;  // owned; closed before db
  bool read_only = false;

  ~Instance() {
    if (db == nullptr) return;
    for (auto& [name, handle] : handles) db->DestroyColumnFamilyHandle(handle);
    db->Close().PermitUncheckedError();
  }
};

rocksdb::DB* Database::Session::db() const { return instance_->db.get(); }

rocksdb::ColumnFamilyHandle* Database::Session::cf(const std::string& name) const {
  auto it = instance_->handles.find(name);
  return it == instance_->handles.end() ? nullptr : it->second;
}

absl::StatusOr<std::shared_ptr<Database::Session::Instance>> Database::OpenInstance(
    const Options& options, bool read_only) {
  std::error_code ec;
  std::filesystem::create_directories(options.path, ec);
  if (ec) {
    return absl::UnavailableError(
        absl::StrCat("cannot create the database folder \"", options.path, "\": ", ec.message()));
  }
  rocksdb::DBOptions db_options;
  db_options.create_if_missing = true;
  if (options.env != nullptr) db_options.env = options.env;
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
                                       : RecordsColumnFamilyOptions());
  }

  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s =
      read_only
          ? rocksdb::DB::OpenForReadOnly(db_options, options.path, descriptors, &handles, &raw)
          : rocksdb::DB::Open(db_options, options.path, descriptors, &handles, &raw);
  if (!s.ok()) {
    return absl::UnavailableError(
        absl::StrCat("cannot open the database at \"", options.path, "\": ", s.ToString()));
  }
  auto instance = std::make_shared<Session::Instance>();
  instance->db.reset(raw);
  instance->read_only = read_only;
  for (size_t i = 0; i < names.size(); ++i) instance->handles[names[i]] = handles[i];
  return instance;
}

absl::StatusOr<std::unique_ptr<Database>> Database::Open(const Options& options) {
  ASSIGN_OR_RETURN(std::shared_ptr<Session::Instance> instance, OpenInstance(options, false));
  std::unique_ptr<Database> database(new Database(options));
  {
    absl::MutexLock lock(&database->mu_);
    database->current_ = std::move(instance);
  }
  database->reopener_ = std::thread([db = database.get()] { db->ReopenLoop(); });
  return database;
}

Database::~Database() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  reopener_.join();
  absl::MutexLock lock(&mu_);
  current_.reset();
}

Database::Session Database::session() const {
  absl::MutexLock lock(&mu_, absl::Condition(
                                 +[](const Database* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(
                                      self->mu_) { return self->current_ != nullptr; },
                                 this));
  return Session(current_);
}

bool Database::read_only() const {
  absl::MutexLock lock(&mu_);
  return needs_reopen_ || (current_ != nullptr && current_->read_only);
}

rocksdb::Status Database::Write(const Session& session, const rocksdb::WriteOptions& options,
                                rocksdb::WriteBatch* batch) {
  rocksdb::Status s;
  {
    if (session.instance_->read_only) {
      absl::MutexLock lock(&mu_);
      return last_error_;
    }
    s = session.db()->Write(options, batch);
    if (s.ok() || s.IsInvalidArgument() || s.IsCorruption()) return s;
    // A recoverable error resumes once its cause is gone.
    const rocksdb::Status resumed = session.db()->Resume();
    if (resumed.ok()) {
      s = session.db()->Write(options, batch);
      if (s.ok()) return s;
    }
    if (s.severity() < rocksdb::Status::kFatalError &&
        resumed.severity() < rocksdb::Status::kFatalError) {
      return s;
    }
  }
  absl::MutexLock lock(&mu_);
  if (!needs_reopen_) {
    Log(LogLevel::kError,
        absl::StrCat("the database at ", options_.path,
                     " stopped taking writes after a failed write (", s.ToString(),
                     "); reads go on, and it is reopened for writes once the fault "
                     "clears"));
  }
  needs_reopen_ = true;
  last_error_ = s;
  return s;
}

void Database::ReopenLoop() {
  absl::Duration wait = absl::Seconds(1);
  absl::MutexLock lock(&mu_);
  while (!stopping_) {
    if (!needs_reopen_) {
      mu_.Await(absl::Condition(
          +[](Database* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(self->mu_) {
            return self->stopping_ || self->needs_reopen_;
          },
          this));
      wait = absl::Seconds(1);
      continue;
    }
    // Give the fault a moment, and less often the longer it lasts.
    mu_.AwaitWithTimeout(absl::Condition(&stopping_), wait);
    if (stopping_) return;
    mu_.Unlock();
    const bool writable = Reopen();
    mu_.Lock();
    if (writable) {
      Log(LogLevel::kInfo, absl::StrCat("the database at ", options_.path, " takes writes again"));
    } else {
      wait = std::min(wait * 2, absl::Seconds(30));
    }
  }
}

bool Database::Reopen() {
  // Readers go on from a read-only instance (it takes no lock on the
  // folder) while the failed one closes; there is always one to serve.
  std::shared_ptr<Session::Instance> old;
  {
    absl::MutexLock lock(&mu_);
    old = current_;
  }
  if (!old->read_only) {
    absl::StatusOr<std::shared_ptr<Session::Instance>> reader = OpenInstance(options_, true);
    if (!reader.ok()) {
      Log(LogLevel::kError, absl::StrCat(reader.status().message(), "; trying again later"));
      return false;
    }
    {
      absl::MutexLock lock(&mu_);
      current_ = *std::move(reader);
    }
    // The writable instance needs the failed one closed: once the sessions
    // on it are done (a long compaction may keep one; then the writable
    // open below fails on its lock, and the next try comes later).
    const absl::Time deadline = absl::Now() + absl::Seconds(5);
    while (old.use_count() > 1 && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(1));
  }
  old.reset();  // a read-only one holds no lock: it goes when its readers do
  absl::StatusOr<std::shared_ptr<Session::Instance>> writable = OpenInstance(options_, false);
  if (!writable.ok()) return false;
  absl::MutexLock lock(&mu_);
  current_ = *std::move(writable);
  needs_reopen_ = false;
  return true;
}

absl::Status Database::ResetColumnFamily(const std::string& name,
                                         const rocksdb::ColumnFamilyOptions& options) {
  absl::MutexLock lock(&mu_);
  if (current_ == nullptr || current_->read_only) {
    return absl::UnavailableError("the database is not open for writes");
  }
  Session::Instance& instance = *current_;
  auto it = instance.handles.find(name);
  if (it == instance.handles.end()) {
    return absl::NotFoundError(absl::StrCat("no column family ", name));
  }
  RETURN_IF_ERROR(FromRocksDb(instance.db->DropColumnFamily(it->second), "dropping " + name));
  instance.db->DestroyColumnFamilyHandle(it->second);
  instance.handles.erase(it);
  rocksdb::ColumnFamilyHandle* handle = nullptr;
  RETURN_IF_ERROR(
      FromRocksDb(instance.db->CreateColumnFamily(options, name, &handle), "creating " + name));
  instance.handles[name] = handle;
  return absl::OkStatus();
}

std::map<std::string, uint64_t> Database::IntProperty(const std::string& property) const {
  Session session = this->session();
  std::map<std::string, uint64_t> values;
  for (const auto& [name, handle] : session.instance_->handles) {
    uint64_t value = 0;
    if (session.db()->GetIntProperty(handle, property, &value)) values[name] = value;
  }
  return values;
}

}  // namespace ftd::storage
