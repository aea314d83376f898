#include "storage/file_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/quote.h"
#include "common/fs_util.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "common/time_util.h"
#include "rocksdb/write_batch.h"

namespace ftd::storage {
namespace {

namespace fs = std::filesystem;

constexpr char kFilePrefix = 'f';
constexpr char kNextFileKey[] = "m:next_file";

std::string FileKey(uint64_t number) {
  std::string key(1, kFilePrefix);
  for (int shift = 56; shift >= 0; shift -= 8)
    key.push_back(static_cast<char>((number >> shift) & 0xff));
  return key;
}

absl::Status MakeDir(const std::string& path) {
  if (::mkdir(path.c_str(), 0750) != 0 && errno != EEXIST) {
    return IoError(errno, absl::StrCat("cannot create ", path));
  }
  return absl::OkStatus();
}

// A hard link `to` of `from`.
absl::Status Link(const std::string& from, const std::string& to) {
  if (::link(from.c_str(), to.c_str()) == 0) return absl::OkStatus();
  return IoError(errno, absl::StrCat("cannot link ", to));
}

}  // namespace

uint64_t FileNumber(const std::string& id) {
  uint64_t n = 0;
  if (!absl::StartsWith(id, "file-") || id.size() > 25) return 0;
  const std::string digits = id.substr(5);
  if (digits.empty() || digits[0] == '0' || !absl::SimpleAtoi(digits, &n)) return 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return 0;
  }
  return n;
}

// --- Upload -----------------------------------------------------------------

FileStore::Upload::Upload(std::string dir, std::vector<v1::FileEntry> entries)
    : dir_(std::move(dir)), entries_(std::move(entries)) {
  for (const v1::FileEntry& e : entries_) total_ += e.size();
}

FileStore::Upload::~Upload() {
  if (fd_ >= 0) ::close(fd_);
  std::error_code ec;
  fs::remove_all(dir_, ec);
}

std::string FileStore::Upload::StagedPath(size_t i) const {
  return (fs::path(dir_) / entries_[i].name()).string();
}

absl::Status FileStore::Upload::OpenEntry() {
  const std::string path = StagedPath(current_);
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0640);
  if (fd_ < 0) return IoError(errno, absl::StrCat("cannot create ", path));
  hash_ = std::make_unique<Sha256>();
  current_written_ = 0;
  return absl::OkStatus();
}

absl::Status FileStore::Upload::CloseEntry() {
  const std::string path = StagedPath(current_);
  const int fd = fd_;
  fd_ = -1;
  if (::fsync(fd) != 0) {
    const int err = errno;
    ::close(fd);
    return IoError(err, absl::StrCat("cannot sync ", path));
  }
  if (::close(fd) != 0) return IoError(errno, absl::StrCat("cannot close ", path));
  const v1::FileEntry& entry = entries_[current_];
  const std::string digest = hash_->FinishHex();
  hash_.reset();
  if (digest != entry.sha256()) {
    failed_entry_ = current_;
    return absl::InvalidArgumentError(absl::StrCat("the bytes sent for \"", entry.name(),
                                                   "\" have SHA-256 ", digest,
                                                   ", not the header's ", entry.sha256()));
  }
  ++current_;
  return absl::OkStatus();
}

absl::Status FileStore::Upload::Write(std::string_view bytes) {
  while (true) {
    // Entries that are complete (empty ones at once) are closed and checked.
    while (current_ < entries_.size()) {
      if (fd_ < 0) RETURN_IF_ERROR(OpenEntry());
      if (current_written_ < entries_[current_].size()) break;
      RETURN_IF_ERROR(CloseEntry());
    }
    if (bytes.empty()) return absl::OkStatus();
    if (current_ >= entries_.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("more bytes than the header declares (", total_, ")"));
    }
    const int64_t n = std::min<int64_t>(entries_[current_].size() - current_written_,
                                        static_cast<int64_t>(bytes.size()));
    const std::string_view part = bytes.substr(0, static_cast<size_t>(n));
    RETURN_IF_ERROR(WriteAll(fd_, part, StagedPath(current_)));
    hash_->Update(part);
    current_written_ += n;
    received_ += n;
    bytes.remove_prefix(static_cast<size_t>(n));
  }
}

// --- FileStore ----------------------------------------------------------------

FileStore::FileStore(Options options)
    : options_(std::move(options)), numbers_(options_.ids, options_.now) {}

std::string FileStore::BlobPath(const std::string& sha256) const {
  return (fs::path(options_.root) / "blobs" / sha256).string();
}

std::string FileStore::ObjectPath(const std::string& id) const {
  return (fs::path(options_.root) / "objects" / id).string();
}

absl::StatusOr<std::unique_ptr<FileStore>> FileStore::Open(Options options) {
  if (options.database == nullptr || options.database->session().cf(kColumnFamily) == nullptr) {
    return absl::InvalidArgumentError("the file store needs the \"files\" column family");
  }
  std::unique_ptr<FileStore> store(new FileStore(std::move(options)));
  RETURN_IF_ERROR(store->Recover());
  return store;
}

absl::Status FileStore::Recover() {
  const fs::path root = options_.root;
  RETURN_IF_ERROR(MakeDir(root.string()));
  for (const char* sub : {"blobs", "objects", "staging"})
    RETURN_IF_ERROR(MakeDir((root / sub).string()));

  absl::MutexLock lock(&mu_);
  std::string value;
  rocksdb::Status s;
  {
    const Database::Session session = options_.database->session();
    rocksdb::ColumnFamilyHandle* const cf = session.cf(kColumnFamily);
    std::unique_ptr<rocksdb::Iterator> it(session.db()->NewIterator(rocksdb::ReadOptions(), cf));
    for (it->Seek(std::string(1, kFilePrefix)); it->Valid(); it->Next()) {
      if (it->key().size() != 9 || it->key()[0] != kFilePrefix) break;
      v1::File file;
      if (!file.ParseFromArray(it->value().data(), static_cast<int>(it->value().size()))) {
        Log(LogLevel::kWarning, "files: a stored file record cannot be read; it is left out");
        continue;
      }
      const uint64_t n = FileNumber(file.id());
      if (n == 0) continue;
      files_[n] = std::move(file);
      next_id_ = std::max(next_id_, n + 1);
    }
    if (!it->status().ok()) return FromRocksDb(it->status(), "cannot read the file records");
    s = session.db()->Get(rocksdb::ReadOptions(), cf, kNextFileKey, &value);
  }
  uint64_t stored_next = 0;
  if (s.ok() && absl::SimpleAtoi(value, &stored_next)) next_id_ = std::max(next_id_, stored_next);

  // What a crash left half done.
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(root / "staging", ec)) {
    fs::remove_all(entry.path(), ec);
  }
  for (const auto& entry : fs::directory_iterator(root / "objects", ec)) {
    const uint64_t n = FileNumber(entry.path().filename().string());
    if (n == 0 || files_.count(n) == 0) {
      Log(LogLevel::kInfo,
          absl::StrCat("files: removing ", entry.path().string(), ", which no stored file owns"));
      fs::remove_all(entry.path(), ec);
    }
  }
  // A record whose folder is gone: a commit refused after its write's log
  // append had landed (its undo removed the folder), whose record came back
  // at the reopen. It holds nothing: removed (its id is not given again).
  {
    const Database::Session session = options_.database->session();
    rocksdb::ColumnFamilyHandle* const cf = session.cf(kColumnFamily);
    rocksdb::WriteBatch orphans;
    for (auto it = files_.begin(); it != files_.end();) {
      std::error_code exists_ec;
      const bool exists = fs::exists(ObjectPath(it->second.id()), exists_ec);
      if (exists || exists_ec) {  // there, or not known to be gone
        ++it;
        continue;
      }
      Log(LogLevel::kWarning, absl::StrCat("files: ", it->second.id(),
                                           "'s record came back without its files (an upload "
                                           "refused as it was stored); it is removed"));
      orphans.Delete(cf, FileKey(it->first));
      it = files_.erase(it);
    }
    if (orphans.Count() > 0) {
      rocksdb::WriteOptions write;
      write.sync = true;
      RETURN_IF_ERROR(FromRocksDb(options_.database->Write(session, write, &orphans),
                                  "cannot remove file records without their files"));
    }
  }
  stored_bytes_ = 0;
  for (const auto& entry : fs::directory_iterator(root / "blobs", ec)) {
    struct stat st;
    if (::lstat(entry.path().c_str(), &st) != 0) continue;
    if (!S_ISREG(st.st_mode) || st.st_nlink <= 1) {
      fs::remove_all(entry.path(), ec);
      continue;
    }
    stored_bytes_ += st.st_size;
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<FileStore::Upload>> FileStore::BeginUpload(
    std::vector<v1::FileEntry> entries) {
  uint64_t n;
  {
    absl::MutexLock lock(&mu_);
    n = next_upload_++;
  }
  const std::string dir = (fs::path(options_.root) / "staging" / absl::StrCat(n)).string();
  std::error_code ec;
  fs::remove_all(dir, ec);
  if (::mkdir(dir.c_str(), 0750) != 0) return IoError(errno, absl::StrCat("cannot create ", dir));
  std::unique_ptr<Upload> upload(new Upload(dir, std::move(entries)));
  // Empty entries are complete at once.
  RETURN_IF_ERROR(upload->Write(""));
  return upload;
}

absl::StatusOr<v1::File> FileStore::Commit(std::unique_ptr<Upload> upload, v1::File file) {
  if (!upload->complete()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the upload is incomplete (", upload->received(), " of ", upload->total(), " bytes)"));
  }
  absl::MutexLock lock(&mu_);
  const uint64_t number = numbers_.Next(next_id_);
  const std::string id = absl::StrCat("file-", number);
  const std::string object = ObjectPath(id);
  std::vector<std::string> new_blobs;
  int64_t new_bytes = 0;
  // Undoes what was done when a step fails.
  auto undo = [&] {
    std::error_code ec;
    fs::remove_all(object, ec);
    for (const std::string& blob : new_blobs) ::unlink(blob.c_str());
  };
  auto fail = [&](absl::Status status) -> absl::Status {
    undo();
    return status;
  };

  std::set<std::string> seen;
  for (size_t i = 0; i < upload->entries().size(); ++i) {
    const v1::FileEntry& entry = upload->entries()[i];
    const std::string blob = BlobPath(entry.sha256());
    if (!seen.insert(entry.sha256()).second) continue;
    struct stat st;
    if (::lstat(blob.c_str(), &st) == 0 && S_ISREG(st.st_mode) && st.st_size == entry.size()) {
      continue;  // stored already
    }
    const std::string staged = upload->StagedPath(i);
    if (::chmod(staged.c_str(), 0440) != 0) {
      return fail(IoError(errno, absl::StrCat("cannot make ", staged, " read-only")));
    }
    ::unlink(blob.c_str());  // a damaged blob of another size is replaced
    if (absl::Status linked = Link(staged, blob); !linked.ok()) return fail(linked);
    new_blobs.push_back(blob);
    new_bytes += entry.size();
  }
  if (!new_blobs.empty()) {
    if (absl::Status s = SyncPath((fs::path(options_.root) / "blobs").string()); !s.ok()) {
      return fail(s);
    }
  }
  if (::mkdir(object.c_str(), 0750) != 0) {
    return fail(IoError(errno, absl::StrCat("cannot create ", object)));
  }
  for (const v1::FileEntry& entry : upload->entries()) {
    if (absl::Status s = Link(BlobPath(entry.sha256()), (fs::path(object) / entry.name()).string());
        !s.ok()) {
      return fail(s);
    }
  }
  if (absl::Status s = SyncPath(object); !s.ok()) return fail(s);
  if (absl::Status s = SyncPath((fs::path(options_.root) / "objects").string()); !s.ok()) {
    return fail(s);
  }

  file.set_id(id);
  file.clear_entries();
  file.clear_in_use_by();
  int64_t bytes = 0;
  for (const v1::FileEntry& entry : upload->entries()) {
    *file.add_entries() = entry;
    bytes += entry.size();
  }
  file.set_bytes(bytes);
  *file.mutable_create_time() = ToTimestamp(options_.now());
  const Database::Session session = options_.database->session();
  rocksdb::ColumnFamilyHandle* const cf = session.cf(kColumnFamily);
  rocksdb::WriteBatch batch;
  batch.Put(cf, FileKey(number), file.SerializeAsString());
  batch.Put(cf, kNextFileKey, absl::StrCat(number + 1));
  rocksdb::WriteOptions write;
  write.sync = true;
  if (rocksdb::Status s = options_.database->Write(session, write, &batch); !s.ok()) {
    next_id_ = number + 1;  // it may come back at a reopen: the id is not given again
    return fail(FromRocksDb(s, absl::StrCat("cannot store ", id)));
  }
  files_[number] = file;
  next_id_ = number + 1;
  stored_bytes_ += new_bytes;
  return file;
}

absl::StatusOr<v1::File> FileStore::Get(const std::string& id) const {
  absl::MutexLock lock(&mu_);
  auto it = files_.find(FileNumber(id));
  if (it == files_.end()) return absl::NotFoundError(absl::StrCat("no file ", QuoteUserText(id)));
  return it->second;
}

std::vector<v1::File> FileStore::List() const {
  absl::MutexLock lock(&mu_);
  std::vector<v1::File> out;
  out.reserve(files_.size());
  for (auto it = files_.rbegin(); it != files_.rend(); ++it) out.push_back(it->second);
  return out;
}

size_t FileStore::size() const {
  absl::MutexLock lock(&mu_);
  return files_.size();
}

int64_t FileStore::stored_bytes() const {
  absl::MutexLock lock(&mu_);
  return stored_bytes_;
}

absl::StatusOr<int64_t> FileStore::Delete(const std::string& id) {
  absl::MutexLock lock(&mu_);
  const uint64_t number = FileNumber(id);
  auto it = files_.find(number);
  if (it == files_.end()) return absl::NotFoundError(absl::StrCat("no file ", QuoteUserText(id)));
  const Database::Session session = options_.database->session();
  rocksdb::ColumnFamilyHandle* const cf = session.cf(kColumnFamily);
  rocksdb::WriteBatch batch;
  batch.Delete(cf, FileKey(number));
  rocksdb::WriteOptions write;
  write.sync = true;
  if (rocksdb::Status s = options_.database->Write(session, write, &batch); !s.ok()) {
    return FromRocksDb(s, absl::StrCat("cannot delete ", id));
  }
  const v1::File file = std::move(it->second);
  files_.erase(it);
  // The record is gone: what is left is removed now, or at the next open.
  std::error_code ec;
  fs::remove_all(ObjectPath(id), ec);
  int64_t freed = 0;
  std::set<std::string> seen;
  for (const v1::FileEntry& entry : file.entries()) {
    if (!seen.insert(entry.sha256()).second) continue;
    const std::string blob = BlobPath(entry.sha256());
    struct stat st;
    if (::lstat(blob.c_str(), &st) == 0 && st.st_nlink <= 1 && ::unlink(blob.c_str()) == 0) {
      freed += st.st_size;
    }
  }
  stored_bytes_ -= freed;
  return freed;
}

}  // namespace ftd::storage
