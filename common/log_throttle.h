// Logs of what a caller can repeat at will (refused calls, malformed
// requests), summarised: the first line of a kind is logged, then at most
// one line a kind an interval saying how many more came. The metrics count
// every one; the log only shows that it is happening.
//
// Thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "common/log.h"

namespace ftd {

class LogThrottle {
 public:
  struct Options {
    absl::Duration interval = absl::Seconds(10);
    // A thread that logs, each interval, how many of each kind were held
    // back in it (else they are told with the next line of their kind).
    bool flush_thread = false;
    // Where lines go (tests read them); default: Log.
    std::function<void(LogLevel, const std::string&)> sink;
    std::function<absl::Time()> now = [] { return absl::Now(); };
  };

  LogThrottle() : LogThrottle(Options()) {}
  explicit LogThrottle(Options options);
  ~LogThrottle();
  LogThrottle(const LogThrottle&) = delete;
  LogThrottle& operator=(const LogThrottle&) = delete;

  // Notes one event of kind `kind` ("SubmitJob: refused (INVALID_TOKEN)"):
  // logged at once when no line of its kind went out within the interval,
  // with how many were held back since the last; else only counted.
  void Note(LogLevel level, const std::string& kind);

  // Logs a summary line for each kind with events held back whose last
  // line is an interval old (the flush thread's work).
  void Flush();

 private:
  struct Kind {
    LogLevel level = LogLevel::kWarning;
    absl::Time last_logged = absl::InfinitePast();
    int64_t held_back = 0;
  };
  static std::string Summary(const std::string& kind, const Kind& k);
  void Emit(LogLevel level, const std::string& line);

  const Options options_;
  absl::Mutex mu_;
  std::map<std::string, Kind> kinds_ ABSL_GUARDED_BY(mu_);
  absl::Notification stop_;
  std::thread flusher_;
};

}  // namespace ftd
