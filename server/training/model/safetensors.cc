#include "server/training/model/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "common/fs_util.h"
#include "common/json_escape.h"
#include "common/json_limits.h"
#include "common/quote.h"
#include "google/protobuf/struct.pb.h"

namespace ftd::training {
namespace {

constexpr uint64_t kMaxHeader = 100ull << 20;

bool ParseDType(const std::string& s, DType* out) {
  static const std::pair<const char*, DType> kNames[] = {
      {"F64", DType::kF64}, {"F32", DType::kF32},  {"F16", DType::kF16}, {"BF16", DType::kBF16},
      {"I64", DType::kI64}, {"I32", DType::kI32},  {"I16", DType::kI16}, {"I8", DType::kI8},
      {"U8", DType::kU8},   {"BOOL", DType::kBool}};
  for (const auto& [name, dtype] : kNames) {
    if (s == name) {
      *out = dtype;
      return true;
    }
  }
  return false;
}

bool AsUint(const google::protobuf::Value& v, uint64_t* out) {
  if (!v.has_number_value()) return false;
  double d = v.number_value();
  if (!(d >= 0) || d > 9007199254740992.0 || d != std::floor(d)) return false;
  *out = static_cast<uint64_t>(d);
  return true;
}

// pread(2) of `n` bytes at `offset`, retried on short reads: false at the
// file's end (errno 0) or on an error (errno set).
bool PreadAll(int fd, void* dst, uint64_t n, uint64_t offset) {
  auto* out = static_cast<char*>(dst);
  while (n > 0) {
    const ssize_t got = ::pread(fd, out, n, static_cast<off_t>(offset));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) {
      if (got == 0) errno = 0;
      return false;
    }
    out += got;
    n -= static_cast<uint64_t>(got);
    offset += static_cast<uint64_t>(got);
  }
  return true;
}

}  // namespace

const char* DTypeName(DType dtype) {
  switch (dtype) {
    case DType::kF64:
      return "F64";
    case DType::kF32:
      return "F32";
    case DType::kF16:
      return "F16";
    case DType::kBF16:
      return "BF16";
    case DType::kI64:
      return "I64";
    case DType::kI32:
      return "I32";
    case DType::kI16:
      return "I16";
    case DType::kI8:
      return "I8";
    case DType::kU8:
      return "U8";
    case DType::kBool:
      return "BOOL";
  }
  return "?";
}

size_t DTypeSize(DType dtype) {
  switch (dtype) {
    case DType::kF64:
    case DType::kI64:
      return 8;
    case DType::kF32:
    case DType::kI32:
      return 4;
    case DType::kF16:
    case DType::kBF16:
    case DType::kI16:
      return 2;
    default:
      return 1;
  }
}

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  auto corrupt = [&](const std::string& why) {
    return absl::DataLossError(absl::StrCat(path, ": not a valid safetensors file: ", why));
  };
  // Not through a symbolic link (a model folder's files are regular files).
  int fd = OpenNoLinks(path, O_RDONLY | O_NONBLOCK);
  if (fd < 0) {
    if (errno == ENOENT) return absl::NotFoundError(absl::StrCat(path, " does not exist"));
    if (errno == ELOOP) {
      return absl::FailedPreconditionError(absl::StrCat(
          path, " is a symbolic link; ftd reads a model folder's files only as regular files"));
    }
    return absl::UnavailableError(absl::StrCat("cannot open ", path, ": ", std::strerror(errno)));
  }
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return absl::FailedPreconditionError(absl::StrCat(path, " is not a regular file"));
  }
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size < 8) {
    ::close(fd);
    return corrupt(absl::StrCat("it has ", size, " bytes, fewer than the 8-byte header length"));
  }
  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = path;
  file->fd_ = fd;  // closed with the file
  // The header with read(2), not through the mapping: a file truncated
  // meanwhile is then an error, not SIGBUS.
  unsigned char length[8];
  if (!PreadAll(fd, length, 8, 0)) return corrupt("it was truncated while it was read");
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | length[i];
  if (header_len > kMaxHeader)
    return corrupt("its header length is implausible (more than 100 MiB)");
  if (8 + header_len > size) {
    return corrupt(absl::StrCat("the header needs ", header_len, " bytes but the file has ",
                                size - 8, " after the length (truncated?)"));
  }
  std::string header(header_len, '\0');
  if (!PreadAll(fd, header.data(), header_len, 8)) {
    return corrupt("it was truncated while it was read");
  }
  void* map = mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  if (map == MAP_FAILED) {
    return absl::UnavailableError(absl::StrCat("cannot map ", path, ": ", std::strerror(errno)));
  }
  file->map_ = map;
  file->map_size_ = size;
  const auto* bytes = static_cast<const unsigned char*>(map);
  google::protobuf::Struct json;
  if (absl::Status parsed = ParseJson(header, &json); !parsed.ok()) {
    return corrupt(IsJsonTooDeep(parsed) ? absl::StrCat("the header: ", parsed.message())
                                         : "the header is not a JSON object");
  }
  file->data_ = reinterpret_cast<const char*>(bytes + 8 + header_len);
  file->data_offset_ = 8 + header_len;
  const uint64_t data_size = size - 8 - header_len;

  for (const auto& [name, value] : json.fields()) {
    if (name == "__metadata__") {
      if (!value.has_struct_value()) return corrupt("__metadata__ is not an object");
      for (const auto& [k, v] : value.struct_value().fields()) {
        if (!v.has_string_value())
          return corrupt(absl::StrCat("__metadata__.", QuoteUserText(k), " is not a string"));
        file->metadata_[k] = v.string_value();
      }
      continue;
    }
    if (!value.has_struct_value())
      return corrupt(absl::StrCat("entry ", QuoteUserText(name), " is not an object"));
    const auto& fields = value.struct_value().fields();
    TensorInfo info;
    info.name = name;
    auto dtype = fields.find("dtype");
    if (dtype == fields.end() || !dtype->second.has_string_value()) {
      return corrupt(absl::StrCat("tensor ", QuoteUserText(name), " has no dtype"));
    }
    if (!ParseDType(dtype->second.string_value(), &info.dtype)) {
      return absl::UnimplementedError(
          absl::StrCat(path, ": tensor ", QuoteUserText(name), " has dtype ",
                       QuoteUserText(dtype->second.string_value()), ", which ftd does not read"));
    }
    auto shape = fields.find("shape");
    if (shape == fields.end() || !shape->second.has_list_value()) {
      return corrupt(absl::StrCat("tensor ", QuoteUserText(name), " has no shape"));
    }
    uint64_t numel = 1;
    for (const auto& d : shape->second.list_value().values()) {
      uint64_t dim;
      if (!AsUint(d, &dim))
        return corrupt(absl::StrCat("tensor ", QuoteUserText(name), " has a bad shape"));
      info.shape.push_back(static_cast<int64_t>(dim));
      if (dim != 0 && numel > (1ull << 62) / dim) {
        return corrupt(absl::StrCat("tensor ", QuoteUserText(name), " is impossibly large"));
      }
      numel *= dim;
    }
    auto offsets = fields.find("data_offsets");
    if (offsets == fields.end() || !offsets->second.has_list_value() ||
        offsets->second.list_value().values_size() != 2 ||
        !AsUint(offsets->second.list_value().values(0), &info.begin) ||
        !AsUint(offsets->second.list_value().values(1), &info.end) || info.begin > info.end) {
      return corrupt(absl::StrCat("tensor ", QuoteUserText(name), " has bad data_offsets"));
    }
    if (info.end > data_size) {
      return corrupt(absl::StrCat("tensor ", QuoteUserText(name), " ends at byte ", info.end,
                                  " but the data has ", data_size, " bytes (truncated?)"));
    }
    if (info.end - info.begin != numel * DTypeSize(info.dtype)) {
      return corrupt(absl::StrCat("tensor ", QuoteUserText(name), " has ", info.end - info.begin,
                                  " bytes but its shape and dtype need ",
                                  numel * DTypeSize(info.dtype)));
    }
    file->tensors_.push_back(std::move(info));
  }
  // Byte ranges must not overlap.
  std::vector<const TensorInfo*> by_offset;
  for (const auto& t : file->tensors_) by_offset.push_back(&t);
  std::sort(by_offset.begin(), by_offset.end(),
            [](const TensorInfo* a, const TensorInfo* b) { return a->begin < b->begin; });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    if (by_offset[i]->begin < by_offset[i - 1]->end) {
      return corrupt(absl::StrCat("tensors ", QuoteUserText(by_offset[i - 1]->name), " and ",
                                  QuoteUserText(by_offset[i]->name), " overlap"));
    }
  }
  for (size_t i = 0; i < file->tensors_.size(); ++i) file->index_[file->tensors_[i].name] = i;
  return file;
}

SafetensorsFile::~SafetensorsFile() {
  if (map_ != nullptr) munmap(map_, map_size_);
  if (fd_ >= 0) ::close(fd_);
}

const TensorInfo* SafetensorsFile::Find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

std::string_view SafetensorsFile::Data(const TensorInfo& tensor) const {
  return std::string_view(data_ + tensor.begin, tensor.end - tensor.begin);
}

absl::Status SafetensorsFile::Read(const TensorInfo& tensor, void* dst) const {
  errno = 0;
  if (!PreadAll(fd_, dst, tensor.end - tensor.begin, data_offset_ + tensor.begin)) {
    if (errno != 0) {
      return absl::UnavailableError(
          absl::StrCat("cannot read ", path_, ": ", std::strerror(errno)));
    }
    return absl::DataLossError(absl::StrCat(path_, ": tensor ", QuoteUserText(tensor.name),
                                            " is cut short: the file was truncated after it "
                                            "was opened"));
  }
  return absl::OkStatus();
}

absl::Status WriteSafetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                              const std::map<std::string, std::string>& metadata) {
  std::string header = "{";
  if (!metadata.empty()) {
    header += "\"__metadata__\":{";
    bool first = true;
    for (const auto& [k, v] : metadata) {
      if (!first) header += ",";
      first = false;
      AppendJsonString(k, &header);
      header += ":";
      AppendJsonString(v, &header);
    }
    header += "}";
  }
  uint64_t offset = 0;
  for (const TensorToWrite& t : tensors) {
    int64_t numel = 1;
    for (int64_t d : t.shape) numel *= d;
    if (static_cast<uint64_t>(numel) * DTypeSize(t.dtype) != t.bytes.size()) {
      return absl::InvalidArgumentError(absl::StrCat("tensor \"", t.name, "\": ", t.bytes.size(),
                                                     " bytes do not match its shape"));
    }
    if (header.size() > 1) header += ",";
    AppendJsonString(t.name, &header);
    absl::StrAppend(&header, ":{\"dtype\":\"", DTypeName(t.dtype), "\",\"shape\":[");
    for (size_t i = 0; i < t.shape.size(); ++i) absl::StrAppend(&header, i ? "," : "", t.shape[i]);
    absl::StrAppend(&header, "],\"data_offsets\":[", offset, ",", offset + t.bytes.size(), "]}");
    offset += t.bytes.size();
  }
  header += "}";
  // Pad with spaces so the data starts 8-byte aligned, as the reference writer does.
  while ((8 + header.size()) % 8 != 0) header += " ";

  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    char len[8];
    uint64_t n = header.size();
    for (int i = 0; i < 8; ++i) len[i] = static_cast<char>((n >> (8 * i)) & 0xff);
    out.write(len, 8);
    out.write(header.data(), static_cast<std::streamsize>(header.size()));
    for (const TensorToWrite& t : tensors) {
      out.write(t.bytes.data(), static_cast<std::streamsize>(t.bytes.size()));
    }
    out.close();
    if (!out) {
      const int err = errno;
      std::error_code ignored;
      std::filesystem::remove(tmp, ignored);
      return IoError(err != 0 ? err : EIO, absl::StrCat("cannot write ", tmp));
    }
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) return IoError(ec.value(), absl::StrCat("cannot write ", path));
  return absl::OkStatus();
}

}  // namespace ftd::training
