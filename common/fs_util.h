// File-system helpers shared by the daemon's components.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace ftd {

// An I/O error `err` (an errno value) while doing `what` ("cannot write
// /x"): RESOURCE_EXHAUSTED for a full disk or quota (ENOSPC, EDQUOT), so that
// callers can tell it from other failures (EFBIG too); UNAVAILABLE otherwise. The
// message is `what` and the system's reason.
absl::Status IoError(int err, const std::string& what);

// A string that changes when the file at `path` is replaced or written (its
// inode, size and modification time, following links); "" when it is gone.
// For re-reading files as they change (rotated secrets).
std::string FileVersion(const std::string& path);

// The absolute, symlink-resolved form of `path` (which need not exist).
// Errors: INVALID_ARGUMENT when `path` is relative or cannot be resolved.
absl::StatusOr<std::string> CanonicalPath(const std::string& path);

// True when canonical `path` is `root` or lies below it (whole components:
// /data2 is not inside /data).
bool IsWithin(const std::string& path, const std::string& root);

// Reads a whole file. Errors: NOT_FOUND when it does not exist,
// FAILED_PRECONDITION when it is not a regular file, UNAVAILABLE when it
// cannot be read. Messages name the path.
absl::StatusOr<std::string> ReadFile(const std::string& path);

// Opens absolute `path` (open(2) `flags`) with no component of it followed
// if it is a symbolic link (each opened with O_NOFOLLOW from "/"): for the
// canonical paths of user data checked at submit, so that a link swapped in
// since, anywhere on the path, leads nowhere. -1 with errno (ELOOP for a
// link) on failure.
int OpenNoLinks(const std::string& path, int flags);

// Reads a whole regular file through OpenNoLinks (a FIFO in its place does
// not block), of at most `max_bytes` (what a user's file can make the
// daemon allocate). Errors: as ReadFile's; FAILED_PRECONDITION for a link
// on the path, a file that is not regular, or one larger than `max_bytes`.
inline constexpr int64_t kMaxReadFileBytes = int64_t{2000} << 20;
// ... and of a JSON settings file of a model folder (config.json,
// tokenizer_config.json, a shard index), which is a few KiB.
inline constexpr int64_t kMaxJsonFileBytes = int64_t{16} << 20;
absl::StatusOr<std::string> ReadFileNoFollow(const std::string& path,
                                             int64_t max_bytes = kMaxReadFileBytes);

// fsync of a file or a folder. Errors: IoError's, naming the path.
absl::Status SyncPath(const std::string& path);

// Writes all of `data` to the open file `fd` (named `path` in errors),
// retrying short writes. Errors: IoError's.
absl::Status WriteAll(int fd, std::string_view data, const std::string& path);

// Writes `contents` to `path` so that a reader sees the old file or the new
// one, never a part: a temporary file beside it, fsynced, renamed over
// `path`, and the folder fsynced. Errors: IoError's, naming the path.
absl::Status WriteFileAtomically(const std::string& path, const std::string& contents);

// Replaces folder `path` with the complete folder `staged` (beside it, on
// the same file system): every file in `staged` and `staged` itself are
// fsynced, an old `path` is moved aside and removed, `staged` renamed to
// `path`, and the parent fsynced. Errors: IoError's, naming the path.
absl::Status ReplaceFolder(const std::string& staged, const std::string& path);

}  // namespace ftd
