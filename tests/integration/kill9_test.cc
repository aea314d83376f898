// The kill -9 loop: clients submit (and cancel some) jobs while a driver
// kills the real daemon with SIGKILL at random moments (during submits,
// training, checkpoint and model writes, cancels) and starts it again. At the
// end every acknowledged submission exists exactly once, every job ends as
// its history allows, every exported model loads and scores what its job
// reported, and no job went back to step 0 after its first checkpoint.
//
// CI runs a small loop; the long form is the same test with more of each:
//   FTD_KILL9_JOBS=100 FTD_KILL9_KILLS=300 build/tests/kill9_test
// It prints its figures (jobs, kills, resumes, work lost per kill) as a
// line starting "kill9:", which docs/reliability.md quotes.
#include <signal.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/training/engine/bert_trainer.h"
#include "tests/testing/ftd_daemon.h"
#include "tests/testing/temp_dir.h"
#include "tests/testing/tiny_bert.h"

namespace ftd {
namespace {

using ::ftd::testing::CommandResult;
using ::ftd::testing::FtdDaemon;

int EnvInt(const char* name, int fallback) {
  const char* value = std::getenv(name);
  int out = 0;
  return value != nullptr && absl::SimpleAtoi(value, &out) && out > 0 ? out : fallback;
}

// The value after "field": in protobuf JSON (strings unquoted), or "".
std::string JsonField(const std::string& json, const std::string& field, size_t from = 0) {
  const size_t at = json.find("\"" + field + "\": ", from);
  if (at == std::string::npos) return "";
  size_t start = at + field.size() + 4;
  if (json[start] == '"') {
    ++start;
    return json.substr(start, json.find('"', start) - start);
  }
  return json.substr(start, json.find_first_of(",\n}", start) - start);
}

std::string FirstJobId(const std::string& text) {
  const size_t at = text.find("job-");
  if (at == std::string::npos) return "";
  size_t end = at + 4;
  while (end < text.size() && isdigit(static_cast<unsigned char>(text[end]))) ++end;
  return text.substr(at, end - at);
}

class Kill9Test : public ::testing::Test {
 protected:
  void SetUp() override {
    ftd::testing::WriteTinyBert(dir_.Sub("data/tiny"));
    ftd::testing::WriteSentimentCsv(dir_.Sub("data/train.csv"), 256, 1);
    ftd::testing::WriteSentimentCsv(dir_.Sub("data/valid.csv"), 128, 2);
  }

  std::unique_ptr<FtdDaemon> Start(int index) {
    return std::make_unique<FtdDaemon>(
        FtdDaemon::Options{FTD_BINARY,
                           FTCTL_BINARY,
                           dir_.Sub("ftd-data"),
                           dir_.Sub("data"),
                           1,
                           dir_.Sub(absl::StrCat("ftd-", index, ".log")),
                           // The loop kills on purpose: the crash limit is tested on its own.
                           {"--max_job_crashes=0"}});
  }

  std::vector<std::string> Submit(const std::string& request_id, int epochs) {
    return {"submit",
            "--upload=false",
            "--model=" + dir_.Sub("data/tiny"),
            "--train=" + dir_.Sub("data/train.csv"),
            "--validation=" + dir_.Sub("data/valid.csv"),
            absl::StrCat("--epochs=", epochs),
            "--batch_size=16",
            "--learning_rate=0.003",
            "--max_seq_length=16",
            "--freeze=autofreeze:50:4",
            "--cache=true",
            "--checkpoint_every_steps=7",
            "--request_id=" + request_id,
            "--name=" + request_id};
  }

  ftd::testing::TempDir dir_;
};

TEST_F(Kill9Test, EveryAcknowledgedJobExistsOnceAndEndsAsItsHistoryAllows) {
  const int jobs = EnvInt("FTD_KILL9_JOBS", 8);
  const int kills = EnvInt("FTD_KILL9_KILLS", 12);
  const int clients = 3;

  std::mutex mu;
  std::string address;                              // of the daemon up now; empty while it is down
  std::map<std::string, std::string> acknowledged;  // request id -> job id
  std::set<std::string> cancelled;                  // job ids whose cancel was acknowledged
  std::set<std::string> ended_before_cancel;
  std::atomic<bool> submitting{true};

  auto current = [&] {
    std::lock_guard<std::mutex> lock(mu);
    return address;
  };
  // Runs ftctl against whichever daemon is up until a reply comes.
  auto until_answered = [&](std::vector<std::string> args) {
    while (true) {
      const std::string at = current();
      if (at.empty()) {
        std::this_thread::sleep_for(std::chrono::milliseconds(30));
        continue;
      }
      args.insert(args.begin(), {FTCTL_BINARY, "--address=" + at});
      CommandResult r = ftd::testing::RunCommand(args, std::chrono::seconds(30));
      args.erase(args.begin(), args.begin() + 2);
      // 0: done; 1: the server answered with an error. Others: it went away.
      if (r.exit_code == 0 ||
          (r.exit_code == 1 && !absl::StrContains(r.err, "UNAVAILABLE") &&
           !absl::StrContains(r.err, "DEADLINE") && !absl::StrContains(r.err, "CANCELLED"))) {
        return r;
      }
    }
  };

  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      std::mt19937 rng(100 + c);
      for (int i = c; i < jobs; i += clients) {
        const std::string request = absl::StrCat("r", i);
        // 12 to 19 epochs: jobs of a few seconds, each killed a few times.
        CommandResult r = until_answered(Submit(request, 12 + static_cast<int>(rng() % 8)));
        ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
        const std::string id = FirstJobId(r.out);
        {
          std::lock_guard<std::mutex> lock(mu);
          acknowledged[request] = id;
        }
        if (i % 5 == 4) {  // some are cancelled, queued or running
          CommandResult cancel = until_answered({"cancel", id});
          std::lock_guard<std::mutex> lock(mu);
          if (cancel.exit_code == 0) {
            cancelled.insert(id);
          } else if (absl::StrContains(cancel.err, "FAILED_PRECONDITION")) {
            ended_before_cancel.insert(id);
          } else {
            ADD_FAILURE() << cancel.err;
          }
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(rng() % 400));
      }
    });
  }

  // The driver: up for a random while, then kill -9.
  std::mt19937 rng(7);
  int kill_count = 0;
  for (int k = 0; k < kills; ++k) {
    auto daemon = Start(k);
    ASSERT_TRUE(daemon->started());
    {
      std::lock_guard<std::mutex> lock(mu);
      address = daemon->address();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(300 + rng() % 2200));
    {
      std::lock_guard<std::mutex> lock(mu);
      address.clear();
    }
    daemon->process().Signal(SIGKILL);
    ASSERT_EQ(daemon->process().Wait(), 128 + SIGKILL);
    ++kill_count;
  }
  // The last one runs everything to its end.
  auto daemon = Start(kills);
  ASSERT_TRUE(daemon->started());
  {
    std::lock_guard<std::mutex> lock(mu);
    address = daemon->address();
  }
  for (auto& t : threads) t.join();
  submitting = false;

  // Every acknowledged submission exists exactly once.
  CommandResult list = daemon->Ftctl({"list", "--all"});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  std::vector<std::string> listed;
  for (absl::string_view line : absl::StrSplit(list.out, '\n')) {
    if (absl::StartsWith(line, "job-")) listed.emplace_back(line.substr(0, line.find(' ')));
  }
  ASSERT_EQ(acknowledged.size(), static_cast<size_t>(jobs));
  EXPECT_EQ(listed.size(), acknowledged.size()) << list.out;
  std::set<std::string> ids;
  for (const auto& [request, id] : acknowledged) {
    EXPECT_TRUE(ids.insert(id).second) << request << " and another share " << id;
  }

  // Every job ends as its history allows.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(600);
  int resumes = 0, restarts_from_zero = 0, checked_models = 0;
  double lost_seconds = 0;
  for (const auto& [request, id] : acknowledged) {
    std::string json, state;
    while (std::chrono::steady_clock::now() < deadline) {
      json = daemon->Ftctl({"get", id, "--json"}).out;
      state = JsonField(json, "state");
      if (absl::StartsWith(state, "JOB_STATE_")) state = state.substr(10);
      if (state == "SUCCEEDED" || state == "FAILED" || state == "CANCELLED") break;
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    if (cancelled.count(id)) {
      // A cancel acknowledged while it ran may lose to the job's end.
      EXPECT_TRUE(state == "CANCELLED" || state == "SUCCEEDED") << id << ": " << json;
    } else {
      ASSERT_EQ(state, "SUCCEEDED") << id << ": " << json;
    }
    // No attempt after the first checkpoint started from step 0.
    CommandResult watch = daemon->Ftctl({"watch", id});
    ASSERT_EQ(watch.exit_code == 0 || state != "SUCCEEDED", true) << watch.err;
    bool checkpointed = false, awaiting = false;
    for (absl::string_view line : absl::StrSplit(watch.out, '\n')) {
      if (absl::StrContains(line, "checkpoint: step ")) checkpointed = true;
      if (absl::StrContains(line, "QUEUED -> RUNNING")) awaiting = checkpointed;
      if (awaiting && absl::StrContains(line, "resumed from step ")) {
        awaiting = false;
        ++resumes;
        // "lost N steps (T s) of work"
        const size_t at = line.find("steps (");
        double s = 0;
        if (at != absl::string_view::npos &&
            absl::SimpleAtod(line.substr(at + 7, line.find(' ', at + 7) - at - 7), &s)) {
          lost_seconds += s;
        }
      }
      if (awaiting && absl::StrContains(line, " step ") && absl::StrContains(line, "/")) {
        if (absl::StrContains(line, "epoch ") && absl::StrContains(line, "samples/s")) {
          ++restarts_from_zero;
          ADD_FAILURE() << id << " trained again without resuming: " << line;
          awaiting = false;
        }
      }
    }
    if (state != "SUCCEEDED") continue;
    // Its model is whole where the result says, and scores what it reported.
    const std::string output = JsonField(json, "output_dir");
    ASSERT_FALSE(output.empty()) << json;
    for (const char* file : {"config.json", "vocab.txt", "model.safetensors"}) {
      EXPECT_TRUE(std::filesystem::exists(output + "/" + file)) << output << "/" << file;
    }
    // Its checkpoints go just after its end is durable (or at the next start,
    // where a kill came in between).
    const std::string checkpoints = dir_.Sub("ftd-data/jobs/" + id + "/checkpoints");
    const auto gone_by = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::filesystem::exists(checkpoints) && std::chrono::steady_clock::now() < gone_by) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    EXPECT_FALSE(std::filesystem::exists(checkpoints)) << id;
    v1::Dataset valid;
    valid.set_path(dir_.Sub("data/valid.csv"));
    valid.set_format(v1::DATASET_FORMAT_CSV);
    valid.set_text_column("text");
    valid.set_label_column("label");
    absl::StatusOr<v1::Evaluation> again = training::EvaluateModelFolder(output, valid, 16, 16);
    ASSERT_TRUE(again.ok()) << again.status();
    double reported = -1;
    // The job exports its best validation point's weights (the default with
    // validation): the model evaluates to that point's accuracy.
    EXPECT_EQ(JsonField(json, "exported_weights"), "EXPORT_WEIGHTS_BEST") << json;
    ASSERT_TRUE(absl::SimpleAtod(JsonField(json, "best_validation_accuracy"), &reported)) << json;
    EXPECT_NEAR(again->accuracy(), reported, 1e-9) << id;
    ++checked_models;
  }
  // Nothing staged is visible in the jobs' folders.
  for (const auto& job : std::filesystem::directory_iterator(dir_.Sub("ftd-data/jobs"))) {
    for (const auto& entry : std::filesystem::directory_iterator(job.path())) {
      const std::string name = entry.path().filename().string();
      EXPECT_FALSE(absl::StrContains(name, "staging") || absl::EndsWith(name, ".tmp") ||
                   absl::EndsWith(name, ".old"))
          << entry.path();
    }
  }
  EXPECT_EQ(restarts_from_zero, 0);
  std::printf(
      "kill9: %zu jobs (%zu cancelled), %d kills, %d resumes from a checkpoint, %.2f s of work "
      "lost per resume on average, %d models checked, 0 lost, 0 corrupted\n",
      acknowledged.size(), cancelled.size(), kill_count, resumes,
      resumes > 0 ? lost_seconds / resumes : 0.0, checked_models);
}

}  // namespace
}  // namespace ftd
