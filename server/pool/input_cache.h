// InputCache: a worker daemon's copies of the files its replicas read,
// kept by SHA-256 (<dir>/blobs/<sha256>) so that a job's next run, and the
// next job on the same model or dataset, fetch nothing. Each replica gets a
// folder of its own (<dir>/runs/<id>/) laid out as a job's inputs are
// (model/, train/, validation/, checkpoints/), its files hard links to the
// copies. A file is fetched to a temporary name, checked against its
// digest and size, fsynced and renamed; past the size cap, the copies no
// replica links to go, the least recently used first.
//
// Thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "ftd/pool/v1/pool.pb.h"

namespace ftd::pool {

class InputCache {
 public:
  // Writes the file of `sha256` to the open descriptor `fd` (at most
  // `size` bytes): the worker's FetchFile call.
  using FetchFn = std::function<absl::Status(const std::string& sha256, int64_t size, int fd)>;

  struct Options {
    std::string dir;
    int64_t max_bytes = int64_t{20} << 30;
    FetchFn fetch;
  };

  // Creates the folders; removes what a previous process left in runs/.
  // Errors: UNAVAILABLE naming the folder.
  static absl::StatusOr<std::unique_ptr<InputCache>> Open(Options options);

  struct Layout {
    std::string model_dir;
    std::string train_path;
    std::string validation_path;  // empty without one
    std::string checkpoint_dir;
    std::string output_dir;
  };
  // Fetches what of `files` is not here and lays them out in a folder of
  // their own for replica `id`. Errors: INVALID_ARGUMENT for a file name
  // that is not one, DATA_LOSS for a file whose content is not its
  // digest's, the fetch's.
  absl::StatusOr<Layout> Prepare(const std::string& id, const std::vector<v1::InputFile>& files);
  // Removes replica `id`'s folder (its copies stay).
  void Release(const std::string& id);

  int64_t bytes() const;

 private:
  explicit InputCache(Options options) : options_(std::move(options)) {}
  // The copy of `file`, fetched when missing. Holds mu_.
  absl::StatusOr<std::string> Copy(const v1::InputFile& file);
  void EvictLocked();
  std::string RunDir(const std::string& id) const;

  const Options options_;
  mutable absl::Mutex mu_;
};

}  // namespace ftd::pool
