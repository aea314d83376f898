// FileManager: datasets and models uploaded through the API, over the
// content-addressed FileStore. It checks an upload's header and the
// daemon's limits before a byte is stored, checks the content before it is
// kept (a dataset parses; a model's config, vocabulary and weights' headers
// read), describes files, resolves the ids a job spec names, and keeps a
// file from deletion while a queued or running job uses it (a pin per job).
//
// Thread-safe. Lock order: JobManager, then FileManager.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "ftd/v1/ftd.pb.h"
#include "server/core/caller.h"
#include "storage/file_store.h"

namespace ftd::core {

class FileManager {
 public:
  struct Options {
    storage::FileStore* store = nullptr;  // not owned; outlives the manager
    // One entry's size at most (--max_file_mb).
    int64_t max_file_bytes = int64_t{4} << 30;
    // Stored bytes at most, with uploads under way counted at their
    // declared size (--max_files_mb; 0: no limit).
    int64_t max_stored_bytes = int64_t{100} << 30;
    // Files at most, uploads under way included (--max_files; 0: no limit).
    int64_t max_files = 10000;
    // Uploads under way at once (--max_uploads).
    int max_uploads = 8;
    // Bytes one tenant's files may hold, uploads under way included (each
    // file counted whole, shared content or not; 0: no limit).
    int64_t max_tenant_bytes = 0;
    // Uploads one tenant may have under way at once, and files it may keep
    // (uploads under way included); 0: no limit.
    int max_tenant_uploads = 0;
    int64_t max_tenant_files = 0;
    // An upload that has sent nothing for this long gives up its place (and
    // its staged bytes) when another upload needs the place or the space
    // (--upload_idle_timeout; zero: never), so that stalled clients cannot
    // hold every place.
    absl::Duration upload_idle_timeout = absl::Seconds(60);
    std::function<absl::Time()> now = [] { return absl::Now(); };
  };

  // Limits on a header, besides Options'.
  static constexpr int kMaxEntries = 64;
  static constexpr size_t kMaxNameBytes = 128;
  static constexpr size_t kMaxDisplayName = 200;

  // One upload stream. Destroyed before Finish succeeds, it keeps nothing.
  // Its calls come from one thread at a time; the manager may drop it when
  // it is idle (see upload_idle_timeout), and its calls then fail with
  // ABORTED, reason UPLOAD_IDLE.
  class Upload {
   public:
    ~Upload();
    Upload(const Upload&) = delete;
    Upload& operator=(const Upload&) = delete;

    // The next chunk. Errors: INVALID_ARGUMENT naming the field (a digest
    // that does not match, bytes past the declared sizes); IoError's.
    absl::Status Write(std::string_view chunk);
    // The stream's end: checks that every byte came and the content, then
    // stores the file. Errors: INVALID_ARGUMENT (an upload that ended
    // early; content that does not parse, naming the entry); the store's.
    absl::StatusOr<v1::File> Finish();

   private:
    friend class FileManager;
    Upload(FileManager* manager, v1::UploadFileRequest::Header header, std::string tenant,
           std::unique_ptr<storage::FileStore::Upload> staged);
    absl::Status CheckContent(v1::File* file) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

    absl::Status DroppedError() const;

    FileManager* const manager_;
    const v1::UploadFileRequest::Header header_;
    const std::string tenant_;
    // Taken after the manager's mu_ (which the manager holds when it drops
    // an idle upload, with TryLock, so a busy upload is never waited for).
    absl::Mutex mu_;
    std::unique_ptr<storage::FileStore::Upload> staged_ ABSL_GUARDED_BY(mu_);
    int64_t reserved_bytes_ ABSL_GUARDED_BY(mu_) = 0;
    absl::Time last_activity_ ABSL_GUARDED_BY(mu_);
    // Dropped for idleness: its place and bytes are given back already.
    bool dropped_ ABSL_GUARDED_BY(mu_) = false;
  };

  explicit FileManager(Options options) : options_(std::move(options)) {}

  // Checks `header` (kind, entries' names, sizes and digests, a dataset's
  // format) and the limits, and starts the upload.
  // Errors: INVALID_ARGUMENT naming the header's field; RESOURCE_EXHAUSTED
  // with reason FILE_TOO_LARGE, STORAGE_FULL, TOO_MANY_FILES or
  // TOO_MANY_UPLOADS; IoError's.
  // The file is `caller`'s tenant's.
  absl::StatusOr<std::unique_ptr<Upload>> BeginUpload(v1::UploadFileRequest::Header header,
                                                      const Caller& caller = {});

  // Errors: NOT_FOUND.
  // Another tenant's file is NOT_FOUND, as one that does not exist.
  absl::StatusOr<v1::File> Get(const std::string& file_id, const Caller& caller = {}) const;
  // Errors: INVALID_ARGUMENT for a bad page size or token.
  // The caller's tenant's files (an admin's: every one).
  absl::StatusOr<v1::ListFilesResponse> List(const v1::ListFilesRequest& request,
                                             const Caller& caller = {}) const;
  // Errors: NOT_FOUND; FAILED_PRECONDITION (reason FILE_IN_USE) while a job
  // holds a pin on it; the store's.
  absl::StatusOr<v1::DeleteFileResponse> Delete(const std::string& file_id,
                                                const Caller& caller = {});

  // Where a job finds an uploaded file of `kind`: a dataset's file, a
  // model's folder; `file` is its record.
  struct Resolved {
    std::string path;
    v1::File file;
  };
  // Errors: INVALID_ARGUMENT on `field` for an unknown id or a file of
  // another kind.
  // Another tenant's file is unknown to `caller`.
  absl::StatusOr<Resolved> Resolve(const std::string& field, const std::string& file_id,
                                   v1::FileKind kind, const Caller& caller) const;

  // Keeps `file_ids` while `job_id` is queued or running. Errors:
  // INVALID_ARGUMENT when one no longer exists (nothing is pinned then).
  absl::Status Pin(const std::string& job_id, const std::vector<std::string>& file_ids);
  void Unpin(const std::string& job_id);
  // The pins of `from` become `to`'s, at once.
  void MovePins(const std::string& from, const std::string& to);

 private:
  // Drops the uploads idle for upload_idle_timeout.
  // Their staged bytes go to `dropped_staging`, for the caller to remove
  // once it has released mu_ (JobManager waits on mu_ while pinning).
  void DropIdleUploadsLocked(
      std::vector<std::unique_ptr<storage::FileStore::Upload>>* dropped_staging)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A tenant's stored files (each counted whole).
  struct TenantUsage {
    int64_t files = 0;
    int64_t bytes = 0;
  };
  TenantUsage UsageOf(const std::string& tenant) const;
  std::vector<std::string> UsersLocked(const std::string& file_id) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Options options_;
  mutable absl::Mutex mu_;
  int uploads_ ABSL_GUARDED_BY(mu_) = 0;
  std::set<Upload*> live_ ABSL_GUARDED_BY(mu_);
  int64_t reserved_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  // Of reserved_bytes_, by tenant.
  std::map<std::string, int64_t> tenant_reserved_ ABSL_GUARDED_BY(mu_);
  // Uploads under way, by tenant.
  std::map<std::string, int> tenant_uploads_ ABSL_GUARDED_BY(mu_);
  // file id -> the jobs that pin it.
  // Delete checks and deletes under mu_, so no pin comes in between.
  std::map<std::string, std::set<std::string>> pins_ ABSL_GUARDED_BY(mu_);
};

// The uploaded files a spec names (dataset and model file ids).
std::vector<std::string> FileIdsOf(const v1::JobSpec& spec);

}  // namespace ftd::core
