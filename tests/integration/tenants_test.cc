// Authentication and tenants with the real daemon and ftctl: calls without
// valid credentials are UNAUTHENTICATED; a user sees, watches, cancels,
// downloads and deletes only its own tenant's jobs and files, and another
// tenant's are NOT_FOUND to it exactly as missing ones are; an admin sees
// everything; admin-only calls are PERMISSION_DENIED to users; refusals are
// counted in the metrics.

#include <filesystem>
#include <fstream>
#include <memory>
#include <regex>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/sha256.h"
#include "gmock/gmock.h"
#include "grpc/reflection/v1/reflection.grpc.pb.h"
#include "grpc/reflection/v1alpha/reflection.grpc.pb.h"
#include "grpcpp/create_channel.h"
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
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

// One list_services call of reflection `Protocol` (v1 or v1alpha, with its
// Request and Response) with `token` ("": none); its status.
template <typename Protocol, typename Request, typename Response>
grpc::StatusCode ReflectAs(const std::shared_ptr<grpc::Channel>& channel,
                           const std::string& token) {
  auto reflection = Protocol::NewStub(channel);
  grpc::ClientContext context;
  if (!token.empty()) context.AddMetadata("authorization", "Bearer " + token);
  auto stream = reflection->ServerReflectionInfo(&context);
  Request request;
  request.set_list_services("");
  stream->Write(request);
  stream->WritesDone();
  Response response;
  bool listed = false;
  while (stream->Read(&response)) listed |= response.list_services_response().service_size() > 0;
  const grpc::StatusCode code = stream->Finish().error_code();
  return code == grpc::StatusCode::OK && !listed ? grpc::StatusCode::UNKNOWN : code;
}

class TenantsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ftd::testing::WriteTinyBert(dir_.Sub("client/tiny"));
    ftd::testing::WriteSentimentCsv(dir_.Sub("client/train.csv"), 64, 1);
    ftd::testing::WriteTinyBert(dir_.Sub("roots/bob/tiny"));
    ftd::testing::WriteTinyBert(dir_.Sub("roots/alice/tiny"));
    ftd::testing::WriteSentimentCsv(dir_.Sub("roots/alice/train.csv"), 64, 1);
    std::string tokens = "# tenant tokens\n";
    for (const auto& [name, role] :
         {std::pair{"alice", "user"}, std::pair{"bob", "user"}, std::pair{"ops", "admin"}}) {
      const std::string token = absl::StrCat("token-of-", name, "-0123456789");
      ftd::testing::WriteFile(dir_.Sub(std::string(name) + ".token"), token + "\n");
      absl::StrAppend(&tokens, Sha256::Hex(token), " ", name, " ", role, "\n");
    }
    ftd::testing::WriteFile(dir_.Sub("tokens"), tokens);
    daemon_ = std::make_unique<FtdDaemon>(
        FtdDaemon::Options{FTD_BINARY,
                           FTCTL_BINARY,
                           dir_.Sub("ftd-data"),
                           dir_.Sub("roots"),
                           1,
                           dir_.Sub("ftd.log"),
                           {"--tokens_file=" + dir_.Sub("tokens"),
                            "--tenant_data_roots=alice:" + dir_.Sub("roots/alice") +
                                ",bob:" + dir_.Sub("roots/bob")}});
    ASSERT_TRUE(daemon_->started());
  }

  // ftctl as `who` ("": without a token).
  CommandResult As(const std::string& who, std::vector<std::string> args) {
    if (!who.empty()) args.insert(args.begin(), "--token_file=" + dir_.Sub(who + ".token"));
    return daemon_->Ftctl(std::move(args));
  }

  // Uploads `path` as `who`; the file's id ("" when it fails).
  std::string Upload(const std::string& who, const std::string& path) {
    CommandResult r = As(who, {"upload", path});
    std::smatch match;
    EXPECT_EQ(r.exit_code, 0) << r.err;
    if (!std::regex_search(r.out, match, std::regex("file-[0-9]+"))) return "";
    return match[0];
  }

  ftd::testing::TempDir dir_;
  std::unique_ptr<FtdDaemon> daemon_;
};

// The job id in ftctl submit's output ("" when there is none).
std::string SubmittedId(const CommandResult& r) {
  std::smatch match;
  if (!std::regex_search(r.out, match, std::regex("submitted (job-[0-9]+)"))) return "";
  return match[1];
}

// The number of an id ("job-123" -> 123).
uint64_t Number(const std::string& id) { return std::stoull(id.substr(id.find('-') + 1)); }

TEST_F(TenantsTest, EachTenantSeesOnlyItsOwnAndAnAdminSeesAll) {
  // Without credentials, or with a wrong token: nothing but the health check.
  CommandResult anonymous = As("", {"list"});
  EXPECT_EQ(anonymous.exit_code, 1);
  EXPECT_THAT(anonymous.err,
              AllOf(HasSubstr("UNAUTHENTICATED"), HasSubstr("authorization: Bearer <token>")));
  ftd::testing::WriteFile(dir_.Sub("wrong.token"), "not-a-token\n");
  EXPECT_THAT(As("wrong", {"list"}).err, HasSubstr("UNAUTHENTICATED: the token is not valid"));
  EXPECT_EQ(As("", {"health"}).out, "SERVING\n");

  // Alice's files and job.
  const std::string model = Upload("alice", dir_.Sub("client/tiny"));
  const std::string train = Upload("alice", dir_.Sub("client/train.csv"));
  ASSERT_FALSE(model.empty() || train.empty());
  const std::vector<std::string> cached = {"--epochs=1",          "--batch_size=16",
                                           "--max_seq_length=16", "--freeze=static:1",
                                           "--cache=true",        "--watch"};
  auto submit = [&](const std::string& who, std::vector<std::string> args) {
    args.insert(args.begin(), "submit");
    args.insert(args.end(), cached.begin(), cached.end());
    return As(who, args);
  };
  CommandResult run = submit("alice", {"--model=" + model, "--train=" + train, "--request_id=r1"});
  ASSERT_EQ(run.exit_code, 0) << run.out << run.err;
  const std::string job = SubmittedId(run);
  ASSERT_FALSE(job.empty()) << run.out;
  EXPECT_THAT(As("alice", {"get", job}).out, HasSubstr("SUCCEEDED"));

  // To Bob, Alice's job and files are what missing ones are.
  const std::string missing_job = As("bob", {"get", "job-99"}).err;
  EXPECT_THAT(missing_job, HasSubstr("NOT_FOUND: no job job-99"));
  const std::vector<std::vector<std::string>> on_alices_job = {
      {"get", job},    {"watch", job},         {"events", job},
      {"cancel", job}, {"delete", job},        {"download", job, dir_.Sub("bob-out")},
      {"cache", job},  {"cache", "clear", job}};
  for (const std::vector<std::string>& args : on_alices_job) {
    CommandResult r = As("bob", args);
    EXPECT_EQ(r.exit_code, 1) << args[0];
    EXPECT_THAT(r.err, HasSubstr("NOT_FOUND: no job " + job)) << args[0];
  }
  EXPECT_FALSE(fs::exists(dir_.Sub("bob-out")));
  EXPECT_THAT(As("bob", {"list"}).out, Not(HasSubstr(job)));
  EXPECT_THAT(As("bob", {"files"}).out, Not(HasSubstr(model)));
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"files", model}, {"files", "delete", model}}) {
    EXPECT_THAT(As("bob", args).err, HasSubstr("NOT_FOUND: no file \"" + model + "\"")) << args[1];
  }
  CommandResult borrowed =
      As("bob", {"submit", "--model=" + model, "--train=" + train, "--epochs=1"});
  EXPECT_THAT(borrowed.err, HasSubstr("INVALID_ARGUMENT: base_model_file_id: no uploaded file \"" +
                                      model + "\""));
  // Bob's own job, with Alice's request id: a job of his, not hers.
  const std::string bobs_model = Upload("bob", dir_.Sub("client/tiny"));
  const std::string bobs_train = Upload("bob", dir_.Sub("client/train.csv"));
  // The same model and rows: his job computes its own activations, hers
  // are not his to read.
  CommandResult bobs =
      submit("bob", {"--model=" + bobs_model, "--train=" + bobs_train, "--request_id=r1"});
  ASSERT_EQ(bobs.exit_code, 0) << bobs.err;
  const std::string bobs_job = SubmittedId(bobs);
  EXPECT_THAT(bobs.out, HasSubstr("cache epoch 1: 0 of 64 examples from the cache"));
  // Ids count nothing: one tenant's next id does not follow another's.
  EXPECT_GT(Number(bobs_job), Number(job));
  EXPECT_NE(Number(bobs_job), Number(job) + 1);
  EXPECT_NE(Number(bobs_model), Number(train) + 1);
  CommandResult again = submit("alice", {"--model=" + model, "--train=" + train});
  EXPECT_THAT(again.out, HasSubstr("cache epoch 1: 64 of 64 examples from the cache"));
  const std::string alices_second = SubmittedId(again);
  // Priority above 0 is a claim on everyone's devices: an admin's.
  CommandResult urgent =
      As("bob", {"submit", "--model=" + bobs_model, "--train=" + bobs_train, "--priority=5"});
  EXPECT_THAT(urgent.err, HasSubstr("INVALID_ARGUMENT: priority: above 0 is for admins"));
  // What only admins see.
  CommandResult cache = As("bob", {"cache"});
  EXPECT_THAT(cache.err, HasSubstr("PERMISSION_DENIED: the whole cache"));
  EXPECT_THAT(As("bob", {"info"}).out, Not(HasSubstr("job-")));

  // The admin sees both tenants' jobs and files, and the whole cache.
  CommandResult all = As("ops", {"list"});
  EXPECT_THAT(all.out, AllOf(HasSubstr(job), HasSubstr(bobs_job), HasSubstr(alices_second)));
  EXPECT_THAT(As("ops", {"files"}).out, AllOf(HasSubstr(model), HasSubstr(bobs_train)));
  EXPECT_EQ(As("ops", {"get", job}).exit_code, 0);
  EXPECT_EQ(As("ops", {"cache"}).exit_code, 0);
  EXPECT_THAT(As("ops", {"get", bobs_job, "--json"}).out, HasSubstr("\"tenant\": \"bob\""));

  // Reflection, both versions, is for admins.
  auto channel = grpc::CreateChannel(daemon_->address(), grpc::InsecureChannelCredentials());
  for (const auto& [who, code] :
       {std::pair{"bob", grpc::StatusCode::PERMISSION_DENIED},
        std::pair{"", grpc::StatusCode::UNAUTHENTICATED}, std::pair{"ops", grpc::StatusCode::OK}}) {
    const std::string token = *who == '\0' ? "" : absl::StrCat("token-of-", who, "-0123456789");
    namespace v1 = grpc::reflection::v1;
    namespace v1alpha = grpc::reflection::v1alpha;
    EXPECT_EQ(
        (ReflectAs<v1::ServerReflection, v1::ServerReflectionRequest, v1::ServerReflectionResponse>(
            channel, token)),
        code)
        << who;
    EXPECT_EQ((ReflectAs<v1alpha::ServerReflection, v1alpha::ServerReflectionRequest,
                         v1alpha::ServerReflectionResponse>(channel, token)),
              code)
        << who;
  }

  // Refusals are counted, by method and reason (never by token).
  std::ifstream log(dir_.Sub("ftd.log"));
  const std::string text((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
  EXPECT_THAT(text, Not(HasSubstr("token-of-")));
  std::smatch match;
  ASSERT_TRUE(std::regex_search(text, match, std::regex("metrics http://([0-9.:]+)/metrics")));
  const std::string metrics = ftd::testing::HttpGet(match[1], "/metrics");
  EXPECT_THAT(
      metrics,
      AllOf(HasSubstr("ftd_auth_refused_total{method=\"ListJobs\",reason=\"MISSING_"
                      "CREDENTIALS\"} 1"),
            HasSubstr("ftd_auth_refused_total{method=\"GetCache\",reason=\"ADMIN_ONLY\"} 1"),
            // Bob's and the anonymous reflection, both versions.
            HasSubstr("ftd_auth_refused_total{method=\"ServerReflectionInfo\",reason=\"ADMIN_"
                      "ONLY\"} 2"),
            HasSubstr("ftd_auth_refused_total{method=\"ServerReflectionInfo\",reason=\"MISSING_"
                      "CREDENTIALS\"} 2")));
  EXPECT_THAT(metrics, Not(HasSubstr("token-of-")));
}

// Paths on the daemon's disk: each tenant's within its own data roots.
TEST_F(TenantsTest, PathsAreLimitedToTheTenantsOwnDataRoots) {
  const std::vector<std::string> alices = {"submit",
                                           "--upload=false",
                                           "--model=" + dir_.Sub("roots/alice/tiny"),
                                           "--train=" + dir_.Sub("roots/alice/train.csv"),
                                           "--epochs=1",
                                           "--max_seq_length=16"};
  CommandResult bob = As("bob", alices);
  EXPECT_EQ(bob.exit_code, 1);
  EXPECT_THAT(bob.err, HasSubstr("INVALID_ARGUMENT: base_model: \"" + dir_.Sub("roots/alice/tiny") +
                                 "\" is outside tenant \"bob\"'s data roots"));
  // Nor through the daemon's data folder (Alice's uploads are there).
  const std::string uploaded = Upload("alice", dir_.Sub("client/train.csv"));
  const std::string stored_path = dir_.Sub("ftd-data/files/objects/" + uploaded + "/train.csv");
  ASSERT_TRUE(fs::exists(stored_path));
  CommandResult stored =
      As("bob", {"submit", "--upload=false", "--model=" + dir_.Sub("roots/bob/tiny"),
                 "--train=" + stored_path});
  EXPECT_THAT(stored.err, HasSubstr("INVALID_ARGUMENT: train_dataset.path: \"" + stored_path +
                                    "\" is outside tenant \"bob\"'s data roots"));
  CommandResult alice = As("alice", alices);
  EXPECT_EQ(alice.exit_code, 0) << alice.err;
}

}  // namespace
}  // namespace ftd
