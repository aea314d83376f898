// A hostile client against the real daemon, with two tenants: the classes of
// input an outside test broke the daemon with, each closed.
//   - every string field of every RPC at 1 MiB: INVALID_ARGUMENT at once,
//     an answer under 1 KiB, and the daemon's memory back where it was;
//   - a request that does not parse: INVALID_ARGUMENT with a message and a
//     reason, counted, and logged a line an interval, not a line each;
//   - a token revoked while its watch or upload is open: the stream ends
//     UNAUTHENTICATED within the tokens file's reload interval;
//   - deeply nested JSON uploaded 8 times at once: each refused in
//     milliseconds naming the line and the limit, and the health check
//     answers promptly all the while.
#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/sha256.h"
#include "ftd/v1/ftd.grpc.pb.h"
#include "gmock/gmock.h"
#include "google/protobuf/descriptor.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/generic/generic_stub.h"
#include "gtest/gtest.h"
#include "tests/testing/ftd_daemon.h"
#include "tests/testing/http_get.h"
#include "tests/testing/temp_dir.h"
#include "tests/testing/tiny_bert.h"

namespace ftd {
namespace {

namespace fs = std::filesystem;
using ::ftd::testing::CommandResult;
using ::ftd::testing::FtdDaemon;
using ::google::protobuf::Descriptor;
using ::google::protobuf::FieldDescriptor;
using ::google::protobuf::Message;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr size_t kMegabyte = 1 << 20;

// The daemon's resident memory, from /proc.
int64_t ResidentBytes(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/statm"));
  int64_t size = 0, resident = 0;
  in >> size >> resident;
  return resident * sysconf(_SC_PAGESIZE);
}

// The reason in a status's google.rpc.Status details ("" without).
std::string ReasonOf(const grpc::Status& status) {
  google::rpc::Status details;
  if (!details.ParseFromString(status.error_details())) return "";
  for (const google::protobuf::Any& any : details.details()) {
    google::rpc::ErrorInfo info;
    if (any.UnpackTo(&info)) return info.reason();
  }
  return "";
}

struct RawResult {
  grpc::Status status;
  absl::Duration took;
};

// One call of `method` ("/ftd.v1.FineTuning/GetJob"), of any kind, with
// `request` as its one message, as the bytes given.
RawResult RawCall(grpc::GenericStub& stub, const std::string& method, const std::string& token,
                  const std::string& request) {
  const absl::Time start = absl::Now();
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  if (!token.empty()) context.AddMetadata("authorization", "Bearer " + token);
  grpc::CompletionQueue queue;
  std::unique_ptr<grpc::GenericClientAsyncReaderWriter> call =
      stub.PrepareCall(&context, method, &queue);
  void* tag = nullptr;
  bool ok = false;
  call->StartCall(reinterpret_cast<void*>(1));
  queue.Next(&tag, &ok);
  grpc::Slice slice(request);
  call->Write(grpc::ByteBuffer(&slice, 1), reinterpret_cast<void*>(2));
  queue.Next(&tag, &ok);
  call->WritesDone(reinterpret_cast<void*>(3));
  queue.Next(&tag, &ok);
  for (;;) {
    grpc::ByteBuffer reply;
    call->Read(&reply, reinterpret_cast<void*>(4));
    queue.Next(&tag, &ok);
    if (!ok) break;
  }
  RawResult result;
  call->Finish(&result.status, reinterpret_cast<void*>(5));
  queue.Next(&tag, &ok);
  queue.Shutdown();
  while (queue.Next(&tag, &ok)) {
  }
  result.took = absl::Now() - start;
  return result;
}

// Each path from `type` to a string or bytes field, through message fields
// (map entries included), as the fields along it.
void StringPaths(const Descriptor* type, std::vector<const FieldDescriptor*> prefix,
                 std::vector<std::vector<const FieldDescriptor*>>* out) {
  if (prefix.size() > 6) return;
  for (int i = 0; i < type->field_count(); ++i) {
    const FieldDescriptor* field = type->field(i);
    std::vector<const FieldDescriptor*> path = prefix;
    path.push_back(field);
    if (field->cpp_type() == FieldDescriptor::CPPTYPE_STRING) out->push_back(path);
    if (field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
      StringPaths(field->message_type(), path, out);
    }
  }
}

// Sets the field at the end of `path` in `root` to `value`, making the
// messages on the way (and a map entry's other part "x").
void SetAlong(Message* root, const std::vector<const FieldDescriptor*>& path,
              const std::string& value) {
  Message* message = root;
  for (size_t i = 0; i + 1 < path.size(); ++i) {
    const FieldDescriptor* field = path[i];
    message = field->is_repeated() ? message->GetReflection()->AddMessage(message, field)
                                   : message->GetReflection()->MutableMessage(message, field);
  }
  const FieldDescriptor* leaf = path.back();
  if (leaf->containing_type()->options().map_entry()) {
    for (int i = 0; i < leaf->containing_type()->field_count(); ++i) {
      const FieldDescriptor* part = leaf->containing_type()->field(i);
      if (part != leaf && part->cpp_type() == FieldDescriptor::CPPTYPE_STRING) {
        message->GetReflection()->SetString(message, part, "x");
      }
    }
  }
  if (leaf->is_repeated()) {
    message->GetReflection()->AddString(message, leaf, value);
  } else {
    message->GetReflection()->SetString(message, leaf, value);
  }
}

std::string PathName(const std::vector<const FieldDescriptor*>& path) {
  std::string name;
  for (const FieldDescriptor* field : path) absl::StrAppend(&name, name.empty() ? "" : ".", field->name());
  return name;
}

class HostileClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ftd::testing::WriteTinyBert(dir_.Sub("client/tiny"));
    ftd::testing::WriteSentimentCsv(dir_.Sub("client/train.csv"), 64, 1);
    fs::create_directories(dir_.Sub("roots"));
    WriteTokens({"alice", "bob", "ops"});
    daemon_ = std::make_unique<FtdDaemon>(FtdDaemon::Options{
        FTD_BINARY,
        FTCTL_BINARY,
        dir_.Sub("ftd-data"),
        dir_.Sub("roots"),
        1,
        dir_.Sub("ftd.log"),
        {"--tokens_file=" + dir_.Sub("tokens"), "--tokens_reload_interval=1s",
         "--memory_trim_interval=1s"}});
    ASSERT_TRUE(daemon_->started());
    channel_ = grpc::CreateChannel(daemon_->address(), grpc::InsecureChannelCredentials());
    stub_ = std::make_unique<grpc::GenericStub>(channel_);
  }

  static std::string Token(const std::string& who) { return "token-of-" + who + "-0123456789"; }

  // The tokens file holds `who`'s tokens (ops an admin, the others users),
  // written whole and renamed into place.
  void WriteTokens(const std::vector<std::string>& who) {
    std::string tokens;
    for (const std::string& name : who) {
      absl::StrAppend(&tokens, Sha256::Hex(Token(name)), " ", name, " ",
                      name == "ops" ? "admin" : "user", "\n");
      ftd::testing::WriteFile(dir_.Sub(name + ".token"), Token(name) + "\n");
    }
    ftd::testing::WriteFile(dir_.Sub("tokens.new"), tokens);
    fs::rename(dir_.Sub("tokens.new"), dir_.Sub("tokens"));
  }

  CommandResult As(const std::string& who, std::vector<std::string> args) {
    args.insert(args.begin(), "--token_file=" + dir_.Sub(who + ".token"));
    return daemon_->Ftctl(std::move(args));
  }

  std::string Log() const {
    std::ifstream log(dir_.Sub("ftd.log"));
    return std::string((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
  }

  ftd::testing::TempDir dir_;
  std::unique_ptr<FtdDaemon> daemon_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<grpc::GenericStub> stub_;
};

TEST_F(HostileClientTest, EveryStringOfEveryRpcAtAMegabyteIsRefusedAtOnceAndSmall) {
  const auto* service =
      v1::SubmitJobRequest::descriptor()->file()->FindServiceByName("FineTuning");
  ASSERT_NE(service, nullptr);
  int calls = 0;
  for (int m = 0; m < service->method_count(); ++m) {
    const auto* method = service->method(m);
    std::vector<std::vector<const FieldDescriptor*>> paths;
    StringPaths(method->input_type(), {}, &paths);
    for (const auto& path : paths) {
      std::unique_ptr<Message> request(
          google::protobuf::MessageFactory::generated_factory()
              ->GetPrototype(method->input_type())
              ->New());
      SetAlong(request.get(), path, std::string(kMegabyte, 'x'));
      const std::string what = absl::StrCat(method->name(), " ", PathName(path));
      const RawResult r = RawCall(*stub_, absl::StrCat("/", service->full_name(), "/",
                                                       method->name()),
                                  Token("alice"), request->SerializeAsString());
      ++calls;
      EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
          << what << ": " << r.status.error_message();
      EXPECT_LT(r.took, absl::Seconds(1)) << what;
      EXPECT_LT(r.status.error_message().size() + r.status.error_details().size(), 1024u) << what;
      EXPECT_THAT(r.status.error_message(), Not(HasSubstr("xxxxxxxx"))) << what;
    }
  }
  EXPECT_GT(calls, 20);

  // 400 calls with 1 MiB ids on 4 connections: nothing stays behind.
  const pid_t pid = daemon_->process().pid();
  std::this_thread::sleep_for(std::chrono::seconds(2));
  const int64_t before = ResidentBytes(pid);
  std::vector<std::thread> clients;
  std::atomic<int> refused{0};
  for (int c = 0; c < 4; ++c) {
    clients.emplace_back([&, c] {
      grpc::ChannelArguments args;
      args.SetInt("ftd.connection", c);  // its own connection
      grpc::GenericStub stub(grpc::CreateCustomChannel(
          daemon_->address(), grpc::InsecureChannelCredentials(), args));
      v1::GetJobRequest request;
      request.set_job_id(std::string(kMegabyte, 'j'));
      const std::string bytes = request.SerializeAsString();
      for (int i = 0; i < 100; ++i) {
        if (RawCall(stub, "/ftd.v1.FineTuning/GetJob", Token("bob"), bytes).status.error_code() ==
            grpc::StatusCode::INVALID_ARGUMENT) {
          ++refused;
        }
      }
    });
  }
  for (std::thread& t : clients) t.join();
  EXPECT_EQ(refused, 400);
  std::this_thread::sleep_for(std::chrono::seconds(3));  // a memory trim or two
  const int64_t after = ResidentBytes(pid);
  std::printf("daemon memory: %.1f MiB before 400 calls with 1 MiB ids, %.1f MiB after\n",
              before / 1048576.0, after / 1048576.0);
  EXPECT_LT(after - before, 48 << 20) << before << " -> " << after;
  EXPECT_EQ(As("alice", {"health"}).out, "SERVING\n");
}

TEST_F(HostileClientTest, ARequestThatDoesNotParseIsInvalidArgumentCountedAndLoggedOnce) {
  const std::string truncated = "\x0a\x7fjob-1";
  const std::string not_utf8 = std::string("\x0a\x02\xff\xfe", 4);
  for (const char* method : {"/ftd.v1.FineTuning/GetJob", "/ftd.v1.FineTuning/WatchJob",
                             "/ftd.v1.FineTuning/UploadFile", "/ftd.v1.FineTuning/SubmitJob"}) {
    for (const std::string& bytes : {truncated, not_utf8}) {
      const RawResult r = RawCall(*stub_, method, Token("alice"), bytes);
      EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << method;
      EXPECT_THAT(r.status.error_message(),
                  AllOf(HasSubstr("is not a valid ftd.v1."), HasSubstr("UTF-8")))
          << method;
      EXPECT_EQ(ReasonOf(r.status), "MALFORMED_REQUEST") << method;
    }
  }
  // Without a token, a caller learns nothing of the request's shape.
  const RawResult anonymous = RawCall(*stub_, "/ftd.v1.FineTuning/GetJob", "", truncated);
  EXPECT_EQ(anonymous.status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  // Many more: counted each, logged a line an interval.
  for (int i = 0; i < 300; ++i) {
    RawCall(*stub_, "/ftd.v1.FineTuning/GetJob", Token("bob"), not_utf8);
    RawCall(*stub_, "/ftd.v1.FineTuning/GetJob", "not-a-token", "");
  }
  const std::string log = Log();
  EXPECT_THAT(log, Not(HasSubstr("libprotobuf")));
  EXPECT_THAT(log, Not(HasSubstr("token-of-")));
  const auto count = [&](const std::string& what) {
    size_t n = 0;
    for (size_t at = log.find(what); at != std::string::npos; at = log.find(what, at + 1)) ++n;
    return n;
  };
  EXPECT_LE(count("GetJob: refused a request that does not parse"), 3u);
  EXPECT_LE(count("GetJob: refused (INVALID_TOKEN)"), 3u);
  std::smatch match;
  ASSERT_TRUE(std::regex_search(log, match, std::regex("metrics http://([0-9.:]+)/metrics")));
  const std::string metrics = ftd::testing::HttpGet(match[1], "/metrics");
  EXPECT_THAT(metrics, AllOf(HasSubstr("ftd_grpc_malformed_requests_total{method=\"GetJob\"} 302"),
                             HasSubstr("ftd_grpc_malformed_requests_total{method=\"UploadFile\"} 2"),
                             HasSubstr("ftd_auth_refused_total{method=\"GetJob\",reason=\"INVALID_"
                                       "TOKEN\"} 300")));
}

TEST_F(HostileClientTest, ARevokedTokenEndsItsOpenWatchAndUpload) {
  // A job long enough to watch: Alice's, 1,000 epochs of 4 steps.
  CommandResult submitted =
      As("alice", {"submit", "--model=" + dir_.Sub("client/tiny"),
                   "--train=" + dir_.Sub("client/train.csv"), "--epochs=1000", "--batch_size=16",
                   "--max_seq_length=16"});
  ASSERT_EQ(submitted.exit_code, 0) << submitted.err;
  std::smatch match;
  ASSERT_TRUE(std::regex_search(submitted.out, match, std::regex("submitted (job-[0-9]+)")));
  const std::string job = match[1];

  auto stub = v1::FineTuning::NewStub(channel_);
  grpc::ClientContext watch_context;
  watch_context.AddMetadata("authorization", "Bearer " + Token("alice"));
  v1::WatchJobRequest watch;
  watch.set_job_id(job);
  std::unique_ptr<grpc::ClientReader<v1::JobEvent>> events = stub->WatchJob(&watch_context, watch);
  v1::JobEvent event;
  ASSERT_TRUE(events->Read(&event));

  // Bob's upload, under way.
  grpc::ClientContext upload_context;
  upload_context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  upload_context.AddMetadata("authorization", "Bearer " + Token("bob"));
  v1::File uploaded;
  std::unique_ptr<grpc::ClientWriter<v1::UploadFileRequest>> upload =
      stub->UploadFile(&upload_context, &uploaded);
  const std::string content = "text,label\n" + std::string(1 << 20, 'a') + ",x\n";
  v1::UploadFileRequest header;
  v1::FileEntry* entry = header.mutable_header()->add_entries();
  header.mutable_header()->set_kind(v1::FILE_KIND_DATASET);
  entry->set_name("big.csv");
  entry->set_size(static_cast<int64_t>(content.size()));
  entry->set_sha256(Sha256::Hex(content));
  ASSERT_TRUE(upload->Write(header));
  v1::UploadFileRequest chunk;
  chunk.set_chunk(content.substr(0, 4096));
  ASSERT_TRUE(upload->Write(chunk));

  // Alice's and Bob's lines go; the reload interval is a second.
  const absl::Time revoked = absl::Now();
  WriteTokens({"ops"});
  while (events->Read(&event)) {
    ASSERT_LT(absl::Now() - revoked, absl::Seconds(10)) << "the watch goes on";
  }
  const grpc::Status watch_end = events->Finish();
  const absl::Duration watch_took = absl::Now() - revoked;
  EXPECT_EQ(watch_end.error_code(), grpc::StatusCode::UNAUTHENTICATED)
      << watch_end.error_message();
  EXPECT_THAT(watch_end.error_message(), HasSubstr("no longer hold"));
  // The interval is 1 s, and the tokens file is read again at most once a
  // second: 2 s, with room for a loaded machine.
  EXPECT_LT(watch_took, absl::Seconds(6));

  // The upload's client has stalled: its stream ends all the same.
  const grpc::Status upload_end = upload->Finish();
  const absl::Duration upload_took = absl::Now() - revoked;
  EXPECT_EQ(upload_end.error_code(), grpc::StatusCode::UNAUTHENTICATED)
      << upload_end.error_message();
  EXPECT_LT(upload_took, absl::Seconds(6));
  std::printf("the watch ended %s after its token was revoked\n",
              absl::FormatDuration(watch_took).c_str());

  EXPECT_EQ(As("ops", {"cancel", job}).exit_code, 0);
}

TEST_F(HostileClientTest, UnknownEnumValuesAndBrokenModelsAreRefusedAtTheDoor) {
  // An enum value the proto does not name, in any request.
  for (int kind : {1234, -1}) {
    v1::ListFilesRequest files;
    files.set_kind(static_cast<v1::FileKind>(kind));
    const RawResult r = RawCall(*stub_, "/ftd.v1.FineTuning/ListFiles", Token("alice"),
                                files.SerializeAsString());
    EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << kind;
    EXPECT_THAT(r.status.error_message(), HasSubstr("kind: " + std::to_string(kind) +
                                                    " is not a value of FileKind"));
  }
  // A model whose heads do not divide its width, and one without a
  // vocabulary: refused at upload, not when a job loads them.
  ftd::testing::WriteTinyBert(dir_.Sub("client/odd"));
  std::string config;
  {
    std::ifstream in(dir_.Sub("client/odd/config.json"));
    config.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  config = std::regex_replace(config, std::regex("\"hidden_size\": 32"), "\"hidden_size\": 33");
  ftd::testing::WriteFile(dir_.Sub("client/odd/config.json"), config);
  CommandResult odd = As("alice", {"upload", dir_.Sub("client/odd")});
  EXPECT_EQ(odd.exit_code, 1);
  EXPECT_THAT(odd.err, AllOf(HasSubstr("INVALID_ARGUMENT"), HasSubstr("num_attention_heads")));
  ftd::testing::WriteTinyBert(dir_.Sub("client/novocab"));
  ftd::testing::WriteFile(dir_.Sub("client/novocab/vocab.txt"), "");
  CommandResult novocab = As("alice", {"upload", dir_.Sub("client/novocab")});
  EXPECT_EQ(novocab.exit_code, 1);
  EXPECT_THAT(novocab.err, AllOf(HasSubstr("INVALID_ARGUMENT"), HasSubstr("vocab.txt")));
}

// A JSON value nested `depth` deep.
std::string Nested(int depth) { return std::string(depth, '[') + std::string(depth, ']'); }

TEST_F(HostileClientTest, NestedJsonIsRefusedFastWhileHealthStaysServing) {
  // A JSONL dataset whose first row is nested 100,000 deep.
  ftd::testing::WriteFile(dir_.Sub("client/deep.jsonl"),
                          "{\"text\":\"a\",\"label\":\"b\",\"x\":" + Nested(100000) + "}\n" +
                              "{\"text\":\"t\",\"label\":\"L\"}\n");
  // A model whose config.json is nested 200,000 deep.
  ftd::testing::WriteTinyBert(dir_.Sub("client/deep-model"));
  ftd::testing::WriteFile(dir_.Sub("client/deep-model/config.json"),
                          "{\"model_type\":\"bert\",\"x\":" + Nested(200000) + "}");

  std::atomic<bool> uploading{true};
  std::vector<absl::Duration> health;
  std::thread checker([&] {
    auto stub = grpc::health::v1::Health::NewStub(channel_);
    while (uploading) {
      grpc::ClientContext context;
      context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
      grpc::health::v1::HealthCheckRequest request;
      grpc::health::v1::HealthCheckResponse response;
      const absl::Time start = absl::Now();
      const grpc::Status status = stub->Check(&context, request, &response);
      health.push_back(status.ok() ? absl::Now() - start : absl::InfiniteDuration());
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  });
  std::vector<CommandResult> results(8);
  std::vector<std::thread> uploads;
  const absl::Time start = absl::Now();
  for (int i = 0; i < 8; ++i) {
    uploads.emplace_back([&, i] {
      results[i] = As(i % 2 == 0 ? "alice" : "bob",
                      {"upload", dir_.Sub(i < 6 ? "client/deep.jsonl" : "client/deep-model")});
    });
  }
  for (std::thread& t : uploads) t.join();
  const absl::Duration took = absl::Now() - start;
  uploading = false;
  checker.join();
  for (int i = 0; i < 8; ++i) {
    EXPECT_EQ(results[i].exit_code, 1) << results[i].out;
    EXPECT_THAT(results[i].err, AllOf(HasSubstr("INVALID_ARGUMENT"), HasSubstr("deeper than 64"),
                                      Not(HasSubstr("[[[["))))
        << i;
  }
  EXPECT_THAT(results[0].err, HasSubstr("deep.jsonl:1"));
  EXPECT_THAT(results[7].err, HasSubstr("config.json"));
  absl::Duration slowest = absl::ZeroDuration();
  for (absl::Duration d : health) slowest = std::max(slowest, d);
  std::printf("8 hostile uploads refused in %s; %zu health checks meanwhile, the slowest %s\n",
              absl::FormatDuration(took).c_str(), health.size(),
              absl::FormatDuration(slowest).c_str());
  EXPECT_LT(took, absl::Seconds(20));  // mostly ftctl's own start and hashing
  EXPECT_FALSE(health.empty());
  // Before, health checks failed for 15 s; here they take milliseconds, and
  // 2 s leaves room for a loaded machine running eight ftctl at once.
  EXPECT_LT(slowest, absl::Seconds(2));
}

}  // namespace
}  // namespace ftd
