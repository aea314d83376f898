// Ftctl: the commands of the ftctl client, over any FineTuning stub.
// Each command prints its result to `out`, one readable error line to `err`,
// and returns the process exit code.
#pragma once

#include <chrono>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "ftd/v1/ftd.grpc.pb.h"

namespace ftd::client {

inline constexpr int kExitOk = 0;
// Exit codes (the README and `ftctl --help` list them).
inline constexpr int kExitError = 1;      // a request failed, or the connection was lost
inline constexpr int kExitUsage = 2;      // bad command line or job file
inline constexpr int kExitCancelled = 3;  // the watched job was CANCELLED
inline constexpr int kExitJobFailed = 4;  // the watched job FAILED

class Ftctl {
 public:
  struct Options {
    std::ostream* out = nullptr;
    std::ostream* err = nullptr;
    bool json = false;
    // Redraw the watch progress line in place (an interactive terminal).
    bool live = false;
    std::chrono::seconds timeout{30};
    // A bearer token, sent as "authorization: Bearer TOKEN" on every call.
    std::string token;
  };

  // `stub` is not owned.
  Ftctl(v1::FineTuning::StubInterface* stub, Options options) : stub_(stub), options_(options) {}

  // With `watch`, follows the job after submitting (exit code as Watch).
  int Submit(const v1::SubmitJobRequest& request, bool watch);
  int Get(const std::string& job_id);
  // With `all`, follows next_page_token to the end.
  int List(const v1::ListJobsRequest& request, bool all);
  int Cancel(const std::string& job_id);
  // Deletes an ended job, its outputs and the cache segments only it used.
  int Delete(const std::string& job_id);
  // Prints the job's events, then its live ones, until it ends. Exit code:
  // 0 when it SUCCEEDED, kExitJobFailed when it FAILED, kExitCancelled when
  // it was CANCELLED, kExitError when the stream broke (the outcome is then
  // unknown).
  int Watch(const std::string& job_id);
  int Events(const std::string& job_id, int page_size, const std::string& page_token);
  int Info();
  // The activation cache; with a job id, that job's use of it.
  int Cache(const std::string& job_id);
  int ClearCache(const std::string& job_id);

  // Uploads a dataset file or a model folder and prints the file.
  int Upload(const std::string& path, v1::DatasetFormat format, const std::string& name);
  // Uploads `path` for a job spec: its id, with a line on `err` saying so.
  absl::StatusOr<std::string> UploadForSpec(const std::string& path, v1::DatasetFormat format);
  // One file, or (with an empty id) every file, newest first.
  int Files(const std::string& file_id, v1::FileKind kind);
  int DeleteFile(const std::string& file_id);
  // Writes the job's artifact ("model" or "metrics") into folder `dest`.
  int Download(const std::string& job_id, const std::string& dest, const std::string& artifact);

 private:
  // Prints "ftctl: CODE: message" and returns kExitError.
  int Fail(const grpc::Status& status);
  // Sets the deadline (unless not `deadline`) and the credentials.
  void Prepare(grpc::ClientContext* context, bool deadline = true) const;

  v1::FineTuning::StubInterface* const stub_;
  const Options options_;
};

// "NOT_FOUND", "INVALID_ARGUMENT", ...
std::string StatusCodeName(grpc::StatusCode code);

}  // namespace ftd::client
