#include "server/api/fine_tuning_service.h"

#include <memory>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/quote.h"
#include "common/status_macros.h"
#include "google/protobuf/descriptor.h"
#include "grpcpp/impl/codegen/server_callback_handlers.h"
#include "server/api/grpc_status.h"
#include "server/api/wire.h"
#include "server/core/error_details.h"
#include "server/security/authenticator.h"

namespace ftd::api {
namespace {

using Bytes = grpc::ByteBuffer;

absl::Status RequireJobId(const std::string& job_id) {
  if (job_id.empty()) return absl::InvalidArgumentError("job_id: is required");
  return absl::OkStatus();
}

// `status` with `prefix` before its message, its details kept.
absl::Status WithPrefix(const absl::Status& status, absl::string_view prefix) {
  absl::Status prefixed(status.code(), absl::StrCat(prefix, status.message()));
  status.ForEachPayload([&](absl::string_view url, const absl::Cord& payload) {
    prefixed.SetPayload(url, payload);
  });
  return prefixed;
}

absl::Time DeadlineOf(const grpc::CallbackServerContext& context) {
  return absl::FromChrono(context.deadline());
}

// Streams one job's events: history, then live events, then the end. It
// pulls them from its subscription one write at a time (so a slow client
// holds no more than the event hub's buffer); the hub wakes it when there
// may be more. Deletes itself in OnDone.
class WatchReactor final : public grpc::ServerWriteReactor<Bytes>, public OpenStreams::Stream {
 public:
  WatchReactor(core::JobManager* manager, grpc::CallbackServerContext* context)
      : manager_(manager), context_(context) {}

  // Subscribes. Nothing is written before this returns, so the reactor
  // cannot finish (and be deleted) while it runs.
  void Start(const v1::WatchJobRequest& request, const core::Caller& caller,
             OpenStreams* streams, security::CallCredential credential) {
    std::unique_ptr<OpenStreams::Registration> registration =
        streams->Add(this, std::move(credential), caller);
    absl::Status valid = RequireJobId(request.job_id());
    absl::StatusOr<std::unique_ptr<core::EventSubscription>> subscription =
        valid.ok() ? manager_->Watch(
                         request.job_id(), request.after_sequence(), [this] { Wake(); }, caller)
                   : valid;
    absl::MutexLock lock(&mu_);
    registration_ = std::move(registration);
    started_ = true;
    if (!subscription.ok()) {
      FinishLocked(ToGrpcStatus(subscription.status()));
      return;
    }
    subscription_ = *std::move(subscription);
    more_ = true;
    PumpLocked();
  }

  void Revoke(const absl::Status& status) override {
    bool stuck = false;
    {
      absl::MutexLock lock(&mu_);
      revoked_ = status;
      if (started_ && !writing_ && !pulling_) FinishLocked(ToGrpcStatus(status));
      // A write the client does not read would hold the stream (and its
      // place) for good: the call is cancelled, the write fails.
      stuck = writing_;
    }
    if (stuck) context_->TryCancel();
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    writing_ = false;
    if (!ok && !revoked_.ok()) {
      FinishLocked(ToGrpcStatus(revoked_));
      return;
    }
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
    // After this, the hub does not call Wake again, nor the registry
    // Revoke.
    std::unique_ptr<core::EventSubscription> subscription;
    std::unique_ptr<OpenStreams::Registration> registration;
    {
      absl::MutexLock lock(&mu_);
      subscription = std::move(subscription_);
      registration = std::move(registration_);
    }
    registration.reset();
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
      if (!revoked_.ok()) {
        FinishLocked(ToGrpcStatus(revoked_));
        break;
      }
      more_ = false;
      v1::JobEvent event;
      absl::Status status;
      mu_.Unlock();  // the pull may read the store
      const core::EventSubscription::Pull pull = subscription_->Next(&event, &status);
      mu_.Lock();
      if (pull == core::EventSubscription::Pull::kEvent) {
        event_ = Serialize(event);
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
    // A cancel or a revocation that came during the pull.
    if (cancelled_ && !writing_) FinishLocked(grpc::Status::CANCELLED);
    if (!revoked_.ok() && !writing_) FinishLocked(ToGrpcStatus(revoked_));
  }

  void FinishLocked(const grpc::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_) return;
    finished_ = true;
    Finish(status);
  }

  core::JobManager* const manager_;
  grpc::CallbackServerContext* const context_;
  absl::Mutex mu_;
  // Set once in Start; reset in OnDone.
  std::unique_ptr<core::EventSubscription> subscription_;
  std::unique_ptr<OpenStreams::Registration> registration_ ABSL_GUARDED_BY(mu_);
  Bytes event_ ABSL_GUARDED_BY(mu_);  // being written when writing_
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  bool more_ ABSL_GUARDED_BY(mu_) = false;     // the subscription may have events
  bool pulling_ ABSL_GUARDED_BY(mu_) = false;  // a Next() call is under way
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status revoked_ ABSL_GUARDED_BY(mu_);  // not OK once the credentials stop holding
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

// Chunks of a download.
constexpr size_t kChunkBytes = 1 << 20;

absl::Status RequireFileId(const std::string& file_id) {
  if (file_id.empty()) return absl::InvalidArgumentError("file_id: is required");
  return absl::OkStatus();
}

// Takes one upload stream: the header, then chunks, then the end, each
// message parsed and handed to the file manager; the checks of the whole
// upload, once it has all come, run on the check pool. Deletes itself in
// OnDone; the upload, unless it was kept, is removed with it.
class UploadReactor final : public grpc::ServerReadReactor<Bytes>, public OpenStreams::Stream {
 public:
  // `on_malformed` is told of each message that does not parse.
  UploadReactor(core::FileManager* files, CheckPool* checks, grpc::CallbackServerContext* context,
                core::Caller caller, Bytes* response, OpenStreams* streams,
                security::CallCredential credential, std::function<void()> on_malformed)
      : files_(files), checks_(checks), context_(context), caller_(std::move(caller)),
        response_(response), on_malformed_(std::move(on_malformed)) {
    registration_ = streams->Add(this, std::move(credential), caller_);
    Read();
  }

  void Revoke(const absl::Status& status) override {
    // While a message is awaited (a client that stalls included), the
    // stream ends now and its upload goes with it (the read then fails);
    // while the end's checks run, they look before they keep anything.
    {
      absl::MutexLock lock(&mu_);
      revoked_ = status;
      if (!reading_ || finished_) return;
      finished_ = true;
    }
    Finish(ToGrpcStatus(status));
  }

  void OnReadDone(bool ok) override {
    {
      absl::MutexLock lock(&mu_);
      reading_ = false;
    }
    if (absl::Status revoked = Revoked(); !revoked.ok()) {
      upload_.reset();
      Done(revoked);
      return;
    }
    if (!ok) {  // the client's end of the stream (or a broken one)
      if (upload_ == nullptr) {
        Done(absl::InvalidArgumentError("header: the stream ended before a header came"));
        return;
      }
      if (context_->IsCancelled()) {
        upload_.reset();
        Done(absl::CancelledError("the upload was cancelled"));
        return;
      }
      absl::Status queued = checks_->Schedule(DeadlineOf(*context_), [this](absl::Status ready) {
        if (ready.ok()) ready = Revoked();
        if (!ready.ok()) {
          upload_.reset();
          Done(ready);
          return;
        }
        absl::StatusOr<v1::File> file = upload_->Finish();
        if (file.ok()) *response_ = Serialize(*file);
        Done(file.status());
      });
      if (!queued.ok()) {
        upload_.reset();
        Done(queued);
      }
      return;
    }
    v1::UploadFileRequest request;
    absl::Status status = ReadRequest(message_, &request);
    if (!status.ok()) {
      if (on_malformed_ && core::ReasonOf(status) == "MALFORMED_REQUEST") on_malformed_();
      // Which message: the header or a chunk after it.
      status = WithPrefix(status, upload_ == nullptr ? "the first message: " : "a chunk: ");
    } else if (upload_ == nullptr) {
      if (!request.has_header()) {
        status = absl::InvalidArgumentError("header: the first message must be the header");
      } else {
        absl::StatusOr<std::unique_ptr<core::FileManager::Upload>> upload =
            files_->BeginUpload(std::move(*request.mutable_header()), caller_);
        if (upload.ok()) upload_ = *std::move(upload);
        status = upload.status();
      }
    } else if (request.has_header()) {
      status = absl::InvalidArgumentError("header: came again; only the first message is one");
    } else {
      status = upload_->Write(request.chunk());
    }
    if (!status.ok()) {
      upload_.reset();  // nothing is kept
      Done(status);
      return;
    }
    message_.Clear();
    Read();
  }

  void OnDone() override {
    registration_.reset();
    delete this;
  }

 private:
  absl::Status Revoked() {
    absl::MutexLock lock(&mu_);
    return revoked_;
  }

  // Reads the next message, unless the stream was revoked while the last
  // one was handled (the registry tells a stream once): then it ends.
  void Read() {
    absl::Status revoked;
    {
      absl::MutexLock lock(&mu_);
      if (finished_) return;
      if (revoked_.ok()) {
        reading_ = true;
      } else {
        revoked = revoked_;
        finished_ = true;
      }
    }
    if (!revoked.ok()) {
      upload_.reset();
      Finish(ToGrpcStatus(revoked));
      return;
    }
    StartRead(&message_);
  }

  // Finishes once; outside the lock, as OnDone (which deletes this) may
  // follow Finish at once on another thread.
  void Done(const absl::Status& status) {
    {
      absl::MutexLock lock(&mu_);
      if (finished_) return;
      finished_ = true;
    }
    Finish(ToGrpcStatus(status));
  }

  core::FileManager* const files_;
  CheckPool* const checks_;
  grpc::CallbackServerContext* const context_;
  const core::Caller caller_;
  Bytes* const response_;
  const std::function<void()> on_malformed_;
  // Set in the constructor, reset in OnDone.
  std::unique_ptr<OpenStreams::Registration> registration_;
  Bytes message_;
  std::unique_ptr<core::FileManager::Upload> upload_;
  absl::Mutex mu_;
  absl::Status revoked_ ABSL_GUARDED_BY(mu_);
  bool reading_ ABSL_GUARDED_BY(mu_) = false;  // a read is outstanding
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

// Streams a job's output: the header, then the bytes a chunk at a time
// (one write in flight). Opening the output (which hashes its files) runs
// on the check pool. Deletes itself in OnDone.
class DownloadReactor final : public grpc::ServerWriteReactor<Bytes>, public OpenStreams::Stream {
 public:
  explicit DownloadReactor(grpc::CallbackServerContext* context) : context_(context) {}

  // Opens `request`'s output on the check pool, then streams it.
  void Start(core::JobManager* manager, CheckPool* checks, grpc::CallbackServerContext* context,
             const v1::DownloadJobOutputRequest& request, const core::Caller& caller,
             OpenStreams* streams, security::CallCredential credential) {
    {
      // Until the output is open and its header written, nothing but the
      // open may finish the stream (a revocation waits for it): the open
      // runs on the pool and needs the reactor.
      absl::MutexLock lock(&mu_);
      writing_ = true;
    }
    std::unique_ptr<OpenStreams::Registration> registration =
        streams->Add(this, std::move(credential), caller);
    {
      absl::MutexLock lock(&mu_);
      registration_ = std::move(registration);
    }
    absl::Status queued =
        checks->Schedule(DeadlineOf(*context), [this, manager, request](absl::Status ready) {
          absl::StatusOr<std::unique_ptr<core::OutputReader>> reader =
              ready.ok() ? manager->OpenOutput(request.job_id(), request.artifact())
                         : absl::StatusOr<std::unique_ptr<core::OutputReader>>(ready);
          absl::MutexLock lock(&mu_);
          writing_ = false;
          if (!revoked_.ok()) reader = revoked_;
          if (!reader.ok()) {
            FinishLocked(ToGrpcStatus(reader.status()));
            return;
          }
          reader_ = *std::move(reader);
          v1::DownloadJobOutputResponse message;
          auto* header = message.mutable_header();
          header->set_artifact(request.artifact().empty() ? "model" : request.artifact());
          for (const v1::FileEntry& entry : reader_->entries()) *header->add_entries() = entry;
          WriteLocked(message);
        });
    if (!queued.ok()) {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      FinishLocked(ToGrpcStatus(queued));
    }
  }

  void Revoke(const absl::Status& status) override {
    bool stuck = false;
    {
      absl::MutexLock lock(&mu_);
      revoked_ = status;
      if (!writing_) FinishLocked(ToGrpcStatus(status));
      // A chunk the client does not read would hold the download's place
      // for good: the call is cancelled, the write fails. (While the
      // output is being opened, the open finishes the stream.)
      stuck = writing_ && reader_ != nullptr;
    }
    if (stuck) context_->TryCancel();
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    writing_ = false;
    if (!revoked_.ok()) {
      FinishLocked(ToGrpcStatus(revoked_));
      return;
    }
    if (!ok) {
      FinishLocked(grpc::Status(grpc::StatusCode::UNAVAILABLE, "the stream broke"));
      return;
    }
    if (finished_) return;
    absl::StatusOr<std::string> chunk = reader_->Next(kChunkBytes);
    if (!chunk.ok()) {
      FinishLocked(ToGrpcStatus(chunk.status()));
      return;
    }
    if (chunk->empty()) {
      FinishLocked(grpc::Status::OK);
      return;
    }
    v1::DownloadJobOutputResponse message;
    message.set_chunk(*std::move(chunk));
    WriteLocked(message);
  }

  void OnDone() override {
    std::unique_ptr<OpenStreams::Registration> registration;
    {
      absl::MutexLock lock(&mu_);
      registration = std::move(registration_);
    }
    registration.reset();
    delete this;
  }

 private:
  void WriteLocked(const v1::DownloadJobOutputResponse& message)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_) return;
    message_ = Serialize(message);
    writing_ = true;
    StartWrite(&message_);
  }

  void FinishLocked(const grpc::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_) return;
    finished_ = true;
    Finish(status);
  }

  grpc::CallbackServerContext* const context_;
  absl::Mutex mu_;
  std::unique_ptr<OpenStreams::Registration> registration_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<core::OutputReader> reader_ ABSL_GUARDED_BY(mu_);
  Bytes message_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status revoked_ ABSL_GUARDED_BY(mu_);
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

// A reactor that only answers `status` (a call refused before it began).
template <typename Base>
class Refused final : public Base {
 public:
  explicit Refused(const absl::Status& status) { this->Finish(ToGrpcStatus(status)); }
  void OnDone() override { delete this; }
};

}  // namespace

FineTuningService::FineTuningService(core::JobManager* manager, core::FileManager* files,
                                     Access access, CheckPool* checks, OpenStreams* streams)
    : manager_(manager),
      files_(files),
      access_(std::move(access)),
      checks_(checks),
      streams_(streams) {
  using namespace v1;  // NOLINT: the request and reply types, below only
  // What reads the caller's files runs on the check pool.
  AddUnary<SubmitJobRequest, Job>(
      "SubmitJob", Where::kCheckPool, [this](const core::Caller& caller, const auto& request) {
        return manager_->Submit(request.spec(), request.request_id(), caller);
      });
  AddUnary<GetJobRequest, Job>(
      "GetJob", Where::kInline,
      [this](const core::Caller& caller, const auto& request) -> absl::StatusOr<Job> {
        RETURN_IF_ERROR(CheckJob(request.job_id(), caller));
        return manager_->Get(request.job_id());
      });
  AddUnary<ListJobsRequest, ListJobsResponse>(
      "ListJobs", Where::kInline, [this](const core::Caller& caller, const auto& request) {
        return manager_->List(request, caller);
      });
  AddUnary<CancelJobRequest, Job>(
      "CancelJob", Where::kInline,
      [this](const core::Caller& caller, const auto& request) -> absl::StatusOr<Job> {
        RETURN_IF_ERROR(CheckJob(request.job_id(), caller));
        return manager_->Cancel(request.job_id());
      });
  AddUnary<DeleteJobRequest, DeleteJobResponse>(
      "DeleteJob", Where::kInline,
      [this](const core::Caller& caller,
             const auto& request) -> absl::StatusOr<DeleteJobResponse> {
        RETURN_IF_ERROR(CheckJob(request.job_id(), caller));
        return manager_->Delete(request.job_id());
      });
  AddUnary<ListJobEventsRequest, ListJobEventsResponse>(
      "ListJobEvents", Where::kInline,
      [this](const core::Caller& caller,
             const auto& request) -> absl::StatusOr<ListJobEventsResponse> {
        RETURN_IF_ERROR(CheckJob(request.job_id(), caller));
        return manager_->ListEvents(request);
      });
  AddUnary<GetServerInfoRequest, ServerInfo>(
      "GetServerInfo", Where::kInline,
      [this](const core::Caller& caller, const auto&) -> absl::StatusOr<ServerInfo> {
        ServerInfo info = manager_->ServerInfo();
        if (!caller.admin) {
          // Other tenants' work is not a user's to see.
          for (Device& device : *info.mutable_devices()) device.clear_job_id();
          info.clear_queue_length();
          info.clear_running_jobs();
          info.clear_metrics_address();
          info.clear_metrics_url();
        }
        return info;
      });
  AddUnary<GetCacheRequest, CacheInfo>(
      "GetCache", Where::kInline,
      [this](const core::Caller& caller, const auto& request) -> absl::StatusOr<CacheInfo> {
        if (request.job_id().empty()) {
          RETURN_IF_ERROR(RequireAdmin(caller, "GetCache", "the whole cache (without a job_id)"));
        } else {
          RETURN_IF_ERROR(CheckJob(request.job_id(), caller));
        }
        ASSIGN_OR_RETURN(CacheInfo info, manager_->GetCache(request));
        if (!caller.admin) {
          // The whole cache's size tells of other tenants' jobs.
          info.clear_bytes();
          info.clear_capacity_bytes();
        }
        return info;
      });
  AddUnary<ClearJobCacheRequest, ClearJobCacheResponse>(
      "ClearJobCache", Where::kInline,
      [this](const core::Caller& caller,
             const auto& request) -> absl::StatusOr<ClearJobCacheResponse> {
        RETURN_IF_ERROR(CheckJob(request.job_id(), caller));
        return manager_->ClearJobCache(request.job_id());
      });
  AddUnary<GetFileRequest, File>(
      "GetFile", Where::kInline,
      [this](const core::Caller& caller, const auto& request) -> absl::StatusOr<File> {
        RETURN_IF_ERROR(RequireFileId(request.file_id()));
        return files_->Get(request.file_id(), caller);
      });
  AddUnary<ListFilesRequest, ListFilesResponse>(
      "ListFiles", Where::kInline, [this](const core::Caller& caller, const auto& request) {
        return files_->List(request, caller);
      });
  AddUnary<DeleteFileRequest, DeleteFileResponse>(
      "DeleteFile", Where::kInline,
      [this](const core::Caller& caller,
             const auto& request) -> absl::StatusOr<DeleteFileResponse> {
        RETURN_IF_ERROR(RequireFileId(request.file_id()));
        return files_->Delete(request.file_id(), caller);
      });
  AddStreams();
}

int FineTuningService::MethodIndex(const std::string& name) const {
  const google::protobuf::ServiceDescriptor* service =
      v1::SubmitJobRequest::descriptor()->file()->FindServiceByName("FineTuning");
  const google::protobuf::MethodDescriptor* method =
      service == nullptr ? nullptr : service->FindMethodByName(name);
  // A name here that the proto lacks is a bug of this file, found by every
  // test that starts the service.
  if (method == nullptr) std::abort();
  return method->index();
}

template <typename Request, typename Response>
void FineTuningService::AddUnary(const std::string& name, Where where,
                                 UnaryFn<Request, Response> fn) {
  auto method = std::make_shared<const std::string>(name);
  MarkMethodRawCallback(
      MethodIndex(name),
      new grpc::internal::CallbackUnaryHandler<Bytes, Bytes>(
          [this, method, where, fn = std::move(fn)](grpc::CallbackServerContext* context,
                                                    const Bytes* bytes,
                                                    Bytes* reply) -> grpc::ServerUnaryReactor* {
            grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
            auto request = std::make_shared<Request>();
            absl::StatusOr<core::Caller> caller =
                Admit(context, method->c_str(), *bytes, request.get());
            if (!caller.ok()) {
              reactor->Finish(ToGrpcStatus(caller.status()));
              return reactor;
            }
            auto answer = [fn, request, reply, reactor, caller = *std::move(caller)] {
              absl::StatusOr<Response> result = fn(caller, *request);
              if (result.ok()) *reply = Serialize(*result);
              reactor->Finish(ToGrpcStatus(result.status()));
            };
            if (where == Where::kInline) {
              answer();
              return reactor;
            }
            absl::Status queued = checks_->Schedule(
                DeadlineOf(*context), [answer, reactor, context](absl::Status ready) {
                  if (ready.ok() && context->IsCancelled()) {
                    ready = absl::CancelledError("the call was cancelled");
                  }
                  if (!ready.ok()) {
                    reactor->Finish(ToGrpcStatus(ready));
                    return;
                  }
                  answer();
                });
            if (!queued.ok()) reactor->Finish(ToGrpcStatus(queued));
            return reactor;
          }));
}

template <typename Request>
void FineTuningService::AddJobStream(const std::string& name, StreamFn<Request> start) {
  auto method = std::make_shared<const std::string>(name);
  MarkMethodRawCallback(
      MethodIndex(name),
      new grpc::internal::CallbackServerStreamingHandler<Bytes, Bytes>(
          [this, method, start = std::move(start)](
              grpc::CallbackServerContext* context,
              const Bytes* bytes) -> grpc::ServerWriteReactor<Bytes>* {
            Request request;
            absl::StatusOr<core::Caller> caller = Admit(context, method->c_str(), *bytes, &request);
            absl::Status allowed = caller.ok() ? CheckJob(request.job_id(), *caller)
                                               : caller.status();
            if (!allowed.ok()) return new Refused<grpc::ServerWriteReactor<Bytes>>(allowed);
            return start(context, request, *caller);
          }));
}

void FineTuningService::AddStreams() {
  AddJobStream<v1::WatchJobRequest>(
      "WatchJob", [this](grpc::CallbackServerContext* context, const v1::WatchJobRequest& request,
                         const core::Caller& caller) {
        auto* reactor = new WatchReactor(manager_, context);
        reactor->Start(request, caller, streams_, security::CredentialOf(*context));
        return reactor;
      });
  AddJobStream<v1::DownloadJobOutputRequest>(
      "DownloadJobOutput",
      [this](grpc::CallbackServerContext* context, const v1::DownloadJobOutputRequest& request,
             const core::Caller& caller) {
        auto* reactor = new DownloadReactor(context);
        reactor->Start(manager_, checks_, context, request, caller, streams_,
                       security::CredentialOf(*context));
        return reactor;
      });
  MarkMethodRawCallback(
      MethodIndex("UploadFile"),
      new grpc::internal::CallbackClientStreamingHandler<Bytes, Bytes>(
          [this](grpc::CallbackServerContext* context,
                 Bytes* response) -> grpc::ServerReadReactor<Bytes>* {
            absl::StatusOr<core::Caller> caller = Authorize(context, "UploadFile");
            if (!caller.ok()) return new Refused<grpc::ServerReadReactor<Bytes>>(caller.status());
            std::function<void()> on_malformed;
            if (access_.malformed) on_malformed = [this] { access_.malformed("UploadFile"); };
            return new UploadReactor(files_, checks_, context, *std::move(caller), response,
                                     streams_, security::CredentialOf(*context),
                                     std::move(on_malformed));
          }));
}

absl::StatusOr<core::Caller> FineTuningService::Authorize(grpc::CallbackServerContext* context,
                                                          const char* method) const {
  absl::StatusOr<core::Caller> caller = security::AuthenticateCall(access_.auth, *context);
  if (!caller.ok() && access_.denied) access_.denied(method, core::ReasonOf(caller.status()));
  return caller;
}

absl::StatusOr<core::Caller> FineTuningService::Admit(grpc::CallbackServerContext* context,
                                                      const char* method, const Bytes& bytes,
                                                      google::protobuf::Message* request) const {
  ASSIGN_OR_RETURN(core::Caller caller, Authorize(context, method));
  absl::Status read = ReadRequest(bytes, request);
  if (!read.ok()) {
    if (access_.malformed && core::ReasonOf(read) == "MALFORMED_REQUEST") {
      access_.malformed(method);
    }
    return read;
  }
  return caller;
}

absl::Status FineTuningService::CheckJob(const std::string& job_id,
                                         const core::Caller& caller) const {
  RETURN_IF_ERROR(RequireJobId(job_id));
  if (caller.admin) return absl::OkStatus();
  ASSIGN_OR_RETURN(v1::Job job, manager_->Get(job_id));
  // Another tenant's job is what a job that does not exist is.
  if (!caller.CanSee(job.tenant())) {
    return absl::NotFoundError(absl::StrCat("no job ", UserTextPrefix(job_id)));
  }
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

}  // namespace ftd::api
