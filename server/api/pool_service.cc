#include "server/api/pool_service.h"

#include <fcntl.h>
#include <unistd.h>

#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/fs_util.h"
#include "server/api/grpc_status.h"
#include "server/core/error_details.h"

namespace ftd::api {

namespace {

// The worker's stream, as the pool writes to it.
class Stream final : public pool::WorkerStream {
 public:
  Stream(grpc::ServerContext* context,
         grpc::ServerReaderWriter<pool::v1::CoordinatorMessage, pool::v1::WorkerMessage>* stream)
      : context_(context), stream_(stream) {}
  bool Send(const pool::v1::CoordinatorMessage& message) override {
    return stream_->Write(message);
  }
  void Cancel() override { context_->TryCancel(); }

 private:
  grpc::ServerContext* const context_;
  grpc::ServerReaderWriter<pool::v1::CoordinatorMessage, pool::v1::WorkerMessage>* const stream_;
};

// Bytes a FetchFile message carries.
constexpr size_t kChunkBytes = 1 << 20;

}  // namespace

absl::Status PoolService::Admit(grpc::ServerContext* context, const char* method) const {
  absl::StatusOr<core::Caller> caller = security::AuthenticateCall(access_.auth, *context);
  if (!caller.ok()) {
    if (access_.denied) access_.denied(method, core::ReasonOf(caller.status()));
    return caller.status();
  }
  if (!caller->admin) {
    if (access_.denied) access_.denied(method, "PERMISSION_DENIED");
    return absl::PermissionDeniedError(
        absl::StrCat(method, ": the pool is for worker daemons, which authenticate as admins; "
                             "tenant \"",
                     caller->tenant, "\" is a user"));
  }
  return absl::OkStatus();
}

grpc::Status PoolService::Attach(
    grpc::ServerContext* context,
    grpc::ServerReaderWriter<pool::v1::CoordinatorMessage, pool::v1::WorkerMessage>* stream) {
  if (absl::Status admitted = Admit(context, "Attach"); !admitted.ok()) {
    return ToGrpcStatus(admitted);
  }
  pool::v1::WorkerMessage message;
  if (!stream->Read(&message)) return grpc::Status::CANCELLED;
  if (!message.has_hello()) {
    return ToGrpcStatus(
        absl::InvalidArgumentError("Attach: a worker's first message is its hello"));
  }
  const std::string name = message.hello().name();
  Stream writer(context, stream);
  if (absl::Status attached = pool_->Attach(message.hello(), &writer); !attached.ok()) {
    return ToGrpcStatus(attached);
  }
  std::string why = "its connection closed";
  while (stream->Read(&message)) {
    if (message.has_heartbeat()) {
      pool_->Heartbeat(name);
    } else if (message.has_ended()) {
      pool_->ReplicaEnded(name, message.ended());
      pool_->Heartbeat(name);
    } else if (message.has_hello()) {
      why = "it sent a second hello";
      break;
    }
  }
  pool_->Detach(name, why, &writer);
  return grpc::Status::OK;
}

grpc::Status PoolService::FetchFile(grpc::ServerContext* context,
                                    const pool::v1::FetchFileRequest* request,
                                    grpc::ServerWriter<pool::v1::FileChunk>* writer) {
  if (absl::Status admitted = Admit(context, "FetchFile"); !admitted.ok()) {
    return ToGrpcStatus(admitted);
  }
  absl::StatusOr<std::string> path = pool_->OfferedPath(request->worker(), request->sha256());
  if (!path.ok()) return ToGrpcStatus(path.status());
  // The path was the job's when it was placed: a link put there since is
  // not followed.
  const int fd = OpenNoLinks(*path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return ToGrpcStatus(absl::UnavailableError(
        absl::StrCat("the file with SHA-256 ", request->sha256(), " cannot be opened any more")));
  }
  std::string buffer(kChunkBytes, '\0');
  pool::v1::FileChunk chunk;
  grpc::Status result = grpc::Status::OK;
  while (true) {
    const ssize_t n = ::read(fd, buffer.data(), buffer.size());
    if (n < 0) {
      result = ToGrpcStatus(absl::UnavailableError(absl::StrCat(
          "reading the file with SHA-256 ", request->sha256(), " failed part way")));
      break;
    }
    if (n == 0) break;
    chunk.set_data(buffer.data(), static_cast<size_t>(n));
    if (!writer->Write(chunk)) {
      result = grpc::Status::CANCELLED;
      break;
    }
  }
  ::close(fd);
  return result;
}

}  // namespace ftd::api
