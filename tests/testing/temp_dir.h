// A temporary folder removed with everything in it when the object goes.
#pragma once

#include <string>

namespace ftd::testing {

class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  // path() + "/" + name
  std::string Sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Writes `content` to `path`, creating its folder. Fails the test on error.
void WriteFile(const std::string& path, const std::string& content);

// A checkpoint folder that passes the submit checks: a complete config.json
// with the given depth and max positions, vocab.txt, and a model.safetensors
// with no tensors (a job on it initialises every weight).
void WriteModelFolder(const std::string& dir, int layers = 2, int max_positions = 64);

}  // namespace ftd::testing
