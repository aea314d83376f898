// The value format of the activation cache: one training example's output of
// a frozen prefix (tokens x hidden), unpadded, behind a small header.
//
//   offset  size  field
//   0       4     magic "FTDA"
//   4       1     format version (1)
//   5       1     dtype (1 = bf16, 2 = fp32)
//   6       2     reserved, 0
//   8       4     tokens (little endian)
//   12      4     hidden size (little endian)
//   16      4     CRC-32 of the payload (zlib's)
//   20      4     reserved, 0
//   24      ...   payload: tokens x hidden values, row-major, little endian
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace ftd::storage {

enum class ActivationDtype : uint8_t { kBf16 = 1, kFp32 = 2 };

size_t ActivationDtypeSize(ActivationDtype dtype);

inline constexpr size_t kActivationHeaderSize = 24;

// A decoded value; `data` points into the value it was decoded from.
struct ActivationView {
  ActivationDtype dtype;
  uint32_t tokens = 0;
  uint32_t hidden = 0;
  const char* data = nullptr;  // tokens * hidden * ActivationDtypeSize(dtype) bytes
};

// Encodes `tokens` x `hidden` values of `dtype` read from `data`.
std::string EncodeActivation(ActivationDtype dtype, uint32_t tokens, uint32_t hidden,
                             const void* data);

// Checks and decodes a value. DATA_LOSS, with the reason, for a value that is
// too short, has another magic, version or dtype, a size that disagrees with
// its shape, or a payload whose checksum does not match.
absl::StatusOr<ActivationView> DecodeActivation(std::string_view value);

}  // namespace ftd::storage
