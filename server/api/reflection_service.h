// gRPC server reflection, both versions: v1 (grpc.reflection.v1), which
// current clients ask for first, and v1alpha, which older ones (and Debian's
// gRPC 1.51) know. The messages are the same under two names. ftd serves
// both itself, rather than v1alpha through libgrpc++_reflection's plugin,
// which registers for every server of the process and cannot check callers:
// with authentication, both are for admins. They answer from the process's
// generated descriptor pool, as gRPC's reference implementation does.
#pragma once

#include <string>
#include <vector>

#include "grpc/reflection/v1/reflection.grpc.pb.h"
#include "grpc/reflection/v1alpha/reflection.grpc.pb.h"
#include "server/api/access.h"

namespace ftd::api {

// What both versions answer, and to whom.
class Reflection {
 public:
  // `services`: the fully-qualified names list_services answers with. With
  // `access.auth` (not owned), only admins may reflect; refusals are told to
  // `access.denied`.
  Reflection(std::vector<std::string> services, Access access)
      : services_(std::move(services)), access_(std::move(access)) {}

  // One reflection stream of either version (Request and Response are v1's
  // or v1alpha's messages).
  template <typename Request, typename Response>
  grpc::Status Serve(grpc::ServerContext* context,
                     grpc::ServerReaderWriter<Response, Request>* stream) const;

 private:
  const std::vector<std::string> services_;
  const Access access_;
};

class ReflectionV1Service final : public grpc::reflection::v1::ServerReflection::Service {
 public:
  explicit ReflectionV1Service(const Reflection* reflection) : reflection_(reflection) {}
  grpc::Status ServerReflectionInfo(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<grpc::reflection::v1::ServerReflectionResponse,
                               grpc::reflection::v1::ServerReflectionRequest>* stream) override;

 private:
  const Reflection* const reflection_;
};

class ReflectionV1AlphaService final : public grpc::reflection::v1alpha::ServerReflection::Service {
 public:
  explicit ReflectionV1AlphaService(const Reflection* reflection) : reflection_(reflection) {}
  grpc::Status ServerReflectionInfo(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<grpc::reflection::v1alpha::ServerReflectionResponse,
                               grpc::reflection::v1alpha::ServerReflectionRequest>* stream)
      override;

 private:
  const Reflection* const reflection_;
};

}  // namespace ftd::api
