#include "server/api/fine_tuning_service.h"

#include <memory>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/status_macros.h"
#include "server/api/grpc_status.h"
#include "server/core/error_details.h"
#include "server/security/authenticator.h"

namespace ftd::api {
namespace {

template <typename T>
grpc::ServerUnaryReactor* Reply(grpc::CallbackServerContext* context, absl::StatusOr<T> result,
                                T* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (result.ok()) *response = *std::move(result);
  reactor->Finish(ToGrpcStatus(result.status()));
  return reactor;
}

absl::Status RequireJobId(const std::string& job_id) {
  if (job_id.empty()) return absl::InvalidArgumentError("job_id: is required");
  return absl::OkStatus();
}

// Streams one job's events: history, then live events, then the end. It
// pulls them from its subscription one write at a time (so a slow client
// holds no more than the event hub's buffer); the hub wakes it when there
// may be more. Deletes itself in OnDone.
class WatchReactor final : public grpc::ServerWriteReactor<v1::JobEvent> {
 public:
  explicit WatchReactor(core::JobManager* manager) : manager_(manager) {}

  // Subscribes. Nothing is written before this returns, so the reactor
  // cannot finish (and be deleted) while it runs.
  void Start(const v1::WatchJobRequest& request, const core::Caller& caller) {
    absl::Status valid = RequireJobId(request.job_id());
    absl::StatusOr<std::unique_ptr<core::EventSubscription>> subscription =
        valid.ok() ? manager_->Watch(
                         request.job_id(), request.after_sequence(), [this] { Wake(); }, caller)
                   : valid;
    absl::MutexLock lock(&mu_);
    started_ = true;
    if (!subscription.ok()) {
      FinishLocked(ToGrpcStatus(subscription.status()));
      return;
    }
    subscription_ = *std::move(subscription);
    more_ = true;
    PumpLocked();
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    writing_ = false;
    if (!ok) {  // the client is gone
      FinishLocked(grpc::Status(grpc::StatusCode::UNAVAILABLE, "the stream broke"));
      return;
    }
    more_ = true;
    PumpLocked();
  }

  void OnCancel() override {
    absl::MutexLock lock(&mu_);
    cancelled_ = true;
    if (started_ && !writing_ && !pulling_) FinishLocked(grpc::Status::CANCELLED);
  }

  void OnDone() override {
    // After this, the hub does not call Wake again.
    std::unique_ptr<core::EventSubscription> subscription;
    {
      absl::MutexLock lock(&mu_);
      subscription = std::move(subscription_);
    }
    subscription.reset();
    delete this;
  }

 private:
  void Wake() {
    absl::MutexLock lock(&mu_);
    more_ = true;
    PumpLocked();
  }

  // Pulls the next event and writes it, unless a write or a pull is under
  // way (the one running pulls again when told there is more).
  void PumpLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!started_ || finished_ || writing_ || pulling_ || subscription_ == nullptr) return;
    pulling_ = true;
    while (more_ && !finished_) {
      if (cancelled_) {
        FinishLocked(grpc::Status::CANCELLED);
        break;
      }
      more_ = false;
      v1::JobEvent event;
      absl::Status status;
      mu_.Unlock();  // the pull may read the store
      const core::EventSubscription::Pull pull = subscription_->Next(&event, &status);
      mu_.Lock();
      if (pull == core::EventSubscription::Pull::kEvent) {
        event_ = std::move(event);
        writing_ = true;
        StartWrite(&event_);
        break;
      }
      if (pull == core::EventSubscription::Pull::kClosed) {
        FinishLocked(ToGrpcStatus(status));
        break;
      }
      // kWait: more_ is set if a wake came during the pull.
    }
    pulling_ = false;
    // A cancel that came during the pull.
    if (cancelled_ && !writing_) FinishLocked(grpc::Status::CANCELLED);
  }

  void FinishLocked(const grpc::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_) return;
    finished_ = true;
    Finish(status);
  }

  core::JobManager* const manager_;
  absl::Mutex mu_;
  // Set once in Start; reset in OnDone.
  std::unique_ptr<core::EventSubscription> subscription_;
  v1::JobEvent event_ ABSL_GUARDED_BY(mu_);  // being written when writing_
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  bool more_ ABSL_GUARDED_BY(mu_) = false;     // the subscription may have events
  bool pulling_ ABSL_GUARDED_BY(mu_) = false;  // a Next() call is under way
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

// Chunks of a download.
constexpr size_t kChunkBytes = 1 << 20;

absl::Status RequireFileId(const std::string& file_id) {
  if (file_id.empty()) return absl::InvalidArgumentError("file_id: is required");
  return absl::OkStatus();
}

// Takes one upload stream: the header, then chunks, then the end, each
// read handed to the file manager. Deletes itself in OnDone; the upload,
// unless it was kept, is removed with it.
class UploadReactor final : public grpc::ServerReadReactor<v1::UploadFileRequest> {
 public:
  UploadReactor(core::FileManager* files, core::Caller caller, v1::File* response)
      : files_(files), caller_(std::move(caller)), response_(response) {
    StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {  // the client's end of the stream (or a broken one)
      if (upload_ == nullptr) {
        Done(absl::InvalidArgumentError("header: the stream ended before a header came"));
        return;
      }
      absl::StatusOr<v1::File> file = upload_->Finish();
      if (file.ok()) *response_ = *std::move(file);
      Done(file.status());
      return;
    }
    absl::Status status;
    if (upload_ == nullptr) {
      if (!request_.has_header()) {
        status = absl::InvalidArgumentError("header: the first message must be the header");
      } else {
        absl::StatusOr<std::unique_ptr<core::FileManager::Upload>> upload =
            files_->BeginUpload(std::move(*request_.mutable_header()), caller_);
        if (upload.ok()) upload_ = *std::move(upload);
        status = upload.status();
      }
    } else if (request_.has_header()) {
      status = absl::InvalidArgumentError("header: came again; only the first message is one");
    } else {
      status = upload_->Write(request_.chunk());
    }
    if (!status.ok()) {
      upload_.reset();  // nothing is kept
      Done(status);
      return;
    }
    request_.Clear();
    StartRead(&request_);
  }

  void OnDone() override { delete this; }

 private:
  void Done(const absl::Status& status) {
    absl::MutexLock lock(&mu_);
    if (finished_) return;
    finished_ = true;
    Finish(ToGrpcStatus(status));
  }

  core::FileManager* const files_;
  const core::Caller caller_;
  v1::File* const response_;
  v1::UploadFileRequest request_;
  std::unique_ptr<core::FileManager::Upload> upload_;
  absl::Mutex mu_;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

// Streams a job's output: the header, then the bytes a chunk at a time
// (one write in flight). Deletes itself in OnDone.
class DownloadReactor final : public grpc::ServerWriteReactor<v1::DownloadJobOutputResponse> {
 public:
  DownloadReactor(core::JobManager* manager, const v1::DownloadJobOutputRequest& request) {
    absl::Status valid = RequireJobId(request.job_id());
    absl::StatusOr<std::unique_ptr<core::OutputReader>> reader =
        valid.ok() ? manager->OpenOutput(request.job_id(), request.artifact()) : valid;
    if (!reader.ok()) {
      Finish(ToGrpcStatus(reader.status()));
      return;
    }
    reader_ = *std::move(reader);
    auto* header = message_.mutable_header();
    header->set_artifact(request.artifact().empty() ? "model" : request.artifact());
    for (const v1::FileEntry& entry : reader_->entries()) *header->add_entries() = entry;
    StartWrite(&message_);
  }

  void OnWriteDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "the stream broke"));
      return;
    }
    absl::StatusOr<std::string> chunk = reader_->Next(kChunkBytes);
    if (!chunk.ok()) {
      Finish(ToGrpcStatus(chunk.status()));
      return;
    }
    if (chunk->empty()) {
      Finish(grpc::Status::OK);
      return;
    }
    message_.Clear();
    message_.set_chunk(*std::move(chunk));
    StartWrite(&message_);
  }

  void OnDone() override { delete this; }

 private:
  std::unique_ptr<core::OutputReader> reader_;
  v1::DownloadJobOutputResponse message_;
};

// A reactor that only answers `status` (a call refused before it began).
template <typename Base>
class Refused final : public Base {
 public:
  explicit Refused(const absl::Status& status) { this->Finish(ToGrpcStatus(status)); }
  void OnDone() override { delete this; }
};

}  // namespace

absl::StatusOr<core::Caller> FineTuningService::Authorize(grpc::CallbackServerContext* context,
                                                          const char* method) const {
  absl::StatusOr<core::Caller> caller = security::AuthenticateCall(access_.auth, *context);
  if (!caller.ok() && access_.denied) access_.denied(method, core::ReasonOf(caller.status()));
  return caller;
}

absl::Status FineTuningService::CheckJob(const std::string& job_id,
                                         const core::Caller& caller) const {
  RETURN_IF_ERROR(RequireJobId(job_id));
  if (caller.admin) return absl::OkStatus();
  ASSIGN_OR_RETURN(v1::Job job, manager_->Get(job_id));
  // Another tenant's job is what a job that does not exist is.
  if (!caller.CanSee(job.tenant())) return absl::NotFoundError(absl::StrCat("no job ", job_id));
  return absl::OkStatus();
}

absl::Status FineTuningService::RequireAdmin(const core::Caller& caller, const char* method,
                                             const std::string& what) const {
  if (caller.admin) return absl::OkStatus();
  if (access_.denied) access_.denied(method, "ADMIN_ONLY");
  return core::WithReason(absl::PermissionDeniedError(absl::StrCat(
                              what, " is for admins; tenant \"", caller.tenant, "\" is a user")),
                          "ADMIN_ONLY");
}

grpc::ServerReadReactor<v1::UploadFileRequest>* FineTuningService::UploadFile(
    grpc::CallbackServerContext* context, v1::File* response) {
  absl::StatusOr<core::Caller> caller = Authorize(context, "UploadFile");
  if (!caller.ok()) {
    return new Refused<grpc::ServerReadReactor<v1::UploadFileRequest>>(caller.status());
  }
  return new UploadReactor(files_, *std::move(caller), response);
}

grpc::ServerUnaryReactor* FineTuningService::GetFile(grpc::CallbackServerContext* context,
                                                     const v1::GetFileRequest* request,
                                                     v1::File* response) {
  return Reply(
      context,
      [&]() -> absl::StatusOr<v1::File> {
        ASSIGN_OR_RETURN(core::Caller caller, Authorize(context, "GetFile"));
        RETURN_IF_ERROR(RequireFileId(request->file_id()));
        return files_->Get(request->file_id(), caller);
      }(),
      response);
}

grpc::ServerUnaryReactor* FineTuningService::ListFiles(grpc::CallbackServerContext* context,
                                                       const v1::ListFilesRequest* request,
                                                       v1::ListFilesResponse* response) {
  return Reply(
      context,
      [&]() -> absl::StatusOr<v1::ListFilesResponse> {
        ASSIGN_OR_RETURN(core::Caller caller, Authorize(context, "ListFiles"));
        return files_->List(*request, caller);
      }(),
      response);
}

grpc::ServerUnaryReactor* FineTuningService::DeleteFile(grpc::CallbackServerContext* context,
                                                        const v1::DeleteFileRequest* request,
                                                        v1::DeleteFileResponse* response) {
  return Reply(
      context,
      [&]() -> absl::StatusOr<v1::DeleteFileResponse> {
        ASSIGN_OR_RETURN(core::Caller caller, Authorize(context, "DeleteFile"));
        RETURN_IF_ERROR(RequireFileId(request->file_id()));
        return files_->Delete(request->file_id(), caller);
      }(),
      response);
}

grpc::ServerWriteReactor<v1::DownloadJobOutputResponse>* FineTuningService::DownloadJobOutput(
    grpc::CallbackServerContext* context, const v1::DownloadJobOutputRequest* request) {
  absl::Status allowed = [&]() -> absl::Status {
    ASSIGN_OR_RETURN(core::Caller caller, Authorize(context, "DownloadJobOutput"));
    return CheckJob(request->job_id(), caller);
  }();
  if (!allowed.ok()) {
    return new Refused<grpc::ServerWriteReactor<v1::DownloadJobOutputResponse>>(allowed);
  }
  return new DownloadReactor(manager_, *request);
}

grpc::ServerUnaryReactor* FineTuningService::SubmitJob(grpc::CallbackServerContext* context,
                                                       const v1::SubmitJobRequest* request,
                                                       v1::Job* response) {
  return Reply(
      context,
      [&]() -> absl::StatusOr<v1::Job> {
        ASSIGN_OR_RETURN(core::Caller caller, Authorize(context, "SubmitJob"));
        return manager_->Submit(request->spec(), request->request_id(), caller);
      }(),
      response);
}

grpc::ServerUnaryReactor* FineTuningService::GetJob(grpc::CallbackServerContext* context,
                                                    const v1::GetJobRequest* request,
                                                    v1::Job* response) {
  return Reply(
      context,
      [&]() -> absl::StatusOr<v1::Job> {
        ASSIGN_OR_RETURN(core::Caller caller, Authorize(context, "GetJob"));
        RETURN_IF_ERROR(CheckJob(request->job_id(), caller));
        return manager_->Get(request->job_id());
      }(),
      response);
}

grpc::ServerUnaryReactor* FineTuningService::ListJobs(grpc::CallbackServerContext* context,
                                                      const v1::ListJobsRequest* request,
                                                      v1::ListJobsResponse* response) {
  return Reply(
      context,
      [&]() -> absl::StatusOr<v1::ListJobsResponse> {
        ASSIGN_OR_RETURN(core::Caller caller, Authorize(context, "ListJobs"));
        return manager_->List(*request, caller);
      }(),
      response);
}

grpc::ServerUnaryReactor* FineTuningService::CancelJob(grpc::CallbackServerContext* context,
                                                       const v1::CancelJobRequest* request,
                                                       v1::Job* response) {
  return Reply(
      context,
      [&]() -> absl::StatusOr<v1::Job> {
        ASSIGN_OR_RETURN(core::Caller caller, Authorize(context, "CancelJob"));
        RETURN_IF_ERROR(CheckJob(request->job_id(), caller));
        return manager_->Cancel(request->job_id());
      }(),
      response);
}

grpc::ServerUnaryReactor* FineTuningService::DeleteJob(grpc::CallbackServerContext* context,
                                                       const v1::DeleteJobRequest* request,
                                                       v1::DeleteJobResponse* response) {
  return Reply(
      context,
      [&]() -> absl::StatusOr<v1::DeleteJobResponse> {
        ASSIGN_OR_RETURN(core::Caller caller, Authorize(context, "DeleteJob"));
        RETURN_IF_ERROR(CheckJob(request->job_id(), caller));
        return manager_->Delete(request->job_id());
      }(),
      response);
}

grpc::ServerWriteReactor<v1::JobEvent>* FineTuningService::WatchJob(
    grpc::CallbackServerContext* context, const v1::WatchJobRequest* request) {
  core::Caller caller;
  absl::Status allowed = [&]() -> absl::Status {
    ASSIGN_OR_RETURN(caller, Authorize(context, "WatchJob"));
    return CheckJob(request->job_id(), caller);
  }();
  if (!allowed.ok()) return new Refused<grpc::ServerWriteReactor<v1::JobEvent>>(allowed);
  auto* reactor = new WatchReactor(manager_);
  reactor->Start(*request, caller);
  return reactor;
}

grpc::ServerUnaryReactor* FineTuningService::ListJobEvents(grpc::CallbackServerContext* context,
                                                           const v1::ListJobEventsRequest* request,
                                                           v1::ListJobEventsResponse* response) {
  return Reply(
      context,
      [&]() -> absl::StatusOr<v1::ListJobEventsResponse> {
        ASSIGN_OR_RETURN(core::Caller caller, Authorize(context, "ListJobEvents"));
        RETURN_IF_ERROR(CheckJob(request->job_id(), caller));
        return manager_->ListEvents(*request);
      }(),
      response);
}

grpc::ServerUnaryReactor* FineTuningService::GetServerInfo(
    grpc::CallbackServerContext* context, const v1::GetServerInfoRequest* /*request*/,
    v1::ServerInfo* response) {
  return Reply(
      context,
      [&]() -> absl::StatusOr<v1::ServerInfo> {
        ASSIGN_OR_RETURN(core::Caller caller, Authorize(context, "GetServerInfo"));
        v1::ServerInfo info = manager_->ServerInfo();
        if (!caller.admin) {
          // Other tenants' work is not a user's to see.
          for (v1::Device& device : *info.mutable_devices()) device.clear_job_id();
          info.clear_queue_length();
          info.clear_running_jobs();
          info.clear_metrics_address();
          info.clear_metrics_url();
        }
        return info;
      }(),
      response);
}

grpc::ServerUnaryReactor* FineTuningService::GetCache(grpc::CallbackServerContext* context,
                                                      const v1::GetCacheRequest* request,
                                                      v1::CacheInfo* response) {
  return Reply(
      context,
      [&]() -> absl::StatusOr<v1::CacheInfo> {
        ASSIGN_OR_RETURN(core::Caller caller, Authorize(context, "GetCache"));
        if (request->job_id().empty()) {
          RETURN_IF_ERROR(RequireAdmin(caller, "GetCache", "the whole cache (without a job_id)"));
        } else {
          RETURN_IF_ERROR(CheckJob(request->job_id(), caller));
        }
        ASSIGN_OR_RETURN(v1::CacheInfo info, manager_->GetCache(*request));
        if (!caller.admin) {
          // The whole cache's size tells of other tenants' jobs.
          info.clear_bytes();
          info.clear_capacity_bytes();
        }
        return info;
      }(),
      response);
}

grpc::ServerUnaryReactor* FineTuningService::ClearJobCache(grpc::CallbackServerContext* context,
                                                           const v1::ClearJobCacheRequest* request,
                                                           v1::ClearJobCacheResponse* response) {
  return Reply(
      context,
      [&]() -> absl::StatusOr<v1::ClearJobCacheResponse> {
        ASSIGN_OR_RETURN(core::Caller caller, Authorize(context, "ClearJobCache"));
        RETURN_IF_ERROR(CheckJob(request->job_id(), caller));
        return manager_->ClearJobCache(request->job_id());
      }(),
      response);
}

}  // namespace ftd::api
