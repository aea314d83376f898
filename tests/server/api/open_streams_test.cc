// Open streams are checked again every reload interval: a stream whose token
// was revoked (its line removed, the file deleted), whose token now names
// another tenant, or whose client certificate has expired is ended with
// UNAUTHENTICATED; the others are left alone.
#include "server/api/open_streams.h"

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "common/sha256.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/core/error_details.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace ftd::api {
namespace {

using ::ftd::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;

std::string Line(const std::string& token, const std::string& tenant, const std::string& role) {
  return Sha256::Hex(token) + " " + tenant + " " + role + "\n";
}

class FakeStream : public OpenStreams::Stream {
 public:
  void Revoke(const absl::Status& status) override { revoked.push_back(status); }
  std::vector<absl::Status> revoked;
};

security::CallCredential Bearer(const std::string& token) {
  security::CallCredential credential;
  credential.authorization = "Bearer " + token;
  return credential;
}

class OpenStreamsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ftd::testing::WriteFile(dir_.Sub("tokens"),
                            Line("alice-secret", "alice", "user") + Line("bob-secret", "bob", "user"));
    security::Authenticator::Options options;
    options.tokens_file = dir_.Sub("tokens");
    options.reload_interval = absl::Seconds(10);
    options.certificate_tenants = true;
    options.now = [this] { return now_; };
    auto auth = security::Authenticator::Create(options);
    ASSERT_OK(auth.status());
    auth_ = *std::move(auth);
    // An interval no test waits for: they call CheckNow.
    streams_ = std::make_unique<OpenStreams>(auth_.get(), absl::Hours(1));
  }

  // Rewrites the tokens file and lets the reload interval pass.
  void RewriteTokens(const std::string& text) {
    ftd::testing::WriteFile(dir_.Sub("tokens"), text);
    now_ += absl::Seconds(11);
  }

  ftd::testing::TempDir dir_;
  absl::Time now_ = absl::FromUnixSeconds(1000);
  std::unique_ptr<security::Authenticator> auth_;
  std::unique_ptr<OpenStreams> streams_;
};

TEST_F(OpenStreamsTest, AStreamWhoseTokenIsRevokedEndsUnauthenticated) {
  FakeStream alice, bob;
  auto alice_registration = streams_->Add(&alice, Bearer("alice-secret"), {"alice", false});
  auto bob_registration = streams_->Add(&bob, Bearer("bob-secret"), {"bob", false});
  streams_->CheckNow();
  EXPECT_THAT(alice.revoked, IsEmpty());

  RewriteTokens(Line("bob-secret", "bob", "user"));
  streams_->CheckNow();
  ASSERT_THAT(alice.revoked, SizeIs(1));
  EXPECT_THAT(alice.revoked[0],
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("no longer hold")));
  EXPECT_EQ(core::ReasonOf(alice.revoked[0]), "INVALID_TOKEN");
  EXPECT_THAT(alice.revoked[0].message(), ::testing::Not(HasSubstr("secret")));
  EXPECT_THAT(bob.revoked, IsEmpty());
  EXPECT_EQ(streams_->size(), 1u);
  // Told once only.
  streams_->CheckNow();
  EXPECT_THAT(alice.revoked, SizeIs(1));
}

TEST_F(OpenStreamsTest, DeletingTheTokensFileEndsEveryStream) {
  FakeStream alice, bob;
  auto a = streams_->Add(&alice, Bearer("alice-secret"), {"alice", false});
  auto b = streams_->Add(&bob, Bearer("bob-secret"), {"bob", false});
  std::filesystem::remove(dir_.Sub("tokens"));
  now_ += absl::Seconds(11);
  streams_->CheckNow();
  EXPECT_THAT(alice.revoked, SizeIs(1));
  EXPECT_THAT(bob.revoked, SizeIs(1));
  EXPECT_EQ(streams_->size(), 0u);
}

TEST_F(OpenStreamsTest, ATokenThatNowNamesAnotherTenantOrRoleEndsItsStreams) {
  FakeStream alice;
  auto a = streams_->Add(&alice, Bearer("alice-secret"), {"alice", false});
  RewriteTokens(Line("alice-secret", "alice", "admin") + Line("bob-secret", "bob", "user"));
  streams_->CheckNow();
  ASSERT_THAT(alice.revoked, SizeIs(1));
  EXPECT_THAT(alice.revoked[0], StatusIs(absl::StatusCode::kUnauthenticated,
                                         HasSubstr("another tenant or role")));
}

TEST_F(OpenStreamsTest, AStreamWhoseCertificateExpiredEnds) {
  FakeStream carol, dave;
  security::CallCredential expiring;
  expiring.common_name = "carol";
  expiring.certificate_expiry = now_ + absl::Minutes(5);
  security::CallCredential lasting = expiring;
  lasting.common_name = "dave";
  lasting.certificate_expiry = now_ + absl::Hours(5);
  auto c = streams_->Add(&carol, expiring, {"carol", false});
  auto d = streams_->Add(&dave, lasting, {"dave", false});
  streams_->CheckNow();
  EXPECT_THAT(carol.revoked, IsEmpty());
  now_ += absl::Minutes(6);
  streams_->CheckNow();
  ASSERT_THAT(carol.revoked, SizeIs(1));
  EXPECT_THAT(carol.revoked[0],
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("certificate has expired")));
  EXPECT_THAT(dave.revoked, IsEmpty());
}

TEST_F(OpenStreamsTest, AStreamThatEndedIsNoLongerChecked) {
  FakeStream alice;
  streams_->Add(&alice, Bearer("alice-secret"), {"alice", false}).reset();
  EXPECT_EQ(streams_->size(), 0u);
  RewriteTokens("");
  streams_->CheckNow();
  EXPECT_THAT(alice.revoked, IsEmpty());
}

TEST(OpenStreamsWithoutAuthenticationTest, HoldNothing) {
  OpenStreams streams(nullptr);
  FakeStream stream;
  EXPECT_EQ(streams.Add(&stream, {}, {}), nullptr);
  EXPECT_EQ(streams.size(), 0u);
}

}  // namespace
}  // namespace ftd::api
