// OutputReader: a finished job's output (its model folder, or one file) as
// a download streams it: each file's name, size and SHA-256, then their
// bytes in order. Files are opened relative to the folder, already opened,
// without following symbolic links, and read through the descriptors the
// digests were taken from, so what is sent is what was described.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "ftd/v1/ftd.pb.h"

namespace ftd::core {

class OutputReader {
 public:
  // A folder's regular files (symbolic links and anything else are left
  // out, and logged), in name order; or, with `file_name`, that file alone.
  // Errors: NOT_FOUND when the folder or file is missing; FAILED_PRECONDITION
  // for a symbolic link where the folder or file should be; IoError's.
  static absl::StatusOr<std::unique_ptr<OutputReader>> Open(const std::string& folder,
                                                            const std::string& file_name = "");
  ~OutputReader();
  OutputReader(const OutputReader&) = delete;
  OutputReader& operator=(const OutputReader&) = delete;

  const std::vector<v1::FileEntry>& entries() const { return entries_; }
  // The next bytes, at most `max_bytes`; empty once everything was read.
  // Errors: IoError's; DATA_LOSS when a file shrank.
  absl::StatusOr<std::string> Next(size_t max_bytes);

  // Kept until the reader goes (a place among the downloads allowed).
  void Hold(std::shared_ptr<void> place) { place_ = std::move(place); }

 private:
  OutputReader() = default;

  std::shared_ptr<void> place_;
  std::string folder_;
  std::vector<v1::FileEntry> entries_;
  std::vector<int> fds_;
  size_t current_ = 0;
  int64_t offset_ = 0;
};

}  // namespace ftd::core
