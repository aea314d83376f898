// ftctl as a command line: help, version, typos and exit codes, without a
// daemon (the real binary).
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "client/commands.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/process.h"
#include "tests/testing/temp_dir.h"

namespace ftd::client {
namespace {

using ::ftd::testing::CommandResult;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

CommandResult Ftctl(std::vector<std::string> args) {
  args.insert(args.begin(), FTCTL_BINARY);
  return ftd::testing::RunCommand(args);
}

TEST(FtctlCliTest, HelpListsEveryCommandAndTheExitCodes) {
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"--help"}, {"help"}, {"-h"}}) {
    CommandResult r = Ftctl(args);
    EXPECT_EQ(r.exit_code, 0) << args[0];
    for (const Command& command : Commands()) EXPECT_THAT(r.out, HasSubstr("  " + command.name));
    EXPECT_THAT(r.out, AllOf(HasSubstr("--address"), HasSubstr("4 it FAILED")));
  }
}

// Every command's help shows its own flags, each described (a flag the
// table names but ftctl lacks would have no description), and examples.
TEST(FtctlCliTest, EachCommandsHelpShowsItsFlagsAndExamples) {
  for (const Command& command : Commands()) {
    for (const std::vector<std::string>& args :
         {std::vector<std::string>{"help", command.name}, {command.name, "--help"}}) {
      CommandResult r = Ftctl(args);
      ASSERT_EQ(r.exit_code, 0) << command.name << ": " << r.err;
      EXPECT_THAT(r.out, AllOf(HasSubstr("Usage: ftctl " + command.synopsis),
                               HasSubstr("Examples:\n  ftctl ")));
      for (const std::string& flag : command.flags) {
        bool described = false;
        for (absl::string_view line : absl::StrSplit(r.out, '\n')) {
          if (absl::StartsWith(line, "  --" + flag + " ")) {
            described = line.find_first_not_of(' ', flag.size() + 4) != absl::string_view::npos;
          }
        }
        EXPECT_TRUE(described) << command.name << " --" << flag << "\n" << r.out;
      }
    }
  }
  // Only its own.
  CommandResult list = Ftctl({"list", "--help"});
  EXPECT_THAT(list.out, AllOf(HasSubstr("--order_by"), Not(HasSubstr("--epochs"))));
}

TEST(FtctlCliTest, VersionPrintsTheVersion) {
  for (const char* arg : {"--version", "version"}) {
    CommandResult r = Ftctl({arg});
    EXPECT_EQ(r.exit_code, 0);
    EXPECT_THAT(r.out, ::testing::MatchesRegex("ftctl [0-9]+\\.[0-9]+\\.[0-9]+\n"));
  }
}

TEST(FtctlCliTest, TyposGetTheNearestNameAndExitCode2) {
  CommandResult command = Ftctl({"subimt", "job.yaml"});
  EXPECT_EQ(command.exit_code, 2);
  EXPECT_THAT(command.err, HasSubstr("unknown command \"subimt\"; did you mean \"submit\"?"));
  CommandResult flag = Ftctl({"submit", "--epoch=3"});
  EXPECT_EQ(flag.exit_code, 2);
  EXPECT_THAT(flag.err, HasSubstr("unknown flag --epoch; did you mean --epochs?"));
  CommandResult elsewhere = Ftctl({"list", "--epochs=3"});
  EXPECT_EQ(elsewhere.exit_code, 2);
  EXPECT_THAT(elsewhere.err, HasSubstr("--epochs is not a flag of list"));
  CommandResult help = Ftctl({"help", "wach"});
  EXPECT_EQ(help.exit_code, 2);
  EXPECT_THAT(help.err, HasSubstr("did you mean \"watch\"?"));
  CommandResult none = Ftctl({});
  EXPECT_EQ(none.exit_code, 2);
  EXPECT_THAT(none.err, HasSubstr("no command given"));
  // A flag's value given as the next argument is not taken for a command.
  CommandResult spaced = Ftctl({"--address", "127.0.0.1:1", "--timeout", "1", "info"});
  EXPECT_EQ(spaced.exit_code, 1);
  EXPECT_THAT(spaced.err, HasSubstr("UNAVAILABLE"));
}

// A token is a password: ftctl does not send it in the clear off loopback.
TEST(FtctlCliTest, ATokenIsNotSentWithoutTlsOffLoopback) {
  ftd::testing::TempDir dir;
  ftd::testing::WriteFile(dir.Sub("token"), "secret-token\n");
  CommandResult r =
      Ftctl({"--address=192.0.2.1:50051", "--token_file=" + dir.Sub("token"), "list"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("a token is not sent to 192.0.2.1:50051 without TLS"));
  EXPECT_THAT(r.err, Not(HasSubstr("secret-token")));
}

TEST(CommandsTest, NearestOnlySuggestsLikelyTypos) {
  const std::vector<std::string> names = {"submit", "status", "list", "delete"};
  EXPECT_EQ(Nearest("sumbit", names), "submit");
  EXPECT_EQ(Nearest("lsit", names), "list");
  EXPECT_EQ(Nearest("deleet", names), "delete");
  EXPECT_EQ(Nearest("xyz", names), "");  // too far
  EXPECT_EQ(Nearest("ls", names), "");   // two edits of two letters is no typo
  EXPECT_EQ(Nearest("a", {}), "");
}

}  // namespace
}  // namespace ftd::client
