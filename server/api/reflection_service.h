// gRPC server reflection v1 (grpc.reflection.v1.ServerReflection), beside
// the v1alpha service that libgrpc++_reflection provides: Debian's gRPC
// (1.51) has only v1alpha, and current clients ask for v1 first. It answers
// from the process's generated descriptor pool, as v1alpha does.
#pragma once

#include <string>
#include <vector>

#include "grpc/reflection/v1/reflection.grpc.pb.h"
#include "server/security/authenticator.h"

namespace ftd::api {

class ReflectionService final : public grpc::reflection::v1::ServerReflection::Service {
 public:
  // `services`: the fully-qualified names list_services answers with. With
  // `auth` (not owned), only admins may reflect.
  ReflectionService(std::vector<std::string> services, security::Authenticator* auth)
      : services_(std::move(services)), auth_(auth) {}

  grpc::Status ServerReflectionInfo(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<grpc::reflection::v1::ServerReflectionResponse,
                               grpc::reflection::v1::ServerReflectionRequest>* stream) override;

 private:
  const std::vector<std::string> services_;
  security::Authenticator* const auth_;
};

}  // namespace ftd::api
