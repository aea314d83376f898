#include "tests/testing/ftd_daemon.h"

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace ftd::testing {

FtdDaemon::FtdDaemon(Options options)
    : options_(std::move(options)), address_file_(options_.data_dir + ".address") {
  std::filesystem::remove(address_file_);
  std::vector<std::string> argv = {options_.ftd_binary,
                                   "--address=127.0.0.1:0",
                                   "--address_file=" + address_file_,
                                   "--metrics_address=127.0.0.1:0",
                                   "--data_dir=" + options_.data_dir,
                                   "--data_roots=" + options_.data_root,
                                   absl::StrCat("--cpu_devices=", options_.cpu_slots)};
  argv.insert(argv.end(), options_.extra_flags.begin(), options_.extra_flags.end());
  process_ = std::make_unique<Process>(argv, options_.log_path);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < deadline) {
    std::ifstream in(address_file_);
    if (in >> address_) return;
    if (process_->Wait(std::chrono::seconds(0)) != -1) break;  // it exited
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  address_.clear();
  ADD_FAILURE() << "ftd did not start; see " << options_.log_path;
}

CommandResult FtdDaemon::Ftctl(std::vector<std::string> args, std::chrono::seconds timeout) const {
  return RunCommand(FtctlArgs(std::move(args)), timeout);
}

std::vector<std::string> FtdDaemon::FtctlArgs(std::vector<std::string> args) const {
  args.insert(args.begin(), {options_.ftctl_binary, "--address=" + address_});
  return args;
}

}  // namespace ftd::testing
