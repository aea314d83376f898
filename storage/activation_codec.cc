#include "storage/activation_codec.h"

#include <zlib.h>

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace ftd::storage {
namespace {

constexpr char kMagic[4] = {'F', 'T', 'D', 'A'};
constexpr uint8_t kVersion = 1;

void PutLe32(char* out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out[i] = static_cast<char>((v >> (8 * i)) & 0xff);
}

uint32_t GetLe32(const char* in) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(in[i]);
  return v;
}

uint32_t Crc32(const char* data, size_t size) {
  uLong crc = crc32(0L, Z_NULL, 0);
  // zlib takes a uInt length: feed large payloads in pieces.
  while (size > 0) {
    const uInt piece = static_cast<uInt>(std::min<size_t>(size, 1u << 30));
    crc = crc32(crc, reinterpret_cast<const Bytef*>(data), piece);
    data += piece;
    size -= piece;
  }
  return static_cast<uint32_t>(crc);
}

}  // namespace

size_t ActivationDtypeSize(ActivationDtype dtype) {
  return dtype == ActivationDtype::kBf16 ? 2 : 4;
}

std::string EncodeActivation(ActivationDtype dtype, uint32_t tokens, uint32_t hidden,
                             const void* data) {
  const size_t payload = static_cast<size_t>(tokens) * hidden * ActivationDtypeSize(dtype);
  std::string value(kActivationHeaderSize + payload, '\0');
  char* out = value.data();
  std::memcpy(out, kMagic, 4);
  out[4] = static_cast<char>(kVersion);
  out[5] = static_cast<char>(dtype);
  PutLe32(out + 8, tokens);
  PutLe32(out + 12, hidden);
  if (payload > 0) std::memcpy(out + kActivationHeaderSize, data, payload);
  PutLe32(out + 16, Crc32(out + kActivationHeaderSize, payload));
  return value;
}

absl::StatusOr<ActivationView> DecodeActivation(std::string_view value) {
  if (value.size() < kActivationHeaderSize) {
    return absl::DataLossError(
        absl::StrCat("activation value of ", value.size(), " bytes is shorter than its header"));
  }
  const char* in = value.data();
  if (std::memcmp(in, kMagic, 4) != 0) return absl::DataLossError("activation value: bad magic");
  if (static_cast<uint8_t>(in[4]) != kVersion) {
    return absl::DataLossError(
        absl::StrCat("activation value: unknown format version ", static_cast<int>(in[4])));
  }
  const uint8_t dtype = static_cast<uint8_t>(in[5]);
  if (dtype != static_cast<uint8_t>(ActivationDtype::kBf16) &&
      dtype != static_cast<uint8_t>(ActivationDtype::kFp32)) {
    return absl::DataLossError(absl::StrCat("activation value: unknown dtype ", int{dtype}));
  }
  ActivationView view;
  view.dtype = static_cast<ActivationDtype>(dtype);
  view.tokens = GetLe32(in + 8);
  view.hidden = GetLe32(in + 12);
  const size_t payload =
      static_cast<size_t>(view.tokens) * view.hidden * ActivationDtypeSize(view.dtype);
  if (value.size() - kActivationHeaderSize != payload) {
    return absl::DataLossError(absl::StrCat("activation value: ", view.tokens, " x ", view.hidden,
                                            " values need ", payload, " bytes, the value has ",
                                            value.size() - kActivationHeaderSize));
  }
  if (Crc32(in + kActivationHeaderSize, payload) != GetLe32(in + 16)) {
    return absl::DataLossError("activation value: checksum mismatch");
  }
  view.data = in + kActivationHeaderSize;
  return view;
}

}  // namespace ftd::storage
