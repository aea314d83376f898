#include "server/daemon/memory_trimmer.h"

#include <chrono>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace ftd::daemon {
namespace {

// This process's resident memory in MiB.
double RssMib() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
  }
  return -1;
}

#if defined(__GLIBC__)
// What a burst leaves: many small blocks, freed on the thread that made
// them, stay in its arena (resident) until trimmed.
TEST(MemoryTrimmerTest, FreedMemoryOfABurstGoesBackToTheSystem) {
  std::unique_ptr<char[]> kept;
  std::thread burst([&kept] {
    std::vector<std::unique_ptr<char[]>> blocks;
    for (int i = 0; i < 64 * 1024; ++i) {
      blocks.emplace_back(new char[1000]);
      for (int j = 0; j < 1000; j += 64) blocks.back()[j] = 1;  // touched: resident
    }
    // All but the last are freed: the block at the top of the arena stays
    // in use, so free() cannot give back what lies below it on its own.
    kept = std::move(blocks.back());
  });
  burst.join();
  const double before = RssMib();
  EXPECT_TRUE(MemoryTrimmer::TrimNow());
  const double after = RssMib();
  EXPECT_LT(after, before - 32) << before << " MiB -> " << after << " MiB";
}
#endif

TEST(MemoryTrimmerTest, StopsPromptlyAndStartsNoThreadWithoutAnInterval) {
  const auto start = std::chrono::steady_clock::now();
  { MemoryTrimmer trimmer(absl::Hours(1)); }
  { MemoryTrimmer off(absl::ZeroDuration()); }
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
}

}  // namespace
}  // namespace ftd::daemon
