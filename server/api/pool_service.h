// PoolService: the ftd.pool.v1.Pool gRPC service, a thin layer over
// pool::WorkerPool. Its callers are worker daemons: under authentication,
// admins (a worker runs any tenant's replicas); on the API's own port and
// transport (TLS when the daemon serves TLS).
#pragma once

#include <utility>

#include "ftd/pool/v1/pool.grpc.pb.h"
#include "server/api/access.h"
#include "server/pool/worker_pool.h"

namespace ftd::api {

class PoolService final : public pool::v1::Pool::Service {
 public:
  // `pool` outlives the service.
  PoolService(pool::WorkerPool* pool, Access access) : pool_(pool), access_(std::move(access)) {}

  grpc::Status Attach(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<pool::v1::CoordinatorMessage, pool::v1::WorkerMessage>* stream)
      override;
  grpc::Status FetchFile(grpc::ServerContext* context, const pool::v1::FetchFileRequest* request,
                         grpc::ServerWriter<pool::v1::FileChunk>* writer) override;

 private:
  // OK for an admin; the refusal otherwise (counted).
  absl::Status Admit(grpc::ServerContext* context, const char* method) const;

  pool::WorkerPool* const pool_;
  const Access access_;
};

}  // namespace ftd::api
