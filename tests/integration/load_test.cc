// A load test against the real daemon on loopback (tests/node/load.mjs):
// FTD_LOAD_CLIENTS clients (default 50) for FTD_LOAD_SECONDS (default 10)
// submit, cancel, list, get and watch while a job trains. Every request
// must succeed or meet a documented limit, the training job must go on, and
// the daemon's memory must come back near where it was. The report (one
// JSON line) is printed; docs/reliability.md quotes the long form:
//   FTD_LOAD_CLIENTS=300 FTD_LOAD_SECONDS=60 build/tests/load_test
// (FTD_LOAD_DAEMON_FLAGS adds daemon flags; FTD_LOAD_ROUNDS runs the load
// that many times on the same daemon).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/ftd_daemon.h"
#include "tests/testing/node_package.h"
#include "tests/testing/temp_dir.h"
#include "tests/testing/tiny_bert.h"

namespace ftd {
namespace {

namespace fs = std::filesystem;
using ::ftd::testing::CommandResult;
using ::ftd::testing::FtdDaemon;

// The daemon's resident memory in MiB (VmRSS).
double RssMib(int pid) {
  std::ifstream status(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
  }
  return -1;
}

// The daemon's RocksDB memtables in MiB, all column families, from its
// metrics endpoint (`info` is ftctl info's output); -1 when unreadable.
double MemtablesMib(const std::string& info) {
  const std::regex address(R"(http://127\.0\.0\.1:(\d+)/metrics)");
  std::smatch m;
  if (!std::regex_search(info, m, address)) return -1;
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(std::stoi(m[1])));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return -1;
  }
  const std::string request = "GET /metrics HTTP/1.1\r\n\r\n";
  (void)!send(fd, request.data(), request.size(), MSG_NOSIGNAL);
  std::string answer;
  char buffer[65536];
  ssize_t n;
  while ((n = recv(fd, buffer, sizeof(buffer), 0)) > 0) answer.append(buffer, n);
  close(fd);
  const std::regex line(R"(ftd_rocksdb_memtable_bytes\{[^}]*\} ([0-9.e+]+))");
  double bytes = 0;
  for (std::sregex_iterator it(answer.begin(), answer.end(), line), end; it != end; ++it) {
    bytes += std::stod((*it)[1]);
  }
  return bytes / (1 << 20);
}

int EnvInt(const char* name, int fallback) {
  const char* value = std::getenv(name);
  int parsed = 0;
  return value != nullptr && absl::SimpleAtoi(value, &parsed) ? parsed : fallback;
}

std::string InstallClient() {
  return ftd::testing::InstallNodePackage(FTD_SOURCE_DIR, FTD_NODE_WORK_DIR, FTD_NPM, {"load.mjs"});
}

TEST(LoadTest, HundredsOfClientsGetAnswersWhileAJobTrainsAndMemoryComesBack) {
  const int clients = EnvInt("FTD_LOAD_CLIENTS", 50);
  const int seconds = EnvInt("FTD_LOAD_SECONDS", 10);
  ASSERT_TRUE(fs::exists(FTD_NODE) && fs::exists(FTD_NPM))
      << "node and npm are needed (scripts/install-deps.sh installs them)";
  const std::string work = InstallClient();
  ASSERT_FALSE(::testing::Test::HasFailure());
  ftd::testing::TempDir dir;
  ftd::testing::WriteTinyBert(dir.Sub("data/tiny"));
  // FTD_LOAD_ROUNDS runs the load again on the same daemon: memory that a
  // round leaves and the next reuses (caches, the allocator's free lists)
  // stays level; what the daemon keeps per request or job grows each round.
  const int rounds = std::max(1, EnvInt("FTD_LOAD_ROUNDS", 1));
  // Rows enough for the training job to outlast every round (1,000 epochs
  // of 512 take about 3 minutes under load).
  ftd::testing::WriteSentimentCsv(dir.Sub("data/train.csv"),
                                  512 * rounds * std::max(1, seconds / 60), 1);
  // FTD_LOAD_DAEMON_FLAGS: more daemon flags, space-separated (for example
  // --metrics_job_retention=1s, to tell finished jobs' metric series from
  // what the load itself leaves).
  // The trim more often than the default 30 s, so that the memory measured
  // 3 s after a round is what the daemon holds once it has given back.
  std::vector<std::string> flags = {"--max_queued_jobs=200", "--memory_trim_interval=1s"};
  if (const char* more = std::getenv("FTD_LOAD_DAEMON_FLAGS")) {
    for (absl::string_view flag : absl::StrSplit(more, ' ', absl::SkipEmpty())) {
      flags.emplace_back(flag);
    }
  }
  FtdDaemon daemon({FTD_BINARY, FTCTL_BINARY, dir.Sub("ftd-data"), dir.Sub("data"), 1,
                    dir.Sub("ftd.log"), flags});
  ASSERT_TRUE(daemon.started());
  // The job that trains throughout (and that the watchers follow).
  CommandResult job = daemon.Ftctl({"submit", "--upload=false", "--model=" + dir.Sub("data/tiny"),
                                    "--train=" + dir.Sub("data/train.csv"), "--epochs=1000",
                                    "--batch_size=16", "--max_seq_length=16", "--name=trains"});
  ASSERT_EQ(job.exit_code, 0) << job.err;
  for (int i = 0;
       i < 100 && daemon.Ftctl({"get", "job-1"}).out.find("RUNNING") == std::string::npos; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  std::this_thread::sleep_for(std::chrono::seconds(2));
  const int pid = daemon.process().pid();
  const double before = RssMib(pid);
  const std::string info = daemon.Ftctl({"info"}).out;
  const double memtables_before = MemtablesMib(info);

  std::vector<double> after_round;
  for (int round = 1; round <= rounds; ++round) {
    CommandResult load = ftd::testing::RunCommand(
        {FTD_NODE, work + "/load.mjs", "--address=" + daemon.address(),
         std::string("--protos=") + FTD_SOURCE_DIR + "/protos", "--model=" + dir.Sub("data/tiny"),
         "--train=" + dir.Sub("data/train.csv"), absl::StrCat("--clients=", clients),
         absl::StrCat("--seconds=", seconds), "--watch_job=job-1"},
        std::chrono::seconds(seconds + 120));
    ASSERT_EQ(load.exit_code, 0) << load.out << load.err;
    const double peak = RssMib(pid);
    // Idle again: what the load made the daemon hold is given back.
    std::this_thread::sleep_for(std::chrono::seconds(3));
    const double after = RssMib(pid);
    after_round.push_back(after);
    std::cout << "load round " << round << ": " << load.out << "memory (MiB): before " << before
              << ", at the end " << peak << ", 3 s later " << after << "; RocksDB's memtables "
              << memtables_before << " before, " << MemtablesMib(info) << " after\n";

    // Only documented limits may refuse (a full queue, too many watches),
    // and a cancel may find its job ended; nothing else.
    const std::regex error(R"re("([A-Za-z]+):([A-Z_]+)":(\d+))re");
    const std::string errors = load.out.substr(load.out.find("\"errors\":"));
    for (std::sregex_iterator it(errors.begin(), errors.end(), error), end; it != end; ++it) {
      const std::string method = (*it)[1], code = (*it)[2];
      const bool documented =
          code == "RESOURCE_EXHAUSTED" || (method == "CancelJob" && code == "FAILED_PRECONDITION");
      EXPECT_TRUE(documented) << method << " got " << code << " " << (*it)[3] << " times";
    }
    for (const char* method : {"SubmitJob", "ListJobs", "GetJob", "WatchJob", "CancelJob"}) {
      EXPECT_NE(load.out.find(absl::StrCat("\"", method, "\":{\"count\":")), std::string::npos)
          << method << " was not exercised";
    }
  }
  // The job trained on and the daemon still answers.
  CommandResult get = daemon.Ftctl({"get", "job-1"});
  EXPECT_NE(get.out.find("RUNNING"), std::string::npos) << get.out;
  EXPECT_LT(after_round.back(), before + 32) << "the daemon kept what the load made it hold";
  if (rounds > 1) {
    std::cout << "memory (MiB) after round 1 " << after_round.front() << ", after round " << rounds
              << " " << after_round.back() << "\n";
  }
  daemon.Ftctl({"cancel", "job-1"});
}

}  // namespace
}  // namespace ftd
