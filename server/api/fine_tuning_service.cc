#include "server/api/fine_tuning_service.h"

#include <deque>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "server/api/grpc_status.h"

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

// Streams one job's events: history, then live events, then the end. The
// manager pushes events in (under its lock); the reactor writes them one at
// a time. Deletes itself in OnDone.
class WatchReactor final : public grpc::ServerWriteReactor<v1::JobEvent>, public core::EventSink {
 public:
  explicit WatchReactor(core::JobManager* manager) : manager_(manager) {}

  // Registers with the manager. Nothing is written before this returns, so
  // the reactor cannot finish (and be deleted) while it runs.
  void Start(const v1::WatchJobRequest& request) {
    absl::StatusOr<uint64_t> watch_id =
        RequireJobId(request.job_id()).ok()
            ? manager_->Watch(request.job_id(), request.after_sequence(), this)
            : absl::StatusOr<uint64_t>(RequireJobId(request.job_id()));
    absl::MutexLock lock(&mu_);
    if (!watch_id.ok()) {
      closed_ = true;
      close_status_ = watch_id.status();
    } else {
      watch_id_ = *watch_id;
    }
    started_ = true;
    PumpLocked();
  }

  void OnEvent(const v1::JobEvent& event) override {
    absl::MutexLock lock(&mu_);
    if (finished_) return;
    queue_.push_back(event);
    PumpLocked();
  }

  void OnClose(const absl::Status& status) override {
    absl::MutexLock lock(&mu_);
    closed_ = true;
    close_status_ = status;
    PumpLocked();
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    writing_ = false;
    queue_.pop_front();
    if (!ok) {  // the client is gone
      FinishLocked(grpc::Status(grpc::StatusCode::UNAVAILABLE, "the stream broke"));
      return;
    }
    PumpLocked();
  }

  void OnCancel() override {
    absl::MutexLock lock(&mu_);
    cancelled_ = true;
    if (started_ && !writing_) FinishLocked(grpc::Status::CANCELLED);
  }

  void OnDone() override {
    uint64_t watch_id;
    {
      absl::MutexLock lock(&mu_);
      watch_id = watch_id_;
    }
    if (watch_id != 0) manager_->Unwatch(watch_id);
    delete this;
  }

 private:
  void PumpLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!started_ || finished_ || writing_) return;
    if (cancelled_) {
      FinishLocked(grpc::Status::CANCELLED);
    } else if (!queue_.empty()) {
      writing_ = true;
      StartWrite(&queue_.front());
    } else if (closed_) {
      FinishLocked(ToGrpcStatus(close_status_));
    }
  }

  void FinishLocked(const grpc::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_) return;
    finished_ = true;
    Finish(status);
  }

  core::JobManager* const manager_;
  absl::Mutex mu_;
  std::deque<v1::JobEvent> queue_ ABSL_GUARDED_BY(mu_);  // front is being written when writing_
  uint64_t watch_id_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Status close_status_ ABSL_GUARDED_BY(mu_);
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace

grpc::ServerUnaryReactor* FineTuningService::SubmitJob(grpc::CallbackServerContext* context,
                                                       const v1::JobSpec* request,
                                                       v1::Job* response) {
  return Reply(context, manager_->Submit(*request), response);
}

grpc::ServerUnaryReactor* FineTuningService::GetJob(grpc::CallbackServerContext* context,
                                                    const v1::GetJobRequest* request,
                                                    v1::Job* response) {
  absl::Status valid = RequireJobId(request->job_id());
  return Reply(context, valid.ok() ? manager_->Get(request->job_id()) : valid, response);
}

grpc::ServerUnaryReactor* FineTuningService::ListJobs(grpc::CallbackServerContext* context,
                                                      const v1::ListJobsRequest* request,
                                                      v1::ListJobsResponse* response) {
  return Reply(context, manager_->List(*request), response);
}

grpc::ServerUnaryReactor* FineTuningService::CancelJob(grpc::CallbackServerContext* context,
                                                       const v1::CancelJobRequest* request,
                                                       v1::Job* response) {
  absl::Status valid = RequireJobId(request->job_id());
  return Reply(context, valid.ok() ? manager_->Cancel(request->job_id()) : valid, response);
}

grpc::ServerWriteReactor<v1::JobEvent>* FineTuningService::WatchJob(
    grpc::CallbackServerContext* /*context*/, const v1::WatchJobRequest* request) {
  auto* reactor = new WatchReactor(manager_);
  reactor->Start(*request);
  return reactor;
}

grpc::ServerUnaryReactor* FineTuningService::ListJobEvents(grpc::CallbackServerContext* context,
                                                           const v1::ListJobEventsRequest* request,
                                                           v1::ListJobEventsResponse* response) {
  absl::Status valid = RequireJobId(request->job_id());
  return Reply(context, valid.ok() ? manager_->ListEvents(*request) : valid, response);
}

grpc::ServerUnaryReactor* FineTuningService::GetServerInfo(
    grpc::CallbackServerContext* context, const v1::GetServerInfoRequest* /*request*/,
    v1::ServerInfo* response) {
  return Reply(context, absl::StatusOr<v1::ServerInfo>(manager_->ServerInfo()), response);
}

grpc::ServerUnaryReactor* FineTuningService::GetCache(grpc::CallbackServerContext* context,
                                                      const v1::GetCacheRequest* request,
                                                      v1::CacheInfo* response) {
  return Reply(context, manager_->GetCache(*request), response);
}

grpc::ServerUnaryReactor* FineTuningService::ClearJobCache(grpc::CallbackServerContext* context,
                                                           const v1::ClearJobCacheRequest* request,
                                                           v1::ClearJobCacheResponse* response) {
  absl::Status valid = RequireJobId(request->job_id());
  return Reply(context, valid.ok() ? manager_->ClearJobCache(request->job_id()) : valid, response);
}

}  // namespace ftd::api
