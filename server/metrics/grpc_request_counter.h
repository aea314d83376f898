// Counts the daemon's gRPC requests by method and status code
// (ftd_grpc_requests_total), as a server interceptor: every service,
// health checks and reflection included.
#pragma once

#include <memory>
#include <vector>

#include "grpcpp/support/server_interceptor.h"
#include "server/metrics/metrics.h"

namespace ftd::metrics {

// For grpc::ServerBuilder::experimental().SetInterceptorCreators(). `metrics`
// must outlive the server.
std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> GrpcRequestCounter(
    Metrics* metrics);

}  // namespace ftd::metrics
