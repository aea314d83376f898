#include "server/api/reflection_service.h"

#include <set>

#include "absl/strings/str_cat.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/descriptor.pb.h"
#include "server/core/error_details.h"

namespace ftd::api {
namespace {

using google::protobuf::DescriptorPool;
using google::protobuf::FileDescriptor;

template <typename Response>
void SetError(grpc::StatusCode code, const std::string& message, Response* response) {
  response->mutable_error_response()->set_error_code(static_cast<int>(code));
  response->mutable_error_response()->set_error_message(message);
}

// `file` and the files it imports, transitively, except those this stream
// has sent already (`sent`), as the reference implementation answers.
template <typename Response>
void AddFiles(const FileDescriptor* file, std::set<std::string>* sent, Response* response) {
  if (!sent->insert(file->name()).second) return;
  google::protobuf::FileDescriptorProto proto;
  file->CopyTo(&proto);
  response->mutable_file_descriptor_response()->add_file_descriptor_proto(
      proto.SerializeAsString());
  for (int i = 0; i < file->dependency_count(); ++i) AddFiles(file->dependency(i), sent, response);
}

}  // namespace

template <typename Request, typename Response>
grpc::Status Reflection::Serve(grpc::ServerContext* context,
                               grpc::ServerReaderWriter<Response, Request>* stream) const {
  if (access_.auth != nullptr) {
    constexpr char kMethod[] = "ServerReflectionInfo";
    absl::StatusOr<ftd::core::Caller> caller = security::AuthenticateCall(access_.auth, *context);
    if (!caller.ok()) {
      if (access_.denied) access_.denied(kMethod, core::ReasonOf(caller.status()));
      return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                          std::string(caller.status().message()));
    }
    if (!caller->admin) {
      if (access_.denied) access_.denied(kMethod, "ADMIN_ONLY");
      return grpc::Status(grpc::StatusCode::PERMISSION_DENIED, "reflection is for admins");
    }
  }
  const DescriptorPool* pool = DescriptorPool::generated_pool();
  std::set<std::string> sent;
  Request request;
  while (stream->Read(&request)) {
    Response response;
    response.set_valid_host(request.host());
    *response.mutable_original_request() = request;
    switch (request.message_request_case()) {
      case Request::kFileByFilename: {
        const FileDescriptor* file = pool->FindFileByName(request.file_by_filename());
        if (file == nullptr) {
          SetError(grpc::StatusCode::NOT_FOUND, "File not found.", &response);
        } else {
          AddFiles(file, &sent, &response);
        }
        break;
      }
      case Request::kFileContainingSymbol: {
        const FileDescriptor* file =
            pool->FindFileContainingSymbol(request.file_containing_symbol());
        if (file == nullptr) {
          SetError(grpc::StatusCode::NOT_FOUND, "Symbol not found.", &response);
        } else {
          AddFiles(file, &sent, &response);
        }
        break;
      }
      case Request::kFileContainingExtension: {
        const auto* type =
            pool->FindMessageTypeByName(request.file_containing_extension().containing_type());
        const auto* extension =
            type == nullptr ? nullptr
                            : pool->FindExtensionByNumber(
                                  type, request.file_containing_extension().extension_number());
        if (extension == nullptr) {
          SetError(grpc::StatusCode::NOT_FOUND, "Extension not found.", &response);
        } else {
          AddFiles(extension->file(), &sent, &response);
        }
        break;
      }
      case Request::kAllExtensionNumbersOfType: {
        const auto* type = pool->FindMessageTypeByName(request.all_extension_numbers_of_type());
        if (type == nullptr) {
          SetError(grpc::StatusCode::NOT_FOUND, "Type not found.", &response);
          break;
        }
        std::vector<const google::protobuf::FieldDescriptor*> extensions;
        pool->FindAllExtensions(type, &extensions);
        auto* numbers = response.mutable_all_extension_numbers_response();
        numbers->set_base_type_name(type->full_name());
        for (const auto* extension : extensions) numbers->add_extension_number(extension->number());
        break;
      }
      case Request::kListServices:
        for (const std::string& name : services_) {
          response.mutable_list_services_response()->add_service()->set_name(name);
        }
        break;
      default:
        SetError(grpc::StatusCode::UNIMPLEMENTED, "The server does not support this method.",
                 &response);
    }
    if (!stream->Write(response)) break;
  }
  return grpc::Status::OK;
}

grpc::Status ReflectionV1Service::ServerReflectionInfo(
    grpc::ServerContext* context,
    grpc::ServerReaderWriter<grpc::reflection::v1::ServerReflectionResponse,
                             grpc::reflection::v1::ServerReflectionRequest>* stream) {
  return reflection_->Serve(context, stream);
}

grpc::Status ReflectionV1AlphaService::ServerReflectionInfo(
    grpc::ServerContext* context,
    grpc::ServerReaderWriter<grpc::reflection::v1alpha::ServerReflectionResponse,
                             grpc::reflection::v1alpha::ServerReflectionRequest>* stream) {
  return reflection_->Serve(context, stream);
}

}  // namespace ftd::api
