// Files through the API, with the real ftd and ftctl: uploads (a
// multi-megabyte dataset in chunks, a model folder), a job from uploaded
// ids, the download of its model re-scored from the downloaded files, and
// uploads that must keep nothing (a wrong digest, an interrupted stream),
// and deletion refused while a job uses a file.
#include <chrono>
#include <filesystem>
#include <memory>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/fs_util.h"
#include "common/sha256.h"
#include "ftd/v1/ftd.grpc.pb.h"
#include "gmock/gmock.h"
#include "grpcpp/create_channel.h"
#include "gtest/gtest.h"
#include "server/training/engine/bert_trainer.h"
#include "tests/testing/ftd_daemon.h"
#include "tests/testing/temp_dir.h"
#include "tests/testing/tiny_bert.h"

namespace ftd {
namespace {

namespace fs = std::filesystem;
using ::ftd::testing::CommandResult;
using ::ftd::testing::FtdDaemon;
using ::testing::HasSubstr;

// "file-3" from ftctl upload's line.
std::string FileId(const std::string& out) {
  const size_t at = out.find("file-");
  if (at == std::string::npos) return "";
  return out.substr(at, out.find(' ', at) - at);
}

std::string JsonField(const std::string& json, const std::string& name) {
  const std::string key = "\"" + name + "\": ";
  const size_t at = json.find(key);
  if (at == std::string::npos) return "";
  size_t end = json.find_first_of(",\n}", at + key.size());
  std::string value = json.substr(at + key.size(), end - at - key.size());
  if (!value.empty() && value.front() == '"') value = value.substr(1, value.size() - 2);
  return value;
}

class FilesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ftd::testing::WriteTinyBert(dir_.Sub("client/tiny"));
    ftd::testing::WriteSentimentCsv(dir_.Sub("client/train.csv"), 256, 1);
    ftd::testing::WriteSentimentCsv(dir_.Sub("client/valid.csv"), 128, 2);
    fs::create_directories(dir_.Sub("roots"));
  }

  // The client's files lie outside the daemon's data roots: only uploads
  // bring them in.
  std::unique_ptr<FtdDaemon> Start(int cpu_slots) {
    return std::make_unique<FtdDaemon>(FtdDaemon::Options{FTD_BINARY,
                                                          FTCTL_BINARY,
                                                          dir_.Sub("ftd-data"),
                                                          dir_.Sub("roots"),
                                                          cpu_slots,
                                                          dir_.Sub("ftd.log"),
                                                          {}});
  }

  // Nothing staged is left, and only these many objects.
  void ExpectStored(size_t objects) {
    EXPECT_TRUE(fs::is_empty(dir_.Sub("ftd-data/files/staging")));
    size_t n = 0;
    for (const auto& e : fs::directory_iterator(dir_.Sub("ftd-data/files/objects"))) {
      (void)e;
      ++n;
    }
    EXPECT_EQ(n, objects);
  }

  ftd::testing::TempDir dir_;
};

TEST_F(FilesTest, AJobFromUploadsIsDownloadedAndItsModelScoresWhatTheJobReported) {
  auto daemon = Start(/*cpu_slots=*/1);
  // A multi-megabyte dataset goes up in 1 MiB chunks and is described.
  ftd::testing::WriteSentimentCsv(dir_.Sub("client/big.csv"), 80000, 7);
  ASSERT_GT(fs::file_size(dir_.Sub("client/big.csv")), 2u << 20);
  CommandResult big = daemon->Ftctl({"upload", dir_.Sub("client/big.csv")});
  ASSERT_EQ(big.exit_code, 0) << big.err;
  EXPECT_THAT(big.out, HasSubstr("CSV, 80000 rows, columns text,label"));

  CommandResult model = daemon->Ftctl({"upload", dir_.Sub("client/tiny"), "--name=tiny"});
  ASSERT_EQ(model.exit_code, 0) << model.err;
  EXPECT_THAT(model.out, HasSubstr("model  tiny"));
  const std::string model_id = FileId(model.out);
  // The model by id, the datasets uploaded by submit from local paths.
  CommandResult run = daemon->Ftctl(
      {"submit", "--model=" + model_id, "--train=" + dir_.Sub("client/train.csv"),
       "--validation=" + dir_.Sub("client/valid.csv"), "--epochs=6", "--batch_size=16",
       "--learning_rate=0.003", "--max_seq_length=16", "--seed=3", "--watch"});
  ASSERT_EQ(run.exit_code, 0) << run.out << run.err;
  EXPECT_THAT(run.err, HasSubstr("as file-3"));
  EXPECT_THAT(run.err, HasSubstr("as file-4"));
  CommandResult get = daemon->Ftctl({"get", "job-1", "--json"});
  EXPECT_EQ(JsonField(get.out, "base_model_file_id"), model_id) << get.out;
  EXPECT_EQ(JsonField(get.out, "train"), Sha256::Hex(*ReadFile(dir_.Sub("client/train.csv"))));

  CommandResult download = daemon->Ftctl({"download", "job-1", dir_.Sub("client/out")});
  ASSERT_EQ(download.exit_code, 0) << download.err;
  for (const char* name : {"config.json", "vocab.txt", "model.safetensors"}) {
    EXPECT_EQ(*ReadFile(dir_.Sub(std::string("client/out/") + name)),
              *ReadFile(dir_.Sub(std::string("ftd-data/jobs/job-1/model/") + name)))
        << name;
  }
  v1::Dataset valid;
  valid.set_path(dir_.Sub("client/valid.csv"));
  valid.set_format(v1::DATASET_FORMAT_CSV);
  valid.set_text_column("text");
  valid.set_label_column("label");
  absl::StatusOr<v1::Evaluation> again =
      training::EvaluateModelFolder(dir_.Sub("client/out"), valid, 16, 16);
  ASSERT_TRUE(again.ok()) << again.status();
  double reported = -1;
  // The job exports its best validation point's weights (the default with
  // validation): the model evaluates to that point's accuracy.
  EXPECT_EQ(JsonField(get.out, "exported_weights"), "EXPORT_WEIGHTS_BEST") << get.out;
  ASSERT_TRUE(absl::SimpleAtod(JsonField(get.out, "best_validation_accuracy"), &reported))
      << get.out;
  EXPECT_NEAR(again->accuracy(), reported, 1e-9);
  EXPECT_GT(reported, 0.9);
  CommandResult metrics =
      daemon->Ftctl({"download", "job-1", dir_.Sub("client/metrics"), "--artifact=metrics"});
  ASSERT_EQ(metrics.exit_code, 0) << metrics.err;
  EXPECT_THAT(*ReadFile(dir_.Sub("client/metrics/metrics.json")), HasSubstr("validation_accuracy"));
  // A second download into the same folder is refused; it keeps the first.
  CommandResult twice = daemon->Ftctl({"download", "job-1", dir_.Sub("client/out")});
  EXPECT_NE(twice.exit_code, 0);
  EXPECT_THAT(twice.err, HasSubstr("exists and is not an empty folder"));
  // The job has ended: its files can go. The same weights a second time
  // are stored once.
  CommandResult same = daemon->Ftctl({"upload", dir_.Sub("client/tiny")});
  ASSERT_EQ(same.exit_code, 0) << same.err;
  CommandResult deleted = daemon->Ftctl({"files", "delete", model_id});
  EXPECT_EQ(deleted.exit_code, 0) << deleted.err;
  EXPECT_THAT(deleted.out, HasSubstr("(0 B freed)"));
}

TEST_F(FilesTest, BadOrInterruptedUploadsKeepNothingAndAFileInUseStays) {
  auto daemon = Start(/*cpu_slots=*/0);  // jobs stay queued
  auto channel = grpc::CreateChannel(daemon->address(), grpc::InsecureChannelCredentials());
  auto stub = v1::FineTuning::NewStub(channel);
  const std::string content = *ReadFile(dir_.Sub("client/train.csv"));
  v1::UploadFileRequest header;
  header.mutable_header()->set_kind(v1::FILE_KIND_DATASET);
  v1::FileEntry* entry = header.mutable_header()->add_entries();
  entry->set_name("train.csv");
  entry->set_size(static_cast<int64_t>(content.size()));
  entry->set_sha256(Sha256::Hex(content + "x"));  // not these bytes'
  v1::UploadFileRequest chunk;
  chunk.set_chunk(content);
  {
    grpc::ClientContext context;
    v1::File file;
    auto writer = stub->UploadFile(&context, &file);
    writer->Write(header);
    writer->Write(chunk);
    writer->WritesDone();
    grpc::Status status = writer->Finish();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(status.error_message(), HasSubstr("header.entries[0].sha256: the bytes sent"));
  }
  // Half the bytes, then the client goes away or ends the stream.
  entry->set_sha256(Sha256::Hex(content));
  auto half_upload = [&](bool cancel) {
    grpc::ClientContext context;
    v1::File file;
    auto writer = stub->UploadFile(&context, &file);
    writer->Write(header);
    v1::UploadFileRequest half;
    half.set_chunk(content.substr(0, content.size() / 2));
    writer->Write(half);
    if (cancel) {
      context.TryCancel();
    } else {
      writer->WritesDone();
    }
    return writer->Finish();
  };
  EXPECT_FALSE(half_upload(/*cancel=*/true).ok());
  grpc::Status ended = half_upload(/*cancel=*/false);
  EXPECT_EQ(ended.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(ended.error_message(), HasSubstr("nothing was kept"));
  // The server drops a cancelled stream's upload when the call is done.
  for (int i = 0; i < 50 && !fs::is_empty(dir_.Sub("ftd-data/files/staging")); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ExpectStored(0);
  EXPECT_TRUE(fs::is_empty(dir_.Sub("ftd-data/files/blobs")));

  // A queued job pins the files it names.
  CommandResult submitted =
      daemon->Ftctl({"submit", "--model=" + dir_.Sub("client/tiny"),
                     "--train=" + dir_.Sub("client/train.csv"), "--epochs=1"});
  ASSERT_EQ(submitted.exit_code, 0) << submitted.err;
  ExpectStored(2);
  CommandResult refused = daemon->Ftctl({"files", "delete", "file-1"});
  EXPECT_NE(refused.exit_code, 0);
  EXPECT_THAT(refused.err, HasSubstr("FAILED_PRECONDITION: file-1 is in use by job-1"));
  EXPECT_THAT(daemon->Ftctl({"files", "file-1"}).out, HasSubstr("in use by job-1"));
  CommandResult early = daemon->Ftctl({"download", "job-1", dir_.Sub("client/early")});
  EXPECT_THAT(early.err, HasSubstr("FAILED_PRECONDITION: job-1 is QUEUED"));
  EXPECT_FALSE(fs::exists(dir_.Sub("client/early")));
  CommandResult not_ended = daemon->Ftctl({"delete", "job-1"});
  EXPECT_EQ(not_ended.exit_code, 1);
  EXPECT_THAT(not_ended.err, HasSubstr("FAILED_PRECONDITION: job-1 is QUEUED; only an ended job"));
  ASSERT_EQ(daemon->Ftctl({"cancel", "job-1"}).exit_code, 0);
  CommandResult deleted = daemon->Ftctl({"files", "delete", "file-1"});
  EXPECT_EQ(deleted.exit_code, 0) << deleted.err;
  ExpectStored(1);
  // A spec naming a deleted file is refused at submit.
  CommandResult gone = daemon->Ftctl({"submit", "--model=file-1", "--train=file-2"});
  EXPECT_THAT(gone.err, HasSubstr("INVALID_ARGUMENT: base_model_file_id: no uploaded file"));
}

}  // namespace
}  // namespace ftd
