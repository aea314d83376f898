// The safetensors format (https://huggingface.co/docs/safetensors): an
// 8-byte little-endian header length, a JSON header naming each tensor's
// dtype, shape and byte range, then the bytes.
//
// SafetensorsFile memory-maps a file and checks everything before handing out
// a byte: the header length, the JSON, every dtype, shape and range (inside
// the data, consistent with the shape, not overlapping). No LibTorch here.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace ftd::training {

enum class DType { kF64, kF32, kF16, kBF16, kI64, kI32, kI16, kI8, kU8, kBool };

// "F32", "BF16", ... and the element size in bytes.
const char* DTypeName(DType dtype);
size_t DTypeSize(DType dtype);

struct TensorInfo {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  // Byte range within the data section.
  uint64_t begin = 0;
  uint64_t end = 0;

  int64_t numel() const;
};

class SafetensorsFile {
 public:
  // Errors (the message names the file): NOT_FOUND when it does not exist;
  // DATA_LOSS when it is truncated or its header is malformed or
  // inconsistent; UNIMPLEMENTED for a dtype this reader does not know.
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  // In header order.
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  // nullptr when absent.
  const TensorInfo* Find(const std::string& name) const;
  // The tensor's bytes (little-endian, row-major), valid while this lives,
  // through a mapping of the file: for the daemon's own files (uploads,
  // checkpoints). Reading a mapped page of a file that someone truncated
  // since is SIGBUS: a file a user may still change is read with Read().
  std::string_view Data(const TensorInfo& tensor) const;
  // Copies the tensor's bytes to `dst` (end - begin bytes) with read(2).
  // Errors: DATA_LOSS naming the file when it is shorter now (truncated
  // since it was opened); UNAVAILABLE when it cannot be read.
  absl::Status Read(const TensorInfo& tensor, void* dst) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  SafetensorsFile() = default;

  std::string path_;
  int fd_ = -1;
  uint64_t data_offset_ = 0;  // of the data section in the file
  void* map_ = nullptr;
  size_t map_size_ = 0;
  const char* data_ = nullptr;  // start of the data section
  std::vector<TensorInfo> tensors_;
  std::map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

struct TensorToWrite {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  std::string_view bytes;  // numel * DTypeSize(dtype) bytes
};

// Writes a safetensors file (to a temporary name, then renamed into place).
// Errors: INVALID_ARGUMENT when a tensor's bytes do not match its shape;
// UNAVAILABLE when the file cannot be written.
absl::Status WriteSafetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                              const std::map<std::string, std::string>& metadata);

}  // namespace ftd::training
