// Authentication and tenants with the real daemon and ftctl: calls without
// valid credentials are UNAUTHENTICATED; a user sees, watches, cancels,
// downloads and deletes only its own tenant's jobs and files, and another
// tenant's are NOT_FOUND to it exactly as missing ones are; an admin sees
// everything; admin-only calls are PERMISSION_DENIED to users; refusals are
// counted in the metrics.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

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
#include "grpcpp/create_channel.h"
#include "gtest/gtest.h"
#include "tests/testing/ftd_daemon.h"
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

// GET http://address/metrics.
std::string Scrape(const std::string& address) {
  const size_t colon = address.rfind(':');
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(std::stoi(address.substr(colon + 1))));
  inet_pton(AF_INET, address.substr(0, colon).c_str(), &addr.sin_addr);
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return "";
  }
  const std::string request = "GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n";
  (void)!write(fd, request.data(), request.size());
  std::string response;
  char buffer[65536];
  for (ssize_t n; (n = read(fd, buffer, sizeof(buffer))) > 0;) response.append(buffer, n);
  close(fd);
  return response;
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

  ftd::testing::TempDir dir_;
  std::unique_ptr<FtdDaemon> daemon_;
};

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
  ASSERT_EQ(As("alice", {"upload", dir_.Sub("client/tiny")}).exit_code, 0);       // file-1
  ASSERT_EQ(As("alice", {"upload", dir_.Sub("client/train.csv")}).exit_code, 0);  // file-2
  const std::vector<std::string> cached = {"--epochs=1",          "--batch_size=16",
                                           "--max_seq_length=16", "--freeze=static:1",
                                           "--cache=true",        "--watch"};
  auto submit = [&](const std::string& who, std::vector<std::string> args) {
    args.insert(args.begin(), "submit");
    args.insert(args.end(), cached.begin(), cached.end());
    return As(who, args);
  };
  CommandResult run = submit("alice", {"--model=file-1", "--train=file-2", "--request_id=r1"});
  ASSERT_EQ(run.exit_code, 0) << run.out << run.err;
  EXPECT_THAT(As("alice", {"get", "job-1"}).out, HasSubstr("SUCCEEDED"));

  // To Bob, Alice's job and files are what missing ones are.
  const std::string missing_job = As("bob", {"get", "job-99"}).err;
  EXPECT_THAT(missing_job, HasSubstr("NOT_FOUND: no job job-99"));
  const std::vector<std::vector<std::string>> on_alices_job = {
      {"get", "job-1"},    {"watch", "job-1"},         {"events", "job-1"},
      {"cancel", "job-1"}, {"delete", "job-1"},        {"download", "job-1", dir_.Sub("bob-out")},
      {"cache", "job-1"},  {"cache", "clear", "job-1"}};
  for (const std::vector<std::string>& args : on_alices_job) {
    CommandResult r = As("bob", args);
    EXPECT_EQ(r.exit_code, 1) << args[0];
    EXPECT_THAT(r.err, HasSubstr("NOT_FOUND: no job job-1")) << args[0];
  }
  EXPECT_FALSE(fs::exists(dir_.Sub("bob-out")));
  EXPECT_THAT(As("bob", {"list"}).out, Not(HasSubstr("job-1")));
  EXPECT_THAT(As("bob", {"files"}).out, Not(HasSubstr("file-1")));
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"files", "file-1"}, {"files", "delete", "file-1"}}) {
    EXPECT_THAT(As("bob", args).err, HasSubstr("NOT_FOUND: no file \"file-1\"")) << args[1];
  }
  CommandResult borrowed = As("bob", {"submit", "--model=file-1", "--train=file-2", "--epochs=1"});
  EXPECT_THAT(borrowed.err,
              HasSubstr("INVALID_ARGUMENT: base_model_file_id: no uploaded file \"file-1\""));
  // Bob's own job, with Alice's request id: a job of his, not hers.
  ASSERT_EQ(As("bob", {"upload", dir_.Sub("client/tiny")}).exit_code, 0);       // file-3
  ASSERT_EQ(As("bob", {"upload", dir_.Sub("client/train.csv")}).exit_code, 0);  // file-4
  // The same model and rows: his job computes its own activations, hers
  // are not his to read.
  CommandResult bobs = submit("bob", {"--model=file-3", "--train=file-4", "--request_id=r1"});
  ASSERT_EQ(bobs.exit_code, 0) << bobs.err;
  EXPECT_THAT(bobs.out, AllOf(HasSubstr("submitted job-2"),
                              HasSubstr("cache epoch 1: 0 of 64 examples from the cache")));
  CommandResult again = submit("alice", {"--model=file-1", "--train=file-2"});
  EXPECT_THAT(again.out, HasSubstr("cache epoch 1: 64 of 64 examples from the cache"));
  // Priority above 0 is a claim on everyone's devices: an admin's.
  CommandResult urgent = As("bob", {"submit", "--model=file-3", "--train=file-4", "--priority=5"});
  EXPECT_THAT(urgent.err, HasSubstr("INVALID_ARGUMENT: priority: above 0 is for admins"));
  // What only admins see.
  CommandResult cache = As("bob", {"cache"});
  EXPECT_THAT(cache.err, HasSubstr("PERMISSION_DENIED: the whole cache"));
  EXPECT_THAT(As("bob", {"info"}).out, Not(HasSubstr("job-")));

  // The admin sees both tenants' jobs and files, and the whole cache.
  CommandResult all = As("ops", {"list"});
  EXPECT_THAT(all.out, AllOf(HasSubstr("job-1"), HasSubstr("job-2"), HasSubstr("job-3")));
  EXPECT_THAT(As("ops", {"files"}).out, AllOf(HasSubstr("file-1"), HasSubstr("file-4")));
  EXPECT_EQ(As("ops", {"get", "job-1"}).exit_code, 0);
  EXPECT_EQ(As("ops", {"cache"}).exit_code, 0);
  EXPECT_THAT(As("ops", {"get", "job-2", "--json"}).out, HasSubstr("\"tenant\": \"bob\""));

  // Reflection is for admins.
  auto channel = grpc::CreateChannel(daemon_->address(), grpc::InsecureChannelCredentials());
  auto reflection = grpc::reflection::v1::ServerReflection::NewStub(channel);
  for (const auto& [who, code] :
       {std::pair{"bob", grpc::StatusCode::PERMISSION_DENIED},
        std::pair{"", grpc::StatusCode::UNAUTHENTICATED}, std::pair{"ops", grpc::StatusCode::OK}}) {
    grpc::ClientContext context;
    if (*who != '\0') {
      context.AddMetadata("authorization", absl::StrCat("Bearer token-of-", who, "-0123456789"));
    }
    auto stream = reflection->ServerReflectionInfo(&context);
    grpc::reflection::v1::ServerReflectionRequest request;
    request.set_list_services("");
    stream->Write(request);
    stream->WritesDone();
    grpc::reflection::v1::ServerReflectionResponse response;
    while (stream->Read(&response)) {
    }
    EXPECT_EQ(stream->Finish().error_code(), code) << who;
  }

  // Refusals are counted, by method and reason (never by token).
  std::ifstream log(dir_.Sub("ftd.log"));
  const std::string text((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
  EXPECT_THAT(text, Not(HasSubstr("token-of-")));
  std::smatch match;
  ASSERT_TRUE(std::regex_search(text, match, std::regex("metrics http://([0-9.:]+)/metrics")));
  const std::string metrics = Scrape(match[1]);
  EXPECT_THAT(
      metrics,
      AllOf(HasSubstr("ftd_auth_refused_total{method=\"ListJobs\",reason=\"MISSING_"
                      "CREDENTIALS\"} 1"),
            HasSubstr("ftd_auth_refused_total{method=\"GetCache\",reason=\"ADMIN_ONLY\"} 1")));
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
  ASSERT_EQ(As("alice", {"upload", dir_.Sub("client/train.csv")}).exit_code, 0);
  CommandResult stored =
      As("bob", {"submit", "--upload=false", "--model=" + dir_.Sub("roots/bob/tiny"),
                 "--train=" + dir_.Sub("ftd-data/files/objects/file-1/train.csv")});
  EXPECT_THAT(stored.err, HasSubstr("INVALID_ARGUMENT: train_dataset.path: \"" +
                                    dir_.Sub("ftd-data/files/objects/file-1/train.csv") +
                                    "\" is outside tenant \"bob\"'s data roots"));
  CommandResult alice = As("alice", alices);
  EXPECT_EQ(alice.exit_code, 0) << alice.err;
}

}  // namespace
}  // namespace ftd
