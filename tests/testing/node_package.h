// The npm packages of tests/node (package-lock.json) and the given scripts,
// copied into `work` and installed there once (npm ci), for the tests that
// run Node.js clients against the daemon.
#pragma once

#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/testing/process.h"

namespace ftd::testing {

inline std::string InstallNodePackage(const std::string& source_dir, const std::string& work,
                                      const std::string& npm,
                                      const std::vector<std::string>& scripts) {
  namespace fs = std::filesystem;
  fs::create_directories(work);
  std::vector<std::string> files = {"package.json", "package-lock.json"};
  files.insert(files.end(), scripts.begin(), scripts.end());
  for (const std::string& name : files) {
    fs::copy_file(fs::path(source_dir) / "tests/node" / name, fs::path(work) / name,
                  fs::copy_options::overwrite_existing);
  }
  if (!fs::exists(fs::path(work) / "node_modules/@grpc/grpc-js")) {
    CommandResult r =
        RunCommand({npm, "ci", "--prefix", work, "--no-audit", "--no-fund", "--loglevel=error"},
                   std::chrono::seconds(300));
    if (r.exit_code != 0) ADD_FAILURE() << "npm ci: " << r.err;
  }
  return work;
}

}  // namespace ftd::testing
