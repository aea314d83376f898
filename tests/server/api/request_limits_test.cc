// What a caller may send: every string has a limit checked before anything
// reads the request, enums take only the values they name, and an error
// names the field and its limit, never what was sent.
#include "server/api/request_limits.h"

#include <set>
#include <string>

#include "ftd/v1/ftd.grpc.pb.h"
#include "gmock/gmock.h"
#include "google/protobuf/descriptor.h"
#include "grpc/health/v1/health.pb.h"
#include "gtest/gtest.h"
#include "server/api/wire.h"
#include "server/core/error_details.h"
#include "tests/testing/status_matchers.h"

namespace ftd::api {
namespace {

using ::ftd::testing::StatusIs;
using ::google::protobuf::Descriptor;
using ::google::protobuf::FieldDescriptor;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::SizeIs;

constexpr size_t kMegabyte = 1 << 20;

TEST(RequestLimitsTest, AStringOverItsLimitIsNamedWithItsLimitAndNotEchoed) {
  v1::GetJobRequest request;
  request.set_job_id(std::string(kMegabyte, 'x'));
  const absl::Status status = CheckRequestLimits(request);
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kInvalidArgument,
                               AllOf(HasSubstr("job_id"), HasSubstr("1048576 bytes"),
                                     HasSubstr("limit of 128"), Not(HasSubstr("xxx")))));
  EXPECT_THAT(std::string(status.message()), SizeIs(::testing::Lt(100)));
  EXPECT_EQ(core::ReasonOf(status), "INVALID_FIELD");

  request.set_job_id(std::string(128, 'x'));
  EXPECT_OK(CheckRequestLimits(request));
}

TEST(RequestLimitsTest, NestedFieldsAndMapEntriesAreNamedByTheirPath) {
  v1::SubmitJobRequest request;
  request.mutable_spec()->mutable_train_dataset()->set_path("/" + std::string(4095, 'p'));
  EXPECT_OK(CheckRequestLimits(request));
  request.mutable_spec()->mutable_train_dataset()->set_path("/" + std::string(4096, 'p'));
  EXPECT_THAT(CheckRequestLimits(request),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("train_dataset.path: 4097 bytes")));

  v1::ListJobsRequest list;
  (*list.mutable_labels())[std::string(2 * kMegabyte, 'k')] = "v";
  EXPECT_THAT(CheckRequestLimits(list),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("labels[key]: 2097152 bytes"), Not(HasSubstr("kkk")))));
  list.clear_labels();
  (*list.mutable_labels())["team"] = std::string(257, 'v');
  EXPECT_THAT(CheckRequestLimits(list), StatusIs(absl::StatusCode::kInvalidArgument,
                                                 HasSubstr("labels[value]: 257 bytes")));
  request.mutable_spec()->mutable_train_dataset()->clear_path();
  request.set_request_id(std::string(129, 'r'));
  EXPECT_THAT(CheckRequestLimits(request), StatusIs(absl::StatusCode::kInvalidArgument,
                                                    HasSubstr("request_id: 129 bytes")));
}

TEST(RequestLimitsTest, RepeatedFieldsHaveACount) {
  v1::ListJobsRequest request;
  for (int i = 0; i < 65; ++i) request.add_states(v1::JOB_STATE_RUNNING);
  EXPECT_THAT(CheckRequestLimits(request),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("states: 65 elements, more than its limit of 64")));
}

TEST(RequestLimitsTest, AnEnumValueItsEnumDoesNotNameIsRefusedEverywhere) {
  v1::ListFilesRequest files;
  for (int kind : {1234, -1}) {
    files.set_kind(static_cast<v1::FileKind>(kind));
    EXPECT_THAT(CheckRequestLimits(files),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         HasSubstr(std::to_string(kind) + " is not a value of FileKind")));
  }
  files.set_kind(v1::FILE_KIND_MODEL);
  EXPECT_OK(CheckRequestLimits(files));

  v1::ListJobsRequest jobs;
  jobs.add_states(v1::JOB_STATE_QUEUED);
  jobs.add_states(static_cast<v1::JobState>(99));
  EXPECT_THAT(CheckRequestLimits(jobs), StatusIs(absl::StatusCode::kInvalidArgument,
                                                 HasSubstr("states[1]: 99 is not a value")));

  v1::SubmitJobRequest submit;
  submit.mutable_spec()->mutable_activation_cache()->set_dtype(
      static_cast<v1::ActivationCache::Dtype>(7));
  EXPECT_THAT(CheckRequestLimits(submit),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("activation_cache.dtype: 7 is not a value of Dtype")));
}

// Every string and bytes field of every request the daemon takes, at any
// depth, has a limit no larger than a path's, but an upload's chunk.
void CollectStringFields(const Descriptor* message, std::set<const Descriptor*>* seen,
                         std::vector<const FieldDescriptor*>* out) {
  if (!seen->insert(message).second) return;
  for (int i = 0; i < message->field_count(); ++i) {
    const FieldDescriptor* field = message->field(i);
    if (field->cpp_type() == FieldDescriptor::CPPTYPE_STRING) out->push_back(field);
    if (field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
      CollectStringFields(field->message_type(), seen, out);
    }
  }
}

TEST(RequestLimitsTest, EveryStringOfEveryRequestIsBounded) {
  std::set<const Descriptor*> seen;
  std::vector<const FieldDescriptor*> fields;
  const auto* service = v1::SubmitJobRequest::descriptor()->file()->FindServiceByName("FineTuning");
  ASSERT_NE(service, nullptr);
  for (int i = 0; i < service->method_count(); ++i) {
    CollectStringFields(service->method(i)->input_type(), &seen, &fields);
  }
  CollectStringFields(grpc::health::v1::HealthCheckRequest::descriptor(), &seen, &fields);
  EXPECT_GT(fields.size(), 20u);
  for (const FieldDescriptor* field : fields) {
    const size_t limit = MaxStringBytes(*field);
    if (field->full_name() == "ftd.v1.UploadFileRequest.chunk") {
      EXPECT_EQ(limit, 4u << 20);
      continue;
    }
    EXPECT_LE(limit, 4096u) << field->full_name();
    EXPECT_GT(limit, 0u) << field->full_name();
  }
}

TEST(WireTest, ARequestThatDoesNotParseIsInvalidArgumentNamingItsType) {
  v1::GetJobRequest request;
  // A length-delimited field 1 that claims more bytes than there are.
  const std::string truncated = "\x0a\x7fjob-1";
  grpc::Slice slice(truncated);
  EXPECT_THAT(ReadRequest(grpc::ByteBuffer(&slice, 1), &request),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("not a valid ftd.v1.GetJobRequest"),
                             HasSubstr("truncated"))));
  // Field 1 with wire type 7, which no field has.
  const std::string wrong_type = "\x0f\x01";
  grpc::Slice wrong(wrong_type);
  absl::Status status = ReadRequest(grpc::ByteBuffer(&wrong, 1), &request);
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("wire type")));
  EXPECT_EQ(core::ReasonOf(status), "MALFORMED_REQUEST");
  // A string that is not UTF-8.
  const std::string invalid_utf8 = std::string("\x0a\x02\xff\xfe", 4);
  grpc::Slice utf8(invalid_utf8);
  EXPECT_THAT(ReadRequest(grpc::ByteBuffer(&utf8, 1), &request),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("UTF-8")));

  // A field this daemon does not know is dropped, not kept unchecked (a
  // job's spec is stored as it came).
  std::string unknown = "\x0a\x05job-3";
  unknown += "\xfa\x06";  // field 111, length-delimited
  unknown += "\x80\x80\x01" + std::string(16384, 'u');
  grpc::Slice with_unknown(unknown);
  v1::GetJobRequest known;
  ASSERT_OK(ReadRequest(grpc::ByteBuffer(&with_unknown, 1), &known));
  EXPECT_EQ(known.job_id(), "job-3");
  EXPECT_EQ(known.ByteSizeLong(), 7u);

  // What parses is read, and its limits checked.
  request.set_job_id("job-3");
  v1::GetJobRequest read;
  ASSERT_OK(ReadRequest(Serialize(request), &read));
  EXPECT_EQ(read.job_id(), "job-3");
  request.set_job_id(std::string(129, 'j'));
  EXPECT_THAT(ReadRequest(Serialize(request), &read),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("job_id: 129 bytes")));
}

}  // namespace
}  // namespace ftd::api
