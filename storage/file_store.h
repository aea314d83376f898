// FileStore: uploaded files (datasets and models), stored by content in a
// folder of their own:
//   blobs/<sha256>        each distinct content once, read-only
//   objects/<id>/<name>   a file's entries: hard links to its blobs, so a
//                         model's folder loads like any checkpoint folder
//   staging/<n>/          uploads under way
// and each file's record (v1::File) in the database's "files" column
// family, written synced. A file exists once its record is stored; what a
// crash leaves half done (a staged upload, an object folder without a
// record, a blob no file links) is removed when the store opens.
//
// It knows nothing of what the files hold; core::FileManager checks that
// and the limits. Thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/sha256.h"
#include "ftd/v1/ftd.pb.h"
#include "storage/database.h"
#include "storage/id_numbers.h"

namespace ftd::storage {

class FileStore {
 public:
  static constexpr char kColumnFamily[] = "files";

  struct Options {
    std::string root;              // the folder; created when missing
    Database* database = nullptr;  // with kColumnFamily open; outlives the store
    std::function<absl::Time()> now = [] { return absl::Now(); };
    // How file ids are numbered (storage/id_numbers.h): opaque ones when
    // tenants share the daemon.
    IdScheme ids = IdScheme::kSequential;
  };

  // An upload under way: its entries' bytes arrive in order through Write.
  // Destroyed before Commit, it removes everything it wrote.
  class Upload {
   public:
    ~Upload();
    Upload(const Upload&) = delete;
    Upload& operator=(const Upload&) = delete;

    // Appends the next bytes. Errors: INVALID_ARGUMENT when they go past the
    // last entry's size, or when an entry completes with another SHA-256
    // than declared (failed_entry() says which); IoError's.
    absl::Status Write(std::string_view bytes);
    // The entry whose digest did not match, after such an error.
    std::optional<size_t> failed_entry() const { return failed_entry_; }
    // Every declared byte has arrived (and every digest matched).
    bool complete() const { return received_ == total_; }
    int64_t received() const { return received_; }
    int64_t total() const { return total_; }
    const std::vector<v1::FileEntry>& entries() const { return entries_; }
    // Where entry i lies while staged (complete entries only), for checks
    // of its content before Commit.
    std::string StagedPath(size_t i) const;

   private:
    friend class FileStore;
    Upload(std::string dir, std::vector<v1::FileEntry> entries);
    absl::Status OpenEntry();
    absl::Status CloseEntry();

    const std::string dir_;
    const std::vector<v1::FileEntry> entries_;
    int64_t total_ = 0;
    int64_t received_ = 0;
    size_t current_ = 0;  // the entry being written
    int64_t current_written_ = 0;
    int fd_ = -1;
    std::unique_ptr<Sha256> hash_;
    std::optional<size_t> failed_entry_;
  };

  static absl::StatusOr<std::unique_ptr<FileStore>> Open(Options options);
  ~FileStore() = default;

  // Starts an upload of these entries (names checked by the caller).
  // Errors: IoError's.
  absl::StatusOr<std::unique_ptr<Upload>> BeginUpload(std::vector<v1::FileEntry> entries);

  // Keeps a complete upload as a new file: its entries go into blobs
  // (sharing those already there), its folder under objects/, and `file`
  // (kind, name, details; id, bytes, entries and create time are filled in)
  // into the database. Errors: FAILED_PRECONDITION for an incomplete upload;
  // IoError's; the database's. On an error nothing is kept.
  absl::StatusOr<v1::File> Commit(std::unique_ptr<Upload> upload, v1::File file);

  // Errors: NOT_FOUND.
  absl::StatusOr<v1::File> Get(const std::string& id) const;
  // Every file, newest first.
  std::vector<v1::File> List() const;
  size_t size() const;
  // The folder of a file's entries (it exists while the file does).
  std::string ObjectPath(const std::string& id) const;

  // Deletes a file's record, then its folder and the blobs no other file
  // links. Returns the bytes freed. Errors: NOT_FOUND; the database's.
  absl::StatusOr<int64_t> Delete(const std::string& id);

  // Bytes of the stored blobs (shared content once).
  int64_t stored_bytes() const;

 private:
  explicit FileStore(Options options);
  absl::Status Recover();
  std::string BlobPath(const std::string& sha256) const;

  const Options options_;
  mutable absl::Mutex mu_;
  // By number (file-<n>), so that newest first is reverse order.
  std::map<uint64_t, v1::File> files_ ABSL_GUARDED_BY(mu_);
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
  IdNumbers numbers_ ABSL_GUARDED_BY(mu_);
  uint64_t next_upload_ ABSL_GUARDED_BY(mu_) = 1;
  int64_t stored_bytes_ ABSL_GUARDED_BY(mu_) = 0;
};

// "file-3" -> 3; 0 for anything else.
uint64_t FileNumber(const std::string& id);

}  // namespace ftd::storage
