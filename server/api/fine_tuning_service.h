// FineTuningService: the ftd.v1.FineTuning gRPC service, a thin layer over
// core::JobManager and core::FileManager.
//
// Every method takes its request as bytes (wire.h): the caller is
// authenticated first, then the request parsed and its limits checked
// (request_limits.h), so a request that does not parse or holds a string
// over its limit is INVALID_ARGUMENT before anything else reads it. A
// submission's checks and an upload's last step read the caller's files:
// they run on the CheckPool, never on gRPC's threads. Streams (WatchJob,
// DownloadJobOutput, UploadFile) stay registered with OpenStreams while they
// are open, which ends them when their credentials stop holding.
#pragma once

#include <functional>
#include <string>

#include "ftd/v1/ftd.grpc.pb.h"
#include "server/api/access.h"
#include "server/api/check_pool.h"
#include "server/api/open_streams.h"
#include "server/core/file_manager.h"
#include "server/core/job_manager.h"
#include "server/security/authenticator.h"

namespace ftd::api {

class FineTuningService final : public v1::FineTuning::Service {
 public:
  using Access = api::Access;

  // Everything must outlive the service; `streams` is built over
  // `access.auth`.
  FineTuningService(core::JobManager* manager, core::FileManager* files, Access access,
                    CheckPool* checks, OpenStreams* streams);

 private:
  // A unary method's work once its caller is known and its request parsed.
  template <typename Request, typename Response>
  using UnaryFn =
      std::function<absl::StatusOr<Response>(const core::Caller&, const Request&)>;
  enum class Where { kInline, kCheckPool };

  // Serves method `name` through `fn`, on gRPC's thread or the check pool.
  template <typename Request, typename Response>
  void AddUnary(const std::string& name, Where where, UnaryFn<Request, Response> fn);
  // A server stream about one job (the request's job_id), once its caller
  // may see the job.
  template <typename Request>
  using StreamFn = std::function<grpc::ServerWriteReactor<grpc::ByteBuffer>*(
      grpc::CallbackServerContext*, const Request&, const core::Caller&)>;
  template <typename Request>
  void AddJobStream(const std::string& name, StreamFn<Request> start);
  // WatchJob, DownloadJobOutput and UploadFile.
  void AddStreams();
  // The index of method `name` in the service.
  int MethodIndex(const std::string& name) const;

  // The caller of `method`, or UNAUTHENTICATED (counted).
  absl::StatusOr<core::Caller> Authorize(grpc::CallbackServerContext* context,
                                         const char* method) const;
  // The caller, then the request: the first error (a malformed request
  // counted).
  absl::StatusOr<core::Caller> Admit(grpc::CallbackServerContext* context, const char* method,
                                     const grpc::ByteBuffer& bytes,
                                     google::protobuf::Message* request) const;
  // OK when `caller` may act on the job; NOT_FOUND for another tenant's,
  // as for one that does not exist.
  absl::Status CheckJob(const std::string& job_id, const core::Caller& caller) const;
  // PERMISSION_DENIED (reason ADMIN_ONLY, counted) unless an admin calls.
  absl::Status RequireAdmin(const core::Caller& caller, const char* method,
                            const std::string& what) const;

  core::JobManager* const manager_;
  core::FileManager* const files_;
  const Access access_;
  CheckPool* const checks_;
  OpenStreams* const streams_;
};

}  // namespace ftd::api
