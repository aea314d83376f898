#include "server/security/authenticator.h"

#include <filesystem>
#include <memory>
#include <string>

#include "common/sha256.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/core/error_details.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace ftd::security {
namespace {

using ::ftd::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

std::string Line(const std::string& token, const std::string& tenant, const std::string& role) {
  return Sha256::Hex(token) + " " + tenant + " " + role + "\n";
}

class AuthenticatorTest : public ::testing::Test {
 protected:
  std::unique_ptr<Authenticator> Make(const std::string& tokens) {
    ftd::testing::WriteFile(dir_.Sub("tokens"), tokens);
    Authenticator::Options options;
    options.tokens_file = dir_.Sub("tokens");
    options.reload_interval = absl::Seconds(10);
    options.now = [this] { return now_; };
    absl::StatusOr<std::unique_ptr<Authenticator>> auth = Authenticator::Create(options);
    EXPECT_OK(auth.status());
    return auth.ok() ? *std::move(auth) : nullptr;
  }

  ftd::testing::TempDir dir_;
  absl::Time now_ = absl::FromUnixSeconds(1000);
};

TEST_F(AuthenticatorTest, ATokenNamesItsTenantAndRole) {
  auto auth = Make("# team tokens\n" + Line("alice-secret", "alice", "user") + "\n" +
                   Line("ops-secret", "ops", "admin") + "  # trailing comment\n");
  ASSERT_OK_AND_ASSIGN(core::Caller alice, auth->Authenticate("Bearer alice-secret", ""));
  EXPECT_EQ(alice.tenant, "alice");
  EXPECT_FALSE(alice.admin);
  ASSERT_OK_AND_ASSIGN(core::Caller ops, auth->Authenticate("Bearer ops-secret", ""));
  EXPECT_TRUE(ops.admin);
  // A token, not its digest; and nothing at all.
  const std::vector<std::string> bad_headers = {
      "Bearer wrong", "Bearer " + Sha256::Hex("alice-secret"), "Basic alice-secret", "Bearer "};
  for (const std::string& bad : bad_headers) {
    absl::Status status = auth->Authenticate(bad, "").status();
    EXPECT_THAT(status, StatusIs(absl::StatusCode::kUnauthenticated, Not(HasSubstr("secret"))))
        << bad;
    EXPECT_EQ(core::ReasonOf(status), "INVALID_TOKEN") << bad;
  }
  absl::Status missing = auth->Authenticate("", "").status();
  EXPECT_EQ(core::ReasonOf(missing), "MISSING_CREDENTIALS");
  EXPECT_THAT(missing.message(), HasSubstr("authorization: Bearer <token>"));
  // Without certificate tenants, a certificate alone is no credential.
  EXPECT_EQ(core::ReasonOf(auth->Authenticate("", "alice").status()), "MISSING_CREDENTIALS");
}

TEST_F(AuthenticatorTest, ABadFileIsRefusedByLineWithoutQuotingIt) {
  struct Case {
    std::string text;
    std::string expected;
  };
  for (const Case& c : std::vector<Case>{
           {"alice-secret alice user\n", ":1: the first field must be a token's SHA-256"},
           {Line("a", "alice", "user") + Line("b", "Bob!", "user"), ":2: the tenant must be"},
           {Line("a", "alice", "root"), ":1: the role must be admin or user"},
           {Line("a", "alice", "user") + Line("a", "bob", "user"), ":2: this token's digest"},
           {Sha256::Hex("a") + " alice\n", ":1: expected SHA256HEX TENANT ROLE"},
       }) {
    ftd::testing::WriteFile(dir_.Sub("tokens"), c.text);
    Authenticator::Options options;
    options.tokens_file = dir_.Sub("tokens");
    absl::Status status = Authenticator::Create(options).status();
    EXPECT_THAT(status, StatusIs(absl::StatusCode::kInvalidArgument,
                                 AllOf(HasSubstr("tokens_file: " + dir_.Sub("tokens")),
                                       HasSubstr(c.expected), Not(HasSubstr("secret")))))
        << c.text;
  }
  Authenticator::Options options;
  options.tokens_file = dir_.Sub("nope");
  EXPECT_THAT(Authenticator::Create(options),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("cannot read")));
}

// A new version is picked up once the interval has passed; a version that
// does not parse leaves the previous tokens in force.
TEST_F(AuthenticatorTest, TheFileIsReReadWhenItChanges) {
  auto auth = Make(Line("old", "alice", "user"));
  ftd::testing::WriteFile(dir_.Sub("tokens"), Line("new", "alice", "user") + "x");
  now_ += absl::Seconds(11);
  // Broken: "old" still works, "new" does not yet.
  EXPECT_OK(auth->Authenticate("Bearer old", "").status());
  EXPECT_FALSE(auth->Authenticate("Bearer new", "").ok());
  ftd::testing::WriteFile(dir_.Sub("tokens"), Line("new", "alice", "admin"));
  EXPECT_OK(auth->Authenticate("Bearer old", "").status());  // not checked again yet
  now_ += absl::Seconds(11);
  ASSERT_OK_AND_ASSIGN(core::Caller caller, auth->Authenticate("Bearer new", ""));
  EXPECT_TRUE(caller.admin);
  // Revoked.
  EXPECT_EQ(core::ReasonOf(auth->Authenticate("Bearer old", "").status()), "INVALID_TOKEN");
  // A file that is gone revokes every token (fails closed).
  std::filesystem::remove(dir_.Sub("tokens"));
  now_ += absl::Seconds(11);
  EXPECT_EQ(core::ReasonOf(auth->Authenticate("Bearer new", "").status()), "INVALID_TOKEN");
}

TEST_F(AuthenticatorTest, CertificatesCanNameTheTenant) {
  Authenticator::Options options;
  options.certificate_tenants = true;
  options.admin_tenants = {"ops"};
  ASSERT_OK_AND_ASSIGN(auto auth, Authenticator::Create(options));
  ASSERT_OK_AND_ASSIGN(core::Caller alice, auth->Authenticate("", "alice"));
  EXPECT_EQ(alice.tenant, "alice");
  EXPECT_FALSE(alice.admin);
  ASSERT_OK_AND_ASSIGN(core::Caller ops, auth->Authenticate("", "ops"));
  EXPECT_TRUE(ops.admin);
  EXPECT_EQ(core::ReasonOf(auth->Authenticate("", "Alice Smith").status()), "INVALID_CERTIFICATE");
  EXPECT_EQ(core::ReasonOf(auth->Authenticate("", "").status()), "MISSING_CREDENTIALS");
  options.admin_tenants = {"Not A Tenant"};
  EXPECT_THAT(Authenticator::Create(options),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("admin_tenants")));
}

TEST(TenantNamesTest, AreShortLowerCaseNames) {
  for (const char* good : {"alice", "team-7", "a", "x.y_z"}) {
    EXPECT_TRUE(Authenticator::ValidTenant(good)) << good;
  }
  for (const char* bad : {"", "Alice", "-x", "a b", "a/b", "../x", std::string(64, 'a').c_str()}) {
    EXPECT_FALSE(Authenticator::ValidTenant(bad)) << bad;
  }
}

}  // namespace
}  // namespace ftd::security
