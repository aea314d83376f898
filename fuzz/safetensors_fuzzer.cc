// Fuzzes the safetensors reader (a user's or an upload's weights file): any
// bytes either open, with every tensor's range inside the data and its size
// matching its shape and dtype, or fail with a status; never crash or read
// out of bounds. The bytes go through a file, as the reader maps one.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include "server/training/model/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = [] {
    static std::string p = "/tmp/ftd-fuzz-" + std::to_string(getpid()) + ".safetensors";
    std::atexit([] { std::remove(p.c_str()); });
    return p;
  }();
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  auto file = ftd::training::SafetensorsFile::Open(path);
  if (!file.ok()) return 0;
  for (const ftd::training::TensorInfo& tensor : (*file)->tensors()) {
    const std::string_view bytes = (*file)->Data(tensor);
    if (bytes.size() != tensor.end - tensor.begin) __builtin_trap();
    if (tensor.numel() < 0 ||
        static_cast<uint64_t>(tensor.numel()) * ftd::training::DTypeSize(tensor.dtype) !=
            bytes.size()) {
      __builtin_trap();
    }
    // Touch every byte: out-of-range reads are what ASan would find.
    volatile char sum = 0;
    for (char c : bytes) sum = static_cast<char>(sum + c);
    if ((*file)->Find(tensor.name) == nullptr) __builtin_trap();
  }
  return 0;
}
