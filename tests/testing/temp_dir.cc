#include "tests/testing/temp_dir.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace ftd::testing {

TempDir::TempDir() {
  std::string pattern = (std::filesystem::temp_directory_path() / "ftd-test-XXXXXX").string();
  char* made = mkdtemp(pattern.data());
  if (made == nullptr) ADD_FAILURE() << "mkdtemp failed";
  // Canonical, so tests compare against the paths the daemon reports.
  path_ = std::filesystem::canonical(pattern).string();
}

TempDir::~TempDir() {
  // nftw rather than std::filesystem::remove_all: PyTorch's pip builds of
  // libtorch export a broken copy of remove_all that shadows libstdc++'s.
  nftw(
      path_.c_str(),
      [](const char* path, const struct stat*, int, struct FTW*) { return ::remove(path); }, 16,
      FTW_DEPTH | FTW_PHYS);
}

void WriteFile(const std::string& path, const std::string& content) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << content;
  if (!out) ADD_FAILURE() << "cannot write " << path;
}

void WriteModelFolder(const std::string& dir, int layers, int max_positions) {
  WriteFile(
      dir + "/config.json",
      absl::StrCat(R"({"model_type": "bert", "num_hidden_layers": )", layers,
                   R"(, "max_position_embeddings": )", max_positions,
                   R"(, "hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64,)"
                   R"( "vocab_size": 5})"));
  WriteFile(dir + "/vocab.txt", "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n");
  // A safetensors file with no tensors: its 8-byte header length, then "{}".
  WriteFile(dir + "/model.safetensors", std::string("\x02\0\0\0\0\0\0\0", 8) + "{}");
}

}  // namespace ftd::testing
