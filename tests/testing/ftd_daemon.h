// The real ftd started for a test on loopback port 0, and the real ftctl
// that talks to it.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "tests/testing/process.h"

namespace ftd::testing {

class FtdDaemon {
 public:
  struct Options {
    std::string ftd_binary;
    std::string ftctl_binary;
    std::string data_dir;
    std::string data_root;
    int cpu_slots = 1;
    std::string log_path;
    std::vector<std::string> extra_flags;
  };

  // Starts ftd and waits (up to a minute) until it has written its address;
  // a test failure when it does not start.
  explicit FtdDaemon(Options options);

  // True once ftd serves.
  bool started() const { return !address_.empty(); }
  CommandResult Ftctl(std::vector<std::string> args,
                      std::chrono::seconds timeout = std::chrono::seconds(60)) const;
  std::vector<std::string> FtctlArgs(std::vector<std::string> args) const;

  Process& process() { return *process_; }
  const std::string& address() const { return address_; }

 private:
  Options options_;
  std::string address_file_;
  std::string address_;
  std::unique_ptr<Process> process_;
};

}  // namespace ftd::testing
