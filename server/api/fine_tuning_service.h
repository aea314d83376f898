// FineTuningService: the ftd.v1.FineTuning gRPC service, a thin layer over
// core::JobManager. Each method passes the request to the core and maps the
// result's status; WatchJob streams through a write reactor.
#pragma once

#include <functional>
#include <string>

#include "ftd/v1/ftd.grpc.pb.h"
#include "server/api/access.h"
#include "server/core/file_manager.h"
#include "server/core/job_manager.h"
#include "server/security/authenticator.h"

namespace ftd::api {

class FineTuningService final : public v1::FineTuning::CallbackService {
 public:
  using Access = api::Access;

  // `manager`, `files` and `access.auth` must outlive the service.
  FineTuningService(core::JobManager* manager, core::FileManager* files, Access access)
      : manager_(manager), files_(files), access_(std::move(access)) {}

  grpc::ServerUnaryReactor* SubmitJob(grpc::CallbackServerContext* context,
                                      const v1::SubmitJobRequest* request,
                                      v1::Job* response) override;
  grpc::ServerUnaryReactor* GetJob(grpc::CallbackServerContext* context,
                                   const v1::GetJobRequest* request, v1::Job* response) override;
  grpc::ServerUnaryReactor* ListJobs(grpc::CallbackServerContext* context,
                                     const v1::ListJobsRequest* request,
                                     v1::ListJobsResponse* response) override;
  grpc::ServerUnaryReactor* CancelJob(grpc::CallbackServerContext* context,
                                      const v1::CancelJobRequest* request,
                                      v1::Job* response) override;
  grpc::ServerUnaryReactor* DeleteJob(grpc::CallbackServerContext* context,
                                      const v1::DeleteJobRequest* request,
                                      v1::DeleteJobResponse* response) override;
  grpc::ServerWriteReactor<v1::JobEvent>* WatchJob(grpc::CallbackServerContext* context,
                                                   const v1::WatchJobRequest* request) override;
  grpc::ServerUnaryReactor* ListJobEvents(grpc::CallbackServerContext* context,
                                          const v1::ListJobEventsRequest* request,
                                          v1::ListJobEventsResponse* response) override;
  grpc::ServerUnaryReactor* GetServerInfo(grpc::CallbackServerContext* context,
                                          const v1::GetServerInfoRequest* request,
                                          v1::ServerInfo* response) override;
  grpc::ServerUnaryReactor* GetCache(grpc::CallbackServerContext* context,
                                     const v1::GetCacheRequest* request,
                                     v1::CacheInfo* response) override;
  grpc::ServerUnaryReactor* ClearJobCache(grpc::CallbackServerContext* context,
                                          const v1::ClearJobCacheRequest* request,
                                          v1::ClearJobCacheResponse* response) override;
  grpc::ServerReadReactor<v1::UploadFileRequest>* UploadFile(grpc::CallbackServerContext* context,
                                                             v1::File* response) override;
  grpc::ServerUnaryReactor* GetFile(grpc::CallbackServerContext* context,
                                    const v1::GetFileRequest* request, v1::File* response) override;
  grpc::ServerUnaryReactor* ListFiles(grpc::CallbackServerContext* context,
                                      const v1::ListFilesRequest* request,
                                      v1::ListFilesResponse* response) override;
  grpc::ServerUnaryReactor* DeleteFile(grpc::CallbackServerContext* context,
                                       const v1::DeleteFileRequest* request,
                                       v1::DeleteFileResponse* response) override;
  grpc::ServerWriteReactor<v1::DownloadJobOutputResponse>* DownloadJobOutput(
      grpc::CallbackServerContext* context, const v1::DownloadJobOutputRequest* request) override;

 private:
  // The caller of `method`, or UNAUTHENTICATED (counted).
  absl::StatusOr<core::Caller> Authorize(grpc::CallbackServerContext* context,
                                         const char* method) const;
  // OK when `caller` may act on the job; NOT_FOUND for another tenant's,
  // as for one that does not exist.
  absl::Status CheckJob(const std::string& job_id, const core::Caller& caller) const;
  // PERMISSION_DENIED (reason ADMIN_ONLY, counted) unless an admin calls.
  absl::Status RequireAdmin(const core::Caller& caller, const char* method,
                            const std::string& what) const;

  core::JobManager* const manager_;
  core::FileManager* const files_;
  const Access access_;
};

}  // namespace ftd::api
