#include "server/metrics/grpc_request_counter.h"

#include <string>

namespace ftd::metrics {
namespace {

using grpc::experimental::InterceptionHookPoints;

class RequestCounter final : public grpc::experimental::Interceptor {
 public:
  RequestCounter(Metrics* metrics, const char* method)
      : metrics_(metrics), method_(method == nullptr ? "unknown" : method) {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS)) {
      metrics_->RecordGrpcRequest(method_, GrpcCodeName(methods->GetSendStatus().error_code()));
    }
    methods->Proceed();
  }

 private:
  Metrics* const metrics_;
  const std::string method_;
};

class Factory final : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit Factory(Metrics* metrics) : metrics_(metrics) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    return new RequestCounter(metrics_, info->method());
  }

 private:
  Metrics* const metrics_;
};

}  // namespace

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> GrpcRequestCounter(
    Metrics* metrics) {
  return std::make_unique<Factory>(metrics);
}

}  // namespace ftd::metrics
