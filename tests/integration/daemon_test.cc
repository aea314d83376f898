// End-to-end tests of the real binaries: ftd on a loopback port chosen by
// the kernel, driven by the real ftctl.
#include <signal.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "ftd/v1/ftd.grpc.pb.h"
#include "gmock/gmock.h"
#include "google/protobuf/descriptor.pb.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpc/reflection/v1/reflection.grpc.pb.h"
#include "grpcpp/create_channel.h"
#include "gtest/gtest.h"
#include "tests/testing/ftd_daemon.h"
#include "tests/testing/http_get.h"
#include "tests/testing/process.h"
#include "tests/testing/temp_dir.h"
#include "tests/testing/tiny_bert.h"

namespace ftd {
namespace {

using ::ftd::testing::CommandResult;
using ::ftd::testing::Process;
using ::ftd::testing::RunCommand;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

// A running ftd and the ftctl that talks to it.
class Daemon : public ftd::testing::FtdDaemon {
 public:
  Daemon(const std::string& data_dir, const std::string& data_root, int cpu_slots,
         const std::string& log_path, std::vector<std::string> flags = {})
      : FtdDaemon({FTD_BINARY, FTCTL_BINARY, data_dir, data_root, cpu_slots, log_path,
                   std::move(flags)}) {}
};

class DaemonTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ftd::testing::WriteModelFolder(dir_.Sub("data/model"));
    ftd::testing::WriteFile(dir_.Sub("data/train.csv"), "text,label\ngood,pos\nbad,neg\n");
    ftd::testing::WriteFile(dir_.Sub("data/job.yaml"),
                            "display_name: from-file\nbase_model: model\n"
                            "train_dataset: {path: train.csv}\nlabels: {team: nlp}\n");
  }

  std::unique_ptr<Daemon> StartDaemon(int cpu_slots, std::vector<std::string> flags = {}) {
    return std::make_unique<Daemon>(dir_.Sub("ftd-data"), dir_.Sub("data"), cpu_slots,
                                    dir_.Sub("ftd.log"), std::move(flags));
  }

  std::vector<std::string> SubmitArgs(const std::string& name) {
    return {"submit", "--upload=false", "--model=" + dir_.Sub("data/model"),
            "--train=" + dir_.Sub("data/train.csv"), "--name=" + name};
  }

  // The job ids of `ftctl list` output, in order.
  static std::vector<std::string> ListedIds(const std::string& table) {
    std::vector<std::string> ids;
    for (absl::string_view line : absl::StrSplit(table, '\n')) {
      if (absl::StartsWith(line, "job-")) ids.emplace_back(line.substr(0, line.find(' ')));
    }
    return ids;
  }

  ftd::testing::TempDir dir_;
};

TEST_F(DaemonTest, SubmitGetListPageCancelAndWatchReplay) {
  // No CPU slot: jobs stay queued, which is what this test looks at.
  auto daemon = StartDaemon(/*cpu_slots=*/0);
  for (int i = 1; i <= 4; ++i) {
    CommandResult r = daemon->Ftctl(SubmitArgs(absl::StrCat("job", i)));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out, absl::StrCat("submitted job-", i, " (QUEUED, position ", i, ")\n"));
  }
  CommandResult from_file = daemon->Ftctl({"submit", dir_.Sub("data/job.yaml")});
  ASSERT_EQ(from_file.exit_code, 0) << from_file.err;
  EXPECT_THAT(from_file.out, HasSubstr("job-5"));

  CommandResult get = daemon->Ftctl({"get", "job-5"});
  ASSERT_EQ(get.exit_code, 0) << get.err;
  EXPECT_THAT(get.out, AllOf(HasSubstr("from-file"), HasSubstr("QUEUED (position 5)"),
                             HasSubstr(dir_.Sub("data/train.csv")), HasSubstr("team=nlp"),
                             HasSubstr("3 epochs, batch 32")));

  CommandResult page1 = daemon->Ftctl({"list", "--page_size=2"});
  ASSERT_EQ(page1.exit_code, 0) << page1.err;
  // Newest first.
  EXPECT_THAT(ListedIds(page1.out), ::testing::ElementsAre("job-5", "job-4"));
  EXPECT_THAT(page1.err, HasSubstr("--page_token="));
  const std::string token = page1.err.substr(
      page1.err.find("--page_token=") + 13,
      page1.err.find(' ', page1.err.find("--page_token=")) - page1.err.find("--page_token=") - 13);
  CommandResult page2 = daemon->Ftctl({"list", "--page_size=2", "--page_token=" + token});
  EXPECT_THAT(ListedIds(page2.out), ::testing::ElementsAre("job-3", "job-2"));
  CommandResult all = daemon->Ftctl({"list", "--page_size=2", "--all"});
  EXPECT_THAT(ListedIds(all.out),
              ::testing::ElementsAre("job-5", "job-4", "job-3", "job-2", "job-1"));
  CommandResult oldest =
      daemon->Ftctl({"list", "--page_size=2", "--all", "--order_by=create_time"});
  EXPECT_THAT(ListedIds(oldest.out),
              ::testing::ElementsAre("job-1", "job-2", "job-3", "job-4", "job-5"));
  CommandResult mixed = daemon->Ftctl({"list", "--order_by=create_time", "--page_token=" + token});
  EXPECT_EQ(mixed.exit_code, 1);
  EXPECT_THAT(mixed.err, HasSubstr("INVALID_ARGUMENT: page_token"));
  CommandResult labelled = daemon->Ftctl({"list", "--labels=team=nlp"});
  EXPECT_THAT(ListedIds(labelled.out), ::testing::ElementsAre("job-5"));

  CommandResult cancel = daemon->Ftctl({"cancel", "job-2"});
  ASSERT_EQ(cancel.exit_code, 0) << cancel.err;
  EXPECT_EQ(cancel.out, "job-2 CANCELLED\n");
  CommandResult again = daemon->Ftctl({"cancel", "job-2"});
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_THAT(again.err, HasSubstr("FAILED_PRECONDITION: job-2 has already ended (CANCELLED)"));
  CommandResult cancelled = daemon->Ftctl({"list", "--state=cancelled"});
  EXPECT_THAT(ListedIds(cancelled.out), ::testing::ElementsAre("job-2"));
  EXPECT_THAT(daemon->Ftctl({"get", "job-3"}).out, HasSubstr("QUEUED (position 2)"));

  // A watch that joins after the end replays the history and exits 3.
  CommandResult watch = daemon->Ftctl({"watch", "job-2"});
  EXPECT_EQ(watch.exit_code, 3);
  EXPECT_THAT(watch.out, AllOf(HasSubstr("#1  QUEUED: submitted"),
                               HasSubstr("#2  QUEUED -> CANCELLED: cancelled by a user")));
  CommandResult events = daemon->Ftctl({"events", "job-2", "--json"});
  EXPECT_THAT(events.out, AllOf(HasSubstr("\"sequence\":\"1\""),
                                HasSubstr("\"to_state\":\"JOB_STATE_CANCELLED\"")));

  CommandResult info = daemon->Ftctl({"info"});
  EXPECT_THAT(info.out, AllOf(HasSubstr("version:"), HasSubstr("4 queued, 0 running"),
                              HasSubstr("metrics:     http://127.0.0.1:"),
                              HasSubstr("kernels:     OpenBLAS ")));
  // The kernels it runs: the core Debian's OpenBLAS chose, the one made for
  // this CPU, and the CPU's vector features.
  const size_t url = info.out.find("http://");
  ASSERT_NE(url, std::string::npos);
  const std::string address =
      info.out.substr(url + 7, info.out.find("/metrics", url) - (url + 7));
  const std::string metrics = ftd::testing::HttpGet(address, "/metrics");
  EXPECT_THAT(metrics, AllOf(HasSubstr("ftd_cpu_kernels_info{"), HasSubstr("best_blas_core=\""),
                             HasSubstr("cpu_features=\""),
                             Not(HasSubstr("blas_core=\"none\",best"))));
  // The health check containers and probes use.
  CommandResult health = daemon->Ftctl({"health"});
  EXPECT_EQ(health.exit_code, 0);
  EXPECT_EQ(health.out, "SERVING\n");
  CommandResult missing = daemon->Ftctl({"get", "job-99"});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_THAT(missing.err, HasSubstr("NOT_FOUND: no job job-99"));
}

TEST_F(DaemonTest, ALiveWatchEndsWhenTheJobIsCancelled) {
  auto daemon = StartDaemon(/*cpu_slots=*/0);
  ASSERT_EQ(daemon->Ftctl(SubmitArgs("watched")).exit_code, 0);
  Process watch(daemon->FtctlArgs({"watch", "job-1"}), dir_.Sub("watch.log"));
  // Wait until the watch has printed the replayed history, so the cancel
  // below reaches it live.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  std::string log;
  while (log.find("QUEUED: submitted") == std::string::npos &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    std::ifstream in(dir_.Sub("watch.log"));
    log.assign(std::istreambuf_iterator<char>(in), {});
  }
  ASSERT_EQ(daemon->Ftctl({"cancel", "job-1"}).exit_code, 0);
  EXPECT_EQ(watch.Wait(), 3);
  std::ifstream in(dir_.Sub("watch.log"));
  log.assign(std::istreambuf_iterator<char>(in), {});
  EXPECT_THAT(log, HasSubstr("QUEUED -> CANCELLED"));
}

TEST_F(DaemonTest, ResubmittingWithARequestIdReturnsTheSameJob) {
  auto daemon = StartDaemon(/*cpu_slots=*/0);
  auto args = SubmitArgs("idempotent");
  args.push_back("--request_id=ticket-7");
  CommandResult first = daemon->Ftctl(args);
  CommandResult second = daemon->Ftctl(args);
  ASSERT_EQ(first.exit_code, 0) << first.err;
  EXPECT_EQ(first.out, second.out);
  EXPECT_EQ(ListedIds(daemon->Ftctl({"list"}).out).size(), 1u);
  args.push_back("--epochs=9");
  CommandResult changed = daemon->Ftctl(args);
  EXPECT_EQ(changed.exit_code, 1);
  EXPECT_THAT(changed.err,
              HasSubstr("ALREADY_EXISTS: request_id: \"ticket-7\" was used for job-1"));
}

TEST_F(DaemonTest, BadRequestsGetOneReadableLineNamingTheField) {
  auto daemon = StartDaemon(/*cpu_slots=*/0);
  struct Case {
    std::vector<std::string> extra;
    std::string expected;
  };
  ftd::testing::TempDir elsewhere;
  ftd::testing::WriteModelFolder(elsewhere.Sub("model"));
  const std::vector<Case> cases = {
      {{"--epochs=0"},
       "INVALID_ARGUMENT: hyperparameters.epochs: must be between 1 and 1000, got 0"},
      {{"--batch_size=100000"}, "INVALID_ARGUMENT: hyperparameters.batch_size"},
      {{"--learning_rate=-1"}, "INVALID_ARGUMENT: hyperparameters.learning_rate"},
      {{"--max_seq_length=4096"}, "INVALID_ARGUMENT: hyperparameters.max_seq_length"},
      {{"--device=cuda:0"},
       "INVALID_ARGUMENT: device: cuda:0 was requested but this server has no CUDA device"},
      {{"--model=" + elsewhere.Sub("model")},
       "INVALID_ARGUMENT: base_model: \"" + elsewhere.Sub("model") +
           "\" is outside the daemon's data roots"},
      {{"--model=" + dir_.Sub("data/nope")}, "INVALID_ARGUMENT: base_model:"},
      {{"--train=" + dir_.Sub("data/missing.csv")},
       "INVALID_ARGUMENT: train_dataset.path: \"" + dir_.Sub("data/missing.csv") +
           "\" does not exist"},
      {{"--freeze=static:2"}, "INVALID_ARGUMENT: freeze_policy.static.frozen_layers"},
  };
  for (const Case& c : cases) {
    auto args = SubmitArgs("bad");
    args.insert(args.end(), c.extra.begin(), c.extra.end());
    CommandResult r = daemon->Ftctl(args);
    EXPECT_EQ(r.exit_code, 1) << c.expected;
    EXPECT_THAT(r.err, HasSubstr("ftctl: " + c.expected));
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }
  // Mistakes ftctl can see itself are usage errors (exit 2).
  auto args = SubmitArgs("bad");
  args.push_back("--freeze=sometimes");
  CommandResult usage = daemon->Ftctl(args);
  EXPECT_EQ(usage.exit_code, 2);
  EXPECT_THAT(usage.err, HasSubstr("--freeze=sometimes"));
  EXPECT_EQ(ListedIds(daemon->Ftctl({"list"}).out).size(), 0u);
}

// Data a job would trip over when it starts, possibly hours later behind a
// queue, is refused at submit: INVALID_ARGUMENT naming the field, the file,
// the line and the reason, never the file's contents; nothing is queued.
TEST_F(DaemonTest, BadDataIsRefusedAtSubmitNamingTheFileAndTheLine) {
  auto daemon = StartDaemon(/*cpu_slots=*/0);
  auto write = [&](const std::string& name, const std::string& content) {
    ftd::testing::WriteFile(dir_.Sub("data/" + name), content);
    return dir_.Sub("data/" + name);
  };
  const std::string columns = write("columns.csv", "sentence,label\nsecret words,pos\n");
  const std::string csv_as_jsonl = write("rows.jsonl", "text,label\nsecret words,pos\n");
  const std::string empty = write("empty.csv", "text,label\n");
  const std::string one_label = write("one.csv", "text,label\nx,secret\ny,secret\n");
  const std::string unseen = write("valid.csv", "text,label\nfine,pos\nodd,secret-label\n");
  ftd::testing::WriteModelFolder(dir_.Sub("data/no-vocab"));
  std::filesystem::remove(dir_.Sub("data/no-vocab/vocab.txt"));
  struct Case {
    std::vector<std::string> extra;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {{"--train=" + columns},
       "INVALID_ARGUMENT: train_dataset: " + columns + ":1: no column \"text\" in the header"},
      {{"--train=" + csv_as_jsonl},
       "INVALID_ARGUMENT: train_dataset: " + csv_as_jsonl +
           ":1: not a JSON object (is it CSV? name format CSV)"},
      {{"--train=" + empty},
       "INVALID_ARGUMENT: train_dataset: " + empty + ": the file has no rows"},
      {{"--train=" + one_label},
       "INVALID_ARGUMENT: train_dataset: " + one_label +
           ": every row has the same label; a classifier needs two or more"},
      {{"--validation=" + unseen},
       "INVALID_ARGUMENT: validation_dataset: " + unseen +
           ":3: 1 label of the validation file (the first on this line) is not among the "
           "training file's 2 labels"},
      {{"--model=" + dir_.Sub("data/no-vocab")},
       "INVALID_ARGUMENT: base_model: \"" + dir_.Sub("data/no-vocab") + "\" has no vocab.txt"},
  };
  for (const Case& c : cases) {
    auto args = SubmitArgs("bad-data");
    args.insert(args.end(), c.extra.begin(), c.extra.end());
    CommandResult r = daemon->Ftctl(args);
    EXPECT_EQ(r.exit_code, 1) << c.expected;
    EXPECT_THAT(r.err, HasSubstr("ftctl: " + c.expected));
    EXPECT_THAT(r.err, Not(HasSubstr("secret")));
  }
  // An uploaded dataset is named by its id, not by where the daemon keeps it.
  ASSERT_EQ(daemon->Ftctl({"upload", columns}).exit_code, 0);
  auto args = SubmitArgs("uploaded");
  args.push_back("--train=file-1");
  CommandResult uploaded = daemon->Ftctl(args);
  EXPECT_EQ(uploaded.exit_code, 1);
  EXPECT_THAT(uploaded.err,
              HasSubstr("INVALID_ARGUMENT: train_dataset: file-1 (columns.csv):1: no column "
                        "\"text\" in the header"));
  EXPECT_THAT(uploaded.err, Not(HasSubstr(dir_.Sub("ftd-data"))));
  EXPECT_EQ(ListedIds(daemon->Ftctl({"list"}).out).size(), 0u);
}

// A model folder's files are read as regular files only: a symbolic link
// is refused at submit, and one planted after submit (or a folder on the
// way swapped for one) fails the job when it starts, nothing of what it
// points at copied into the job's output.
TEST_F(DaemonTest, SymbolicLinksInAModelFolderAreNotFollowed) {
  ftd::testing::TempDir outside;
  ftd::testing::WriteFile(outside.Sub("secret.json"), "{\"secret\": \"do not copy me\"}");
  for (const char* name : {"linked", "later", "moved"}) {
    ftd::testing::WriteTinyBert(dir_.Sub(std::string("data/") + name));
  }
  ftd::testing::WriteSentimentCsv(dir_.Sub("data/sentiment-train.csv"), 64, 1);
  std::filesystem::create_symlink(outside.Sub("secret.json"),
                                  dir_.Sub("data/linked/special_tokens_map.json"));
  auto daemon = StartDaemon(/*cpu_slots=*/1);
  auto submit = [&](const std::string& model, std::vector<std::string> extra) {
    std::vector<std::string> args = {"submit", "--upload=false", "--model=" + dir_.Sub(model),
                                     "--train=" + dir_.Sub("data/sentiment-train.csv"),
                                     "--max_seq_length=16"};
    args.insert(args.end(), extra.begin(), extra.end());
    return daemon->Ftctl(args);
  };
  CommandResult linked = submit("data/linked", {"--epochs=1"});
  EXPECT_EQ(linked.exit_code, 1);
  EXPECT_THAT(linked.err,
              HasSubstr("INVALID_ARGUMENT: base_model: \"" +
                        dir_.Sub("data/linked/special_tokens_map.json") + "\" is a symbolic link"));
  // A long job keeps the device while the others wait; then the links come.
  ASSERT_EQ(submit("data/later", {"--epochs=1000", "--name=long"}).exit_code, 0);  // job-1
  ASSERT_EQ(submit("data/later", {"--epochs=1"}).exit_code, 0);                    // job-2
  ASSERT_EQ(submit("data/moved", {"--epochs=1"}).exit_code, 0);                    // job-3
  std::filesystem::create_symlink(outside.Sub("secret.json"),
                                  dir_.Sub("data/later/special_tokens_map.json"));
  std::filesystem::rename(dir_.Sub("data/moved"), outside.Sub("moved"));
  std::filesystem::create_directory_symlink(outside.Sub("moved"), dir_.Sub("data/moved"));
  ASSERT_EQ(daemon->Ftctl({"cancel", "job-1"}).exit_code, 0);
  CommandResult later = daemon->Ftctl({"watch", "job-2"});
  EXPECT_EQ(later.exit_code, 4);
  EXPECT_THAT(later.err, HasSubstr(dir_.Sub("data/later/special_tokens_map.json") +
                                   "\" is, or lies in, a symbolic link"));
  EXPECT_THAT(later.out + later.err, Not(HasSubstr("do not copy me")));
  CommandResult moved = daemon->Ftctl({"watch", "job-3"});
  EXPECT_EQ(moved.exit_code, 4);
  EXPECT_THAT(moved.err, HasSubstr("base_model: \"" + dir_.Sub("data/moved") +
                                   "\" is not where it was when the job was submitted"));
  for (const char* job : {"job-2", "job-3"}) {
    EXPECT_FALSE(std::filesystem::exists(
        dir_.Sub(std::string("ftd-data/jobs/") + job + "/model/special_tokens_map.json")))
        << job;
  }
}

TEST_F(DaemonTest, AJobThatFailsEndsFailedWithItsReasonAndTheDaemonGoesOn) {
  // Queued while there is no slot; its weights are emptied before it starts
  // (an empty weights file is refused at submit): the job cannot load them.
  {
    auto daemon = StartDaemon(/*cpu_slots=*/0);
    ASSERT_EQ(daemon->Ftctl(SubmitArgs("broken")).exit_code, 0);
    daemon->process().Signal(SIGTERM);
    ASSERT_EQ(daemon->process().Wait(), 0);
  }
  ftd::testing::WriteFile(dir_.Sub("data/model/model.safetensors"), "");
  auto daemon = StartDaemon(/*cpu_slots=*/1);
  CommandResult r = daemon->Ftctl({"watch", "job-1"});
  EXPECT_EQ(r.exit_code, 4);  // the watched job FAILED
  EXPECT_THAT(r.out, AllOf(HasSubstr("QUEUED -> RUNNING: started on cpu:0"),
                           HasSubstr("RUNNING -> FAILED: ")));
  EXPECT_THAT(r.err, HasSubstr("ftctl: job-1 failed: " + dir_.Sub("data/model/model.safetensors") +
                               ": not a valid safetensors file"));
  CommandResult get = daemon->Ftctl({"get", "job-1"});
  EXPECT_THAT(get.out,
              AllOf(HasSubstr("state:       FAILED"),
                    HasSubstr("error:       " + dir_.Sub("data/model/model.safetensors"))));
  // Still serving.
  EXPECT_EQ(daemon->Ftctl({"info"}).exit_code, 0);
  ftd::testing::WriteModelFolder(dir_.Sub("data/model"));
  EXPECT_EQ(daemon->Ftctl(SubmitArgs("next")).exit_code, 0);
}

// The real thing end to end: ftd fine-tunes a small BERT (2 layers, random
// weights) on a learnable dataset, watched through ftctl, in well under a
// minute.
TEST_F(DaemonTest, FineTunesATinyBertToSuccessWatchedFromFtctl) {
  ftd::testing::WriteTinyBert(dir_.Sub("data/tiny"));
  ftd::testing::WriteSentimentCsv(dir_.Sub("data/sentiment-train.csv"), 256, 1);
  ftd::testing::WriteSentimentCsv(dir_.Sub("data/sentiment-valid.csv"), 128, 2);
  auto daemon = StartDaemon(/*cpu_slots=*/1);
  const auto start = std::chrono::steady_clock::now();
  CommandResult r =
      daemon->Ftctl({"submit", "--upload=false", "--model=" + dir_.Sub("data/tiny"),
                     "--train=" + dir_.Sub("data/sentiment-train.csv"),
                     "--validation=" + dir_.Sub("data/sentiment-valid.csv"), "--epochs=8",
                     "--batch_size=16", "--learning_rate=0.003", "--warmup_ratio=0.1",
                     "--max_seq_length=16", "--seed=3", "--name=tiny", "--watch"});
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_LT(seconds, 60);
  EXPECT_THAT(r.out, AllOf(HasSubstr("QUEUED -> RUNNING: started on cpu:0"),
                           HasSubstr("initialised"), HasSubstr("step 128/128 (100%) epoch 8/8"),
                           HasSubstr("evaluation epoch 8 step 128:"), HasSubstr("wrote model: "),
                           HasSubstr("RUNNING -> SUCCEEDED")));
  CommandResult get = daemon->Ftctl({"get", "job-1", "--json"});
  ASSERT_EQ(get.exit_code, 0);
  const size_t at = get.out.find("\"validation_accuracy\": ");
  ASSERT_NE(at, std::string::npos) << get.out;
  const double accuracy = std::stod(get.out.substr(at + 23));
  EXPECT_GT(accuracy, 0.9) << "chance is 0.5";
  EXPECT_TRUE(std::filesystem::exists(dir_.Sub("ftd-data/jobs/job-1/model/model.safetensors")));
  EXPECT_THAT(get.out, HasSubstr("\"train\": \""));  // the dataset fingerprint

  // Its output is a base model the daemon accepts; fine-tune it further with
  // AutoFreeze and watch the decisions.
  CommandResult again = daemon->Ftctl(
      {"submit", "--upload=false", "--model=" + dir_.Sub("ftd-data/jobs/job-1/model"),
       "--train=" + dir_.Sub("data/sentiment-train.csv"), "--epochs=2", "--batch_size=16",
       "--max_seq_length=16", "--freeze=autofreeze:50:4", "--precision=bf16", "--watch"});
  EXPECT_EQ(again.exit_code, 0) << again.out << again.err;
  EXPECT_THAT(again.out,
              AllOf(HasSubstr("autofreeze at step 4 (epoch 1): gradient baseline recorded"),
                    HasSubstr("at step 32 (epoch 2): "),
                    HasSubstr("precision: bf16 (as the job asks)")));
  CommandResult get2 = daemon->Ftctl({"get", "job-2"});
  EXPECT_THAT(get2.out,
              AllOf(HasSubstr("freezing:    autofreeze (percentile 50, 4 evaluations/epoch, through "
                                  "the first above, no freezing before 0.5 of training)"),
                    HasSubstr("frozen:      "), HasSubstr(" of 2 layers, "),
                    HasSubstr("precision:   bf16 (ran in bf16)")));
  EXPECT_THAT(daemon->Ftctl({"get", "job-1"}).out, HasSubstr("precision:   fp32 (ran in fp32)"));

  // auto: the daemon measures both precisions for the job's shapes and says
  // what it chose and why.
  CommandResult automatic = daemon->Ftctl(
      {"submit", "--upload=false", "--model=" + dir_.Sub("data/tiny"),
       "--train=" + dir_.Sub("data/sentiment-train.csv"), "--epochs=1", "--batch_size=16",
       "--max_seq_length=16", "--precision=auto", "--watch"});
  EXPECT_EQ(automatic.exit_code, 0) << automatic.out << automatic.err;
  EXPECT_THAT(automatic.out, HasSubstr(" (auto: a layer's products (256 tokens, "));
  EXPECT_THAT(daemon->Ftctl({"get", "job-3"}).out, HasSubstr("precision:   auto (ran in "));
  EXPECT_THAT(daemon->Ftctl({"submit", "--upload=false", "--model=" + dir_.Sub("data/tiny"),
                             "--train=" + dir_.Sub("data/sentiment-train.csv"),
                             "--precision=fp16"})
                  .err,
              HasSubstr("--precision=fp16: use fp32, bf16 or auto"));
}

// A job on two CPU devices through the daemon: the devices are allocated
// together, the two replicas train it to success with AutoFreeze and the
// cache, and a job asking for more devices than the daemon has is refused
// naming `devices` and what it has.
TEST_F(DaemonTest, AJobOnTwoDevicesRunsToSuccess) {
  ftd::testing::WriteTinyBert(dir_.Sub("data/tiny"));
  ftd::testing::WriteSentimentCsv(dir_.Sub("data/sentiment-train.csv"), 256, 1);
  ftd::testing::WriteSentimentCsv(dir_.Sub("data/sentiment-valid.csv"), 64, 2);
  auto daemon = StartDaemon(/*cpu_slots=*/2);
  auto submit = [&](std::vector<std::string> extra) {
    std::vector<std::string> args = {
        "submit",           "--upload=false",
        "--model=" + dir_.Sub("data/tiny"),
        "--train=" + dir_.Sub("data/sentiment-train.csv"),
        "--validation=" + dir_.Sub("data/sentiment-valid.csv"),
        "--epochs=3",       "--batch_size=16",
        "--max_seq_length=16", "--learning_rate=0.003",
        "--device=cpu"};
    args.insert(args.end(), extra.begin(), extra.end());
    return daemon->Ftctl(args);
  };
  CommandResult r = submit({"--devices=2", "--freeze=autofreeze:50:4", "--cache=true", "--watch"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(r.out, AllOf(HasSubstr("QUEUED -> RUNNING: started on cpu:0, cpu:1"),
                           HasSubstr("step 48/48 (100%) epoch 3/3"), HasSubstr("wrote model: "),
                           HasSubstr("RUNNING -> SUCCEEDED")));
  CommandResult get = daemon->Ftctl({"get", "job-1"});
  EXPECT_THAT(get.out, HasSubstr("device:      cpu x 2 (on cpu:0, cpu:1)"));
  EXPECT_TRUE(std::filesystem::exists(dir_.Sub("ftd-data/jobs/job-1/model/model.safetensors")));

  // Efficiency mode: job-2 on two devices moves to one after its freeze
  // (half of training, then 2 steps measured); job-3, queued meanwhile,
  // starts on the device it leaves. Both succeed.
  ftd::testing::WriteFile(dir_.Sub("data/efficient.yaml"), R"(display_name: efficient
base_model: tiny
train_dataset: {path: sentiment-train.csv}
hyperparameters: {epochs: 2, batch_size: 16, max_seq_length: 16, learning_rate: 0.003}
freeze_policy:
  linear: {freeze_start: 0, freeze_level: 1, evaluations_per_epoch: 4}
device: {kind: cpu}
devices: 2
efficiency: {enabled: true, max_step_ratio: 1000, measure_steps: 2}
)");
  ASSERT_EQ(daemon->Ftctl({"submit", "--upload=false", dir_.Sub("data/efficient.yaml")}).exit_code,
            0);
  ASSERT_EQ(submit({"--name=waiting"}).exit_code, 0);
  CommandResult efficient = daemon->Ftctl({"watch", "job-2"});
  EXPECT_EQ(efficient.exit_code, 0) << efficient.out << efficient.err;
  EXPECT_THAT(efficient.out,
              AllOf(HasSubstr("efficiency mode: with 1 layer frozen a step on 1 device"),
                    HasSubstr("RUNNING -> QUEUED: continues on 1 device from its checkpoint"),
                    HasSubstr("RUNNING -> SUCCEEDED")));
  EXPECT_THAT(daemon->Ftctl({"get", "job-2"}).out, HasSubstr("moved to 1 device"));
  CommandResult waiting = daemon->Ftctl({"watch", "job-3"});
  EXPECT_EQ(waiting.exit_code, 0) << waiting.out << waiting.err;

  CommandResult three = submit({"--devices=3"});
  EXPECT_EQ(three.exit_code, 1);
  EXPECT_THAT(three.err, AllOf(HasSubstr("INVALID_ARGUMENT: devices: 3 CPU devices were asked for"),
                               HasSubstr("2 CPU devices")));
  CommandResult help = daemon->Ftctl({"submit", "--help"});
  EXPECT_THAT(help.out + help.err, HasSubstr("--devices"));
}

// --max_job_events bounds a job's history: the oldest progress, freeze and
// evaluation events go and are counted; its state changes stay, and its
// record still has its evaluations.
TEST_F(DaemonTest, AJobsEventHistoryIsBoundedAndSaysWhatWentMissing) {
  ftd::testing::WriteTinyBert(dir_.Sub("data/tiny"));
  ftd::testing::WriteSentimentCsv(dir_.Sub("data/sentiment-train.csv"), 128, 1);
  auto daemon = StartDaemon(/*cpu_slots=*/1, {"--max_job_events=8"});
  CommandResult r = daemon->Ftctl({"submit", "--upload=false", "--model=" + dir_.Sub("data/tiny"),
                                   "--train=" + dir_.Sub("data/sentiment-train.csv"),
                                   "--validation=" + dir_.Sub("data/sentiment-train.csv"),
                                   "--epochs=4", "--batch_size=16", "--max_seq_length=16",
                                   "--freeze=autofreeze:50:4", "--watch"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  CommandResult events = daemon->Ftctl({"events", "job-1"});
  ASSERT_EQ(events.exit_code, 0) << events.err;
  EXPECT_THAT(events.out, AllOf(HasSubstr("QUEUED: submitted"), HasSubstr("QUEUED -> RUNNING"),
                                HasSubstr("RUNNING -> SUCCEEDED")));
  EXPECT_THAT(events.err, HasSubstr(" older events (progress, evaluations, freeze decisions) were "
                                    "dropped"));
  const size_t lines = std::count(events.out.begin(), events.out.end(), '\n');
  EXPECT_LE(lines, 3u + 8 + 1);
  EXPECT_THAT(daemon->Ftctl({"get", "job-1"}).out, HasSubstr("eval:        epoch 4: "));
}

TEST_F(DaemonTest, Kill9LosesNoAcknowledgedJobAndTheQueueKeepsItsOrder) {
  std::string before;
  {
    auto daemon = StartDaemon(/*cpu_slots=*/0);
    for (int i = 1; i <= 3; ++i)
      ASSERT_EQ(daemon->Ftctl(SubmitArgs(absl::StrCat("j", i))).exit_code, 0);
    auto urgent = SubmitArgs("urgent");
    urgent.push_back("--priority=5");
    ASSERT_EQ(daemon->Ftctl(urgent).exit_code, 0);
    ASSERT_EQ(daemon->Ftctl({"cancel", "job-2"}).exit_code, 0);
    before = daemon->Ftctl({"list"}).out;
    daemon->process().Signal(SIGKILL);
    EXPECT_EQ(daemon->process().Wait(), 128 + SIGKILL);
  }
  auto daemon = StartDaemon(/*cpu_slots=*/0);
  CommandResult after = daemon->Ftctl({"list"});
  ASSERT_EQ(after.exit_code, 0) << after.err;
  EXPECT_EQ(after.out, before);
  EXPECT_THAT(ListedIds(after.out), ::testing::ElementsAre("job-4", "job-3", "job-2", "job-1"));
  EXPECT_THAT(daemon->Ftctl({"get", "job-4"}).out, HasSubstr("QUEUED (position 1)"));
  EXPECT_THAT(daemon->Ftctl({"get", "job-1"}).out, HasSubstr("QUEUED (position 2)"));
  EXPECT_THAT(daemon->Ftctl({"get", "job-3"}).out, HasSubstr("QUEUED (position 3)"));
  EXPECT_THAT(daemon->Ftctl({"get", "job-2"}).out, HasSubstr("CANCELLED"));
  // New ids continue after the old ones.
  EXPECT_THAT(daemon->Ftctl(SubmitArgs("after")).out, HasSubstr("job-5"));
}

TEST_F(DaemonTest, SigtermShutsDownGracefully) {
  auto daemon = StartDaemon(/*cpu_slots=*/0);
  ASSERT_EQ(daemon->Ftctl(SubmitArgs("kept")).exit_code, 0);
  daemon->process().Signal(SIGTERM);
  EXPECT_EQ(daemon->process().Wait(), 0);
  std::ifstream in(dir_.Sub("ftd.log"));
  std::string log((std::istreambuf_iterator<char>(in)), {});
  EXPECT_THAT(log, AllOf(HasSubstr("shutting down"), HasSubstr("stopped")));
  auto restarted = StartDaemon(/*cpu_slots=*/0);
  EXPECT_THAT(restarted->Ftctl({"get", "job-1"}).out, HasSubstr("QUEUED (position 1)"));
}

TEST_F(DaemonTest, ServesTheStandardHealthService) {
  auto daemon = StartDaemon(/*cpu_slots=*/0);
  auto channel = grpc::CreateChannel(daemon->address(), grpc::InsecureChannelCredentials());
  auto health = grpc::health::v1::Health::NewStub(channel);
  // The server as a whole ("") and the service by name.
  for (const char* service : {"", "ftd.v1.FineTuning"}) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    grpc::health::v1::HealthCheckRequest request;
    request.set_service(service);
    grpc::health::v1::HealthCheckResponse response;
    grpc::Status status = health->Check(&context, request, &response);
    ASSERT_TRUE(status.ok()) << service << ": " << status.error_message();
    EXPECT_EQ(response.status(), grpc::health::v1::HealthCheckResponse::SERVING) << service;
  }
  grpc::ClientContext context;
  grpc::health::v1::HealthCheckRequest unknown;
  unknown.set_service("ftd.v1.Nothing");
  grpc::health::v1::HealthCheckResponse response;
  EXPECT_EQ(health->Check(&context, unknown, &response).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(daemon->Ftctl({"health", "ftd.v1.FineTuning"}).out, "SERVING\n");
}

// Reflection v1 answers as gRPC's reference v1alpha does: the services, and
// the file defining a symbol with the files it imports.
TEST_F(DaemonTest, ServesReflectionV1) {
  auto daemon = StartDaemon(/*cpu_slots=*/0);
  auto channel = grpc::CreateChannel(daemon->address(), grpc::InsecureChannelCredentials());
  auto reflection = grpc::reflection::v1::ServerReflection::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  auto stream = reflection->ServerReflectionInfo(&context);
  grpc::reflection::v1::ServerReflectionRequest request;
  grpc::reflection::v1::ServerReflectionResponse response;

  request.set_list_services("");
  ASSERT_TRUE(stream->Write(request));
  ASSERT_TRUE(stream->Read(&response));
  std::vector<std::string> services;
  for (const auto& s : response.list_services_response().service()) services.push_back(s.name());
  EXPECT_THAT(services, ::testing::IsSupersetOf({"ftd.v1.FineTuning", "grpc.health.v1.Health",
                                                 "grpc.reflection.v1.ServerReflection",
                                                 "grpc.reflection.v1alpha.ServerReflection"}));

  request.set_file_containing_symbol("ftd.v1.FineTuning.SubmitJob");
  ASSERT_TRUE(stream->Write(request));
  ASSERT_TRUE(stream->Read(&response));
  std::vector<std::string> files;
  for (const std::string& bytes : response.file_descriptor_response().file_descriptor_proto()) {
    google::protobuf::FileDescriptorProto file;
    ASSERT_TRUE(file.ParseFromString(bytes));
    files.push_back(file.name());
  }
  EXPECT_THAT(files, ::testing::ElementsAre("ftd/v1/ftd.proto", "google/protobuf/timestamp.proto"));

  request.set_file_containing_symbol("ftd.v1.Nothing");
  ASSERT_TRUE(stream->Write(request));
  ASSERT_TRUE(stream->Read(&response));
  EXPECT_EQ(response.error_response().error_code(), static_cast<int>(grpc::StatusCode::NOT_FOUND));
  EXPECT_EQ(response.original_request().file_containing_symbol(), "ftd.v1.Nothing");
  stream->WritesDone();
  EXPECT_TRUE(stream->Finish().ok());
}

// Errors carry google.rpc.Status details a client can act on: an ErrorInfo
// with a reason, and for a bad field a BadRequest naming it.
TEST_F(DaemonTest, ErrorsCarryStructuredDetails) {
  auto daemon = StartDaemon(/*cpu_slots=*/0);
  auto channel = grpc::CreateChannel(daemon->address(), grpc::InsecureChannelCredentials());
  auto stub = v1::FineTuning::NewStub(channel);
  auto details = [](const grpc::Status& status) {
    google::rpc::Status parsed;
    EXPECT_TRUE(parsed.ParseFromString(status.error_details()));
    return parsed;
  };

  v1::SubmitJobRequest submit_request;
  v1::JobSpec& spec = *submit_request.mutable_spec();
  spec.set_base_model(dir_.Sub("data/model"));
  spec.mutable_train_dataset()->set_path(dir_.Sub("data/train.csv"));
  spec.mutable_hyperparameters()->set_epochs(0);
  grpc::ClientContext submit;
  v1::Job job;
  grpc::Status bad = stub->SubmitJob(&submit, submit_request, &job);
  ASSERT_EQ(bad.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  google::rpc::Status status = details(bad);
  EXPECT_EQ(status.code(), static_cast<int>(grpc::StatusCode::INVALID_ARGUMENT));
  EXPECT_EQ(status.message(), bad.error_message());
  google::rpc::BadRequest request;
  google::rpc::ErrorInfo info;
  for (const google::protobuf::Any& any : status.details()) {
    if (any.Is<google::rpc::BadRequest>()) any.UnpackTo(&request);
    if (any.Is<google::rpc::ErrorInfo>()) any.UnpackTo(&info);
  }
  ASSERT_EQ(request.field_violations_size(), 1);
  EXPECT_EQ(request.field_violations(0).field(), "hyperparameters.epochs");
  EXPECT_THAT(request.field_violations(0).description(), HasSubstr("got 0"));
  EXPECT_EQ(info.reason(), "INVALID_FIELD");
  EXPECT_EQ(info.domain(), "ftd");

  grpc::ClientContext get;
  v1::GetJobRequest missing;
  missing.set_job_id("job-404");
  grpc::Status not_found = stub->GetJob(&get, missing, &job);
  ASSERT_EQ(not_found.error_code(), grpc::StatusCode::NOT_FOUND);
  ASSERT_EQ(details(not_found).details_size(), 1);
  ASSERT_TRUE(details(not_found).details(0).UnpackTo(&info));
  EXPECT_EQ(info.reason(), "NOT_FOUND");
}

// Where OpenBLAS fell back to narrower kernels, ftd runs itself again with
// OPENBLAS_CORETYPE set (FTD_BLAS_CORE_CHOSEN telling the next run which)
// and checks that core's products; a core that fails is given up, and ftd
// runs again with OpenBLAS's own choice. (A host whose OpenBLAS falls back
// cannot be made here: these start from the second run.)
TEST_F(DaemonTest, KernelsAnEarlierRunChoseAreCheckedAndOnesThatFailAreGivenUp) {
  CommandResult checked = RunCommand({"/usr/bin/env", "OPENBLAS_CORETYPE=Prescott",
                                      "FTD_BLAS_CORE_CHOSEN=Prescott", FTD_BINARY, "--version"});
  EXPECT_EQ(checked.exit_code, 0) << checked.err;
  EXPECT_THAT(checked.err, HasSubstr("running with its Prescott kernels (their products checked "
                                     "against a plain loop)"));
  // OpenBLAS does not run the core asked for: given up, and ftd runs again
  // (the same process) without it.
  CommandResult refused = RunCommand({"/usr/bin/env", "OPENBLAS_CORETYPE=Prescott",
                                      "FTD_BLAS_CORE_CHOSEN=NoSuchLake", FTD_BINARY, "--version"});
  EXPECT_EQ(refused.exit_code, 0) << refused.err;
  EXPECT_THAT(refused.err,
              AllOf(HasSubstr("the NoSuchLake kernels failed their check (OpenBLAS runs its "
                              "Prescott kernels instead); running with OpenBLAS's own choice"),
                    HasSubstr("kernels: the NoSuchLake kernels failed their check; OpenBLAS's "
                              "own choice, ")));
  // A core set by anyone else is kept.
  CommandResult set =
      RunCommand({"/usr/bin/env", "OPENBLAS_CORETYPE=Prescott", FTD_BINARY, "--version"});
  EXPECT_THAT(set.err, HasSubstr("kernels: OPENBLAS_CORETYPE=Prescott was set in the environment"));
}

TEST_F(DaemonTest, FtctlExplainsAnUnreachableDaemon) {
  CommandResult r = RunCommand({FTCTL_BINARY, "--address=127.0.0.1:1", "--timeout=2", "info"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("ftctl: "));
  EXPECT_THAT(r.err, Not(HasSubstr("\n\n")));
  CommandResult health =
      RunCommand({FTCTL_BINARY, "--address=127.0.0.1:1", "--timeout=2", "health"});
  EXPECT_EQ(health.exit_code, 1);
  EXPECT_THAT(health.err, HasSubstr("ftctl: health: UNAVAILABLE"));
}

// The activation cache: a cached job, a restart, and an identical job that
// reads what the first one wrote from its first epoch on.
class CacheTest : public DaemonTest {
 protected:
  void SetUp() override {
    DaemonTest::SetUp();
    ftd::testing::WriteTinyBert(dir_.Sub("data/tiny"));
    ftd::testing::WriteSentimentCsv(dir_.Sub("data/sentiment-train.csv"), 256, 1);
    ftd::testing::WriteSentimentCsv(dir_.Sub("data/sentiment-valid.csv"), 128, 2);
  }

  std::vector<std::string> CachedJob() {
    return {"submit",
            "--upload=false",
            "--model=" + dir_.Sub("data/tiny"),
            "--train=" + dir_.Sub("data/sentiment-train.csv"),
            "--validation=" + dir_.Sub("data/sentiment-valid.csv"),
            "--epochs=8",
            "--batch_size=16",
            "--learning_rate=0.003",
            "--warmup_ratio=0.1",
            "--max_seq_length=16",
            "--seed=3",
            "--freeze=static:1",
            "--cache=true",
            "--watch"};
  }

  static double Number(const std::string& json, const std::string& field) {
    const size_t at = json.find("\"" + field + "\": ");
    if (at == std::string::npos) return -1;
    size_t start = at + field.size() + 4;
    if (json[start] == '"') ++start;  // int64 fields are JSON strings
    return std::stod(json.substr(start));
  }

  void Stop(Daemon& daemon) {
    daemon.process().Signal(SIGTERM);
    EXPECT_EQ(daemon.process().Wait(), 0);
  }
};

TEST_F(CacheTest, ASecondIdenticalJobAfterARestartReadsTheFirstJobsEntries) {
  double first_accuracy = 0;
  {
    auto daemon = StartDaemon(/*cpu_slots=*/1);
    CommandResult first = daemon->Ftctl(CachedJob());
    ASSERT_EQ(first.exit_code, 0) << first.out << first.err;
    EXPECT_THAT(first.out,
                AllOf(HasSubstr("cache epoch 1: 0 of 256 examples from the cache (0.0%"),
                      HasSubstr("256 computed; wrote 256"),
                      HasSubstr("cache epoch 2: 256 of 256 examples from the cache (100.0%; 256 "
                                "at the frozen depth, 0 from shallower entries), 0 computed")));
    first_accuracy = Number(daemon->Ftctl({"get", "job-1", "--json"}).out, "validation_accuracy");
    EXPECT_GT(first_accuracy, 0.6) << "chance is 0.5";
    Stop(*daemon);
  }
  auto daemon = StartDaemon(/*cpu_slots=*/1);
  CommandResult second = daemon->Ftctl(CachedJob());
  ASSERT_EQ(second.exit_code, 0) << second.out << second.err;
  EXPECT_THAT(second.out,
              AllOf(HasSubstr("cache epoch 1: 256 of 256 examples from the cache (100.0%"),
                    HasSubstr("cache epoch 8: 256 of 256 examples from the cache (100.0%")));
  EXPECT_THAT(second.out, Not(HasSubstr("wrote 1")));
  EXPECT_NEAR(Number(daemon->Ftctl({"get", "job-2", "--json"}).out, "validation_accuracy"),
              first_accuracy, 0.05);
  EXPECT_THAT(daemon->Ftctl({"get", "job-2"}).out,
              HasSubstr("cache:       on (bf16), 225.8 KiB in 2 segment(s)"));

  // The cache as the API shows it, and clearing it.
  CommandResult cache = daemon->Ftctl({"cache"});
  ASSERT_EQ(cache.exit_code, 0) << cache.err;
  // The training rows' segment and the validation rows' (evaluations start
  // at the frozen depth too).
  EXPECT_THAT(cache.out, AllOf(HasSubstr("cache:       225.8 KiB of 8.00 GiB"),
                               HasSubstr("/1  256 entries  150.3 KiB  bf16"),
                               HasSubstr("/1  128 entries  75.5 KiB  bf16")));
  CommandResult job = daemon->Ftctl({"cache", "job-2"});
  EXPECT_THAT(job.out, AllOf(HasSubstr("job:         all epochs: 2048 of 2048 examples"),
                             HasSubstr("segments of this job")));
  CommandResult cleared = daemon->Ftctl({"cache", "clear", "job-2"});
  ASSERT_EQ(cleared.exit_code, 0) << cleared.err;
  EXPECT_THAT(cleared.out, HasSubstr("cleared 2 segment(s), 225.8 KiB"));
  EXPECT_THAT(daemon->Ftctl({"cache"}).out,
              AllOf(HasSubstr("cache:       0 B of"),
                    HasSubstr("segments (namespace/dataset/layer): none")));
  CommandResult unknown = daemon->Ftctl({"cache", "clear", "job-9"});
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_THAT(unknown.err, HasSubstr("NOT_FOUND"));

  // Deleting an ended job takes its outputs and the segments it wrote with it.
  CommandResult third = daemon->Ftctl(CachedJob());
  ASSERT_EQ(third.exit_code, 0) << third.out << third.err;
  ASSERT_TRUE(std::filesystem::exists(dir_.Sub("ftd-data/jobs/job-3/model/config.json")));
  CommandResult deleted = daemon->Ftctl({"delete", "job-3"});
  ASSERT_EQ(deleted.exit_code, 0) << deleted.err;
  EXPECT_THAT(deleted.out, AllOf(HasSubstr("deleted job-3: "), HasSubstr(" of outputs, 2 cache "
                                                                         "segments (225.8 KiB)")));
  EXPECT_FALSE(std::filesystem::exists(dir_.Sub("ftd-data/jobs/job-3")));
  EXPECT_THAT(daemon->Ftctl({"cache"}).out, HasSubstr("cache:       0 B of"));
  EXPECT_THAT(daemon->Ftctl({"get", "job-3"}).err, HasSubstr("NOT_FOUND: no job job-3"));
  EXPECT_THAT(daemon->Ftctl({"download", "job-3", dir_.Sub("out")}).err, HasSubstr("NOT_FOUND"));
  EXPECT_THAT(daemon->Ftctl({"delete", "job-3"}).err, HasSubstr("NOT_FOUND"));
  EXPECT_THAT(ListedIds(daemon->Ftctl({"list"}).out), ::testing::ElementsAre("job-2", "job-1"));
}

TEST_F(CacheTest, CorruptedCacheFilesAreRecomputedAndTheJobStillSucceeds) {
  double first_accuracy = 0;
  {
    auto daemon = StartDaemon(/*cpu_slots=*/1);
    ASSERT_EQ(daemon->Ftctl(CachedJob()).exit_code, 0);
    first_accuracy = Number(daemon->Ftctl({"get", "job-1", "--json"}).out, "validation_accuracy");
    Stop(*daemon);
  }
  // Damage every blob file (where the activations live) all through.
  int damaged = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir_.Sub("ftd-data/db"))) {
    if (entry.path().extension() != ".blob") continue;
    std::fstream f(entry.path(), std::ios::in | std::ios::out | std::ios::binary);
    const auto size = static_cast<std::streamoff>(std::filesystem::file_size(entry.path()));
    for (std::streamoff at = 64; at < size - 64; at += 251) {
      f.seekg(at);
      char c = 0;
      f.read(&c, 1);
      c = static_cast<char>(c ^ 0x5a);
      f.seekp(at);
      f.write(&c, 1);
      ++damaged;
    }
  }
  ASSERT_GT(damaged, 10) << "no blob files to damage";

  auto daemon = StartDaemon(/*cpu_slots=*/1);
  CommandResult second = daemon->Ftctl(CachedJob());
  ASSERT_EQ(second.exit_code, 0) << second.out << second.err;
  EXPECT_THAT(second.out, AllOf(HasSubstr("corrupt entries recomputed"),
                                HasSubstr("cache epoch 2: 256 of 256 examples from the cache")));
  CommandResult get = daemon->Ftctl({"get", "job-2", "--json"});
  EXPECT_GT(Number(get.out, "corrupt"), 100) << get.out;
  EXPECT_NEAR(Number(get.out, "validation_accuracy"), first_accuracy, 0.05);
}

// A running job resumes from its last checkpoint after the daemon is
// killed (kill -9) or stopped (SIGTERM), and ends as it would have.
class ResumeTest : public CacheTest {
 protected:
  std::vector<std::string> LongJob() {
    std::vector<std::string> args = CachedJob();
    args.pop_back();  // no --watch
    for (auto& a : args) {
      if (a == "--epochs=8") a = "--epochs=20";
      if (a == "--freeze=static:1") a = "--freeze=autofreeze:50:4";
    }
    args.push_back("--checkpoint_every_steps=25");
    return args;
  }

  // The newest checkpoint's step in `ftctl get --json`, or -1.
  static int64_t NewestCheckpoint(const std::string& json) {
    size_t at = json.find("\"checkpoints\": [");
    if (at == std::string::npos) return -1;
    const size_t end = json.find(']', at);
    int64_t step = -1;
    while ((at = json.find("\"step\": \"", at)) != std::string::npos && at < end) {
      at += 9;
      step = std::stoll(json.substr(at));
    }
    return step;
  }

  // Waits until the job has a checkpoint at `min_step` or later and has
  // trained on past it; returns that checkpoint's step.
  int64_t WaitForCheckpoint(Daemon& daemon, int64_t min_step) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
    while (std::chrono::steady_clock::now() < deadline) {
      const std::string json = daemon.Ftctl({"get", "job-1", "--json"}).out;
      const int64_t step = NewestCheckpoint(json);
      const size_t progress = json.find("\"progress\": {");
      if (step >= min_step && progress != std::string::npos &&
          Number(json.substr(progress), "step") > step + 3) {
        return step;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    ADD_FAILURE() << "no checkpoint at step " << min_step << " or later";
    return -1;
  }
};

TEST_F(ResumeTest, AJobKilledWithTheDaemonResumesFromItsCheckpointNotFromStepOne) {
  int64_t checkpoint = -1;
  {
    auto daemon = StartDaemon(/*cpu_slots=*/1);
    ASSERT_EQ(daemon->Ftctl(LongJob()).exit_code, 0);
    checkpoint = WaitForCheckpoint(*daemon, 50);
    daemon->process().Signal(SIGKILL);
    EXPECT_EQ(daemon->process().Wait(), 128 + SIGKILL);
  }
  ASSERT_GE(checkpoint, 50);
  auto daemon = StartDaemon(/*cpu_slots=*/1);
  CommandResult watch = daemon->Ftctl({"watch", "job-1"});
  ASSERT_EQ(watch.exit_code, 0) << watch.out << watch.err;
  // The resume names the step (the newest checkpoint, or a later one the
  // job recorded just before the kill) and the work lost.
  const size_t at = watch.out.find("resumed from step ");
  ASSERT_NE(at, std::string::npos) << watch.out;
  const int64_t resumed = std::stoll(watch.out.substr(at + 18));
  EXPECT_GE(resumed, checkpoint);
  EXPECT_THAT(watch.out.substr(at),
              AllOf(HasSubstr(" s) of work"), HasSubstr("RUNNING -> SUCCEEDED")));
  // The resumed attempt's first progress is after the checkpoint.
  EXPECT_THAT(watch.out.substr(at), Not(HasSubstr("step 1/320 ")));
  CommandResult get = daemon->Ftctl({"get", "job-1", "--json"});
  EXPECT_GT(Number(get.out, "validation_accuracy"), 0.6) << get.out;
  EXPECT_EQ(NewestCheckpoint(get.out), -1) << "an ended job lists no checkpoints";
  EXPECT_FALSE(std::filesystem::exists(dir_.Sub("ftd-data/jobs/job-1/checkpoints")));
  EXPECT_TRUE(std::filesystem::exists(dir_.Sub("ftd-data/jobs/job-1/model/model.safetensors")));
  EXPECT_THAT(daemon->Ftctl({"get", "job-1"}).out, HasSubstr("attempts:    2"));
}

TEST_F(ResumeTest, SigtermCheckpointsTheRunningJobWhichResumesLosingNothing) {
  {
    auto daemon = StartDaemon(/*cpu_slots=*/1);
    ASSERT_EQ(daemon->Ftctl(LongJob()).exit_code, 0);
    WaitForCheckpoint(*daemon, 25);
    const auto stop = std::chrono::steady_clock::now();
    daemon->process().Signal(SIGTERM);
    EXPECT_EQ(daemon->process().Wait(), 0);
    EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - stop).count(), 20);
  }
  auto daemon = StartDaemon(/*cpu_slots=*/1);
  CommandResult watch = daemon->Ftctl({"watch", "job-1"});
  ASSERT_EQ(watch.exit_code, 0) << watch.out << watch.err;
  // The stop wrote a checkpoint of where the job was (or found one there
  // already, at an epoch's end), and the job resumes from exactly that step.
  const size_t requeued = watch.out.find("RUNNING -> QUEUED: the daemon is shutting down");
  ASSERT_NE(requeued, std::string::npos) << watch.out;
  const size_t last = watch.out.rfind("checkpoint: step ", requeued);
  ASSERT_NE(last, std::string::npos);
  const std::string step = watch.out.substr(last + 17, watch.out.find(' ', last + 17) - last - 17);
  EXPECT_THAT(watch.out.substr(requeued),
              AllOf(HasSubstr("resumes from its checkpoint when it restarts"),
                    HasSubstr("resumed from step " + step + " "), HasSubstr("lost 0 steps ("),
                    HasSubstr("RUNNING -> SUCCEEDED")));
}

TEST_F(ResumeTest, AHigherPriorityJobPreemptsARunningOneWhichResumesAfterIt) {
  auto daemon = StartDaemon(/*cpu_slots=*/1, {"--preemption"});
  ASSERT_EQ(daemon->Ftctl(LongJob()).exit_code, 0);
  const int64_t checkpoint = WaitForCheckpoint(*daemon, 25);
  std::vector<std::string> urgent = CachedJob();  // 8 epochs, watched
  urgent.push_back("--priority=5");
  CommandResult second = daemon->Ftctl(urgent);
  ASSERT_EQ(second.exit_code, 0) << second.out << second.err;
  CommandResult first = daemon->Ftctl({"watch", "job-1"});
  ASSERT_EQ(first.exit_code, 0) << first.out << first.err;
  const size_t preempted =
      first.out.find("RUNNING -> QUEUED: preempted by job-2 (priority 5 over 0)");
  ASSERT_NE(preempted, std::string::npos) << first.out;
  const size_t resumed = first.out.find("resumed from step ", preempted);
  ASSERT_NE(resumed, std::string::npos) << first.out;
  EXPECT_GE(std::stoll(first.out.substr(resumed + 18)), checkpoint);
  EXPECT_THAT(first.out.substr(resumed),
              AllOf(HasSubstr("lost 0 steps ("), HasSubstr("RUNNING -> SUCCEEDED")));
  // The preempting job ran in between: it ended before job-1 resumed.
  EXPECT_THAT(daemon->Ftctl({"get", "job-2"}).out, HasSubstr("SUCCEEDED"));
}

}  // namespace
}  // namespace ftd
