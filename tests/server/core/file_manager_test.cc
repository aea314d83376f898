#include "server/core/file_manager.h"

#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/fs_util.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/core/error_details.h"
#include "storage/database.h"
#include "storage/file_store.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"
#include "tests/testing/tiny_bert.h"

namespace ftd::core {
namespace {

namespace fs = std::filesystem;
using ::ftd::testing::StatusIs;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

using Files = std::vector<std::pair<std::string, std::string>>;  // name, content

v1::UploadFileRequest::Header Header(v1::FileKind kind, const Files& files) {
  v1::UploadFileRequest::Header header;
  header.set_kind(kind);
  for (const auto& [name, content] : files) {
    v1::FileEntry* e = header.add_entries();
    e->set_name(name);
    e->set_size(static_cast<int64_t>(content.size()));
    e->set_sha256(Sha256::Hex(content));
  }
  return header;
}

std::string Concat(const Files& files) {
  std::string all;
  for (const auto& [name, content] : files) all += content;
  return all;
}

class FileManagerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(database_, storage::Database::Open(
                                        {dir_.Sub("db"), {storage::FileStore::kColumnFamily}, {}}));
    ASSERT_OK_AND_ASSIGN(store_, storage::FileStore::Open({dir_.Sub("files"), database_.get()}));
    MakeManager({});
    testing::WriteTinyBert(dir_.Sub("tiny"), 2);
  }

  void MakeManager(FileManager::Options options) {
    options.store = store_.get();
    manager_ = std::make_unique<FileManager>(options);
  }

  // The tiny model's files.
  Files Model() {
    Files files;
    for (const char* name : {"config.json", "vocab.txt", "model.safetensors"}) {
      files.emplace_back(name, *ReadFile(dir_.Sub(std::string("tiny/") + name)));
    }
    return files;
  }

  absl::StatusOr<v1::File> Upload(v1::UploadFileRequest::Header header, const std::string& bytes,
                                  size_t chunk = 7, const Caller& caller = Caller()) {
    ASSIGN_OR_RETURN(std::unique_ptr<FileManager::Upload> upload,
                     manager_->BeginUpload(std::move(header), caller));
    for (size_t i = 0; i < bytes.size(); i += chunk) {
      RETURN_IF_ERROR(upload->Write(std::string_view(bytes).substr(i, chunk)));
    }
    return upload->Finish();
  }

  absl::StatusOr<v1::File> Upload(v1::FileKind kind, const Files& files) {
    return Upload(Header(kind, files), Concat(files));
  }

  // Nothing staged, no blob and no object is left.
  void ExpectNothingKept() {
    for (const char* sub : {"files/staging", "files/blobs", "files/objects"}) {
      EXPECT_TRUE(fs::is_empty(dir_.Sub(sub))) << sub;
    }
    EXPECT_EQ(store_->size(), 0u);
  }

  ftd::testing::TempDir dir_;
  std::unique_ptr<storage::Database> database_;
  std::unique_ptr<storage::FileStore> store_;
  std::unique_ptr<FileManager> manager_;
};

TEST_F(FileManagerTest, ADatasetIsDescribedByItsRowsAndColumns) {
  ASSERT_OK_AND_ASSIGN(v1::File csv,
                       Upload(v1::FILE_KIND_DATASET,
                              {{"train.csv", "text,label,source\n\"a, b\",x,web\nc,y,web\n"}}));
  EXPECT_EQ(csv.display_name(), "train.csv");
  EXPECT_EQ(csv.dataset().format(), v1::DATASET_FORMAT_CSV);
  EXPECT_EQ(csv.dataset().rows(), 2);
  EXPECT_THAT(csv.dataset().columns(), ElementsAre("text", "label", "source"));
  EXPECT_EQ(csv.sha256(), csv.entries(0).sha256());
  ASSERT_OK_AND_ASSIGN(
      v1::File jsonl,
      Upload(v1::FILE_KIND_DATASET,
             {{"v.jsonl", "{\"text\": \"a\", \"label\": 1}\n\n{\"text\": \"b\"}\n"}}));
  EXPECT_EQ(jsonl.dataset().format(), v1::DATASET_FORMAT_JSONL);
  EXPECT_EQ(jsonl.dataset().rows(), 2);
  EXPECT_THAT(jsonl.dataset().columns(), ElementsAre("label", "text"));
  // A job finds it where the store keeps it.
  ASSERT_OK_AND_ASSIGN(
      FileManager::Resolved resolved,
      manager_->Resolve("train_dataset.file_id", csv.id(), v1::FILE_KIND_DATASET, Caller{}));
  EXPECT_EQ(*ReadFile(resolved.path), "text,label,source\n\"a, b\",x,web\nc,y,web\n");
  EXPECT_THAT(manager_->Resolve("base_model_file_id", csv.id(), v1::FILE_KIND_MODEL, Caller{}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("base_model_file_id: file-1 is a dataset, not a model")));
  EXPECT_THAT(
      manager_->Resolve("train_dataset.file_id", "file-99", v1::FILE_KIND_DATASET, Caller{}),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no uploaded file")));
}

TEST_F(FileManagerTest, AModelIsCheckedAndDescribedAndLoadsFromItsFolder) {
  v1::UploadFileRequest::Header header = Header(v1::FILE_KIND_MODEL, Model());
  header.set_display_name("tiny-bert");
  ASSERT_OK_AND_ASSIGN(v1::File model, Upload(header, Concat(Model()), 1000));
  EXPECT_EQ(model.model().model_type(), "bert");
  EXPECT_EQ(model.model().layers(), 2);
  EXPECT_EQ(model.model().hidden_size(), 32);
  EXPECT_EQ(model.sha256().size(), 64u);
  ASSERT_OK_AND_ASSIGN(
      FileManager::Resolved resolved,
      manager_->Resolve("base_model_file_id", model.id(), v1::FILE_KIND_MODEL, Caller{}));
  EXPECT_TRUE(fs::is_regular_file(resolved.path + "/config.json"));
  EXPECT_TRUE(fs::is_regular_file(resolved.path + "/model.safetensors"));
}

TEST_F(FileManagerTest, BadHeadersAreRefusedNamingTheField) {
  struct Case {
    v1::UploadFileRequest::Header header;
    std::string error;
  };
  std::vector<Case> cases;
  cases.push_back({Header(v1::FILE_KIND_UNSPECIFIED, {{"a.csv", "x"}}), "header.kind:"});
  cases.push_back({Header(v1::FILE_KIND_DATASET, {}), "header.entries: is required"});
  cases.push_back({Header(v1::FILE_KIND_DATASET, {{"a.csv", "x"}, {"b.csv", "y"}}),
                   "header.entries: a dataset is one file"});
  for (const char* name : {"../a.csv", "a/b.csv", ".hidden.csv", ""}) {
    cases.push_back({Header(v1::FILE_KIND_DATASET, {{name, "x"}}), "header.entries[0].name:"});
  }
  cases.push_back({Header(v1::FILE_KIND_DATASET, {{"a.txt", "x"}}), "header.format:"});
  cases.push_back({Header(v1::FILE_KIND_MODEL, {{"config.json", "{}"}, {"config.json", "{}"}}),
                   "header.entries[1].name: \"config.json\" comes twice"});
  cases.push_back({Header(v1::FILE_KIND_MODEL, {{"config.json", "{}"}, {"model.safetensors", ""}}),
                   "header.entries: a model needs vocab.txt"});
  cases.push_back(
      {Header(v1::FILE_KIND_MODEL, {{"config.json", "{}"}, {"vocab.txt", "a"}}), "weights"});
  Case bad_digest{Header(v1::FILE_KIND_DATASET, {{"a.csv", "x"}}), "header.entries[0].sha256:"};
  bad_digest.header.mutable_entries(0)->set_sha256("ABC");
  cases.push_back(bad_digest);
  Case negative{Header(v1::FILE_KIND_DATASET, {{"a.csv", "x"}}), "header.entries[0].size:"};
  negative.header.mutable_entries(0)->set_size(-1);
  cases.push_back(negative);
  for (const Case& c : cases) {
    absl::StatusOr<std::unique_ptr<FileManager::Upload>> upload = manager_->BeginUpload(c.header);
    EXPECT_THAT(upload, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.error)))
        << c.header.DebugString();
    if (!upload.ok()) EXPECT_EQ(ReasonOf(upload.status()), "INVALID_FIELD");
  }
  ExpectNothingKept();
}

TEST_F(FileManagerTest, WrongBytesOrContentOrAnEarlyEndKeepNothingAndSayWhy) {
  // A digest that does not match the bytes sent.
  v1::UploadFileRequest::Header header = Header(v1::FILE_KIND_DATASET, {{"a.csv", "text\nx\n"}});
  EXPECT_THAT(Upload(header, "text\ny\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("header.entries[0].sha256:")));
  // More bytes than declared.
  EXPECT_THAT(Upload(header, "text\nx\nmore"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("chunk: more bytes")));
  // An upload that ends early.
  {
    ASSERT_OK_AND_ASSIGN(auto upload, manager_->BeginUpload(header));
    ASSERT_OK(upload->Write("tex"));
    EXPECT_THAT(upload->Finish(), StatusIs(absl::StatusCode::kInvalidArgument,
                                           HasSubstr("ended after 3 of the 7 bytes")));
  }
  // Content that does not parse; the error names the entry, not its rows.
  const std::string secret = "text,label\nthe secret row,x,extra\n";
  absl::StatusOr<v1::File> ragged = Upload(v1::FILE_KIND_DATASET, {{"a.csv", secret}});
  EXPECT_THAT(ragged, StatusIs(absl::StatusCode::kInvalidArgument,
                               HasSubstr("a.csv:2: expected 2 fields, got 3")));
  EXPECT_THAT(std::string(ragged.status().message()), Not(HasSubstr("secret")));
  EXPECT_THAT(Upload(v1::FILE_KIND_DATASET, {{"a.jsonl", "text,label\na,b\n"}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("is it CSV?")));
  EXPECT_THAT(Upload(v1::FILE_KIND_DATASET, {{"a.csv", "text,label\n"}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no rows")));
  Files gpt = Model();
  gpt[0].second = "{\"model_type\": \"gpt2\", \"num_hidden_layers\": 2}";
  // The file's value is not repeated: only that it is not BERT.
  EXPECT_THAT(Upload(v1::FILE_KIND_MODEL, gpt),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("model_type is not \"bert\""), Not(HasSubstr("gpt2")))));
  Files broken = Model();
  broken[0].second = "{\"num_hidden_layers\": secret-value}";
  absl::StatusOr<v1::File> not_json = Upload(v1::FILE_KIND_MODEL, broken);
  EXPECT_THAT(not_json, StatusIs(absl::StatusCode::kInvalidArgument,
                                 HasSubstr("model/config.json is not a JSON object")));
  EXPECT_THAT(std::string(not_json.status().message()), Not(HasSubstr("secret")));
  Files garbage = Model();
  garbage[2].second = "not safetensors at all";
  EXPECT_THAT(Upload(v1::FILE_KIND_MODEL, garbage),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("header.entries[2]: model/model.safetensors: not a valid "
                                 "safetensors file")));
  Files sharded = Model();
  sharded[2] = {"model.safetensors.index.json",
                "{\"weight_map\": {\"a\": \"model-00001-of-00002.safetensors\"}}"};
  EXPECT_THAT(Upload(v1::FILE_KIND_MODEL, sharded),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("names a shard, \"model/model-00001-of-00002.safetensors\", "
                                 "that the folder does not have")));
  ExpectNothingKept();
}

TEST_F(FileManagerTest, LimitsAreNamedErrorsAndUploadsUnderWayCount) {
  MakeManager({nullptr, /*max_file_bytes=*/100, /*max_stored_bytes=*/150, /*max_files=*/3,
               /*max_uploads=*/2});
  const std::string rows = "text,label\n" + std::string(60, 'a') + ",b\n";  // 74 bytes
  EXPECT_THAT(manager_->BeginUpload(Header(v1::FILE_KIND_DATASET, {{"a.csv", rows + rows}})),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("--max_file_mb")));
  ASSERT_OK_AND_ASSIGN(auto first,
                       manager_->BeginUpload(Header(v1::FILE_KIND_DATASET, {{"a.csv", rows}})));
  ASSERT_OK_AND_ASSIGN(auto second,
                       manager_->BeginUpload(Header(v1::FILE_KIND_DATASET, {{"b.csv", rows}})));
  absl::StatusOr<std::unique_ptr<FileManager::Upload>> third =
      manager_->BeginUpload(Header(v1::FILE_KIND_DATASET, {{"c.csv", "text,label\na,b\n"}}));
  EXPECT_THAT(third, StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("--max_uploads")));
  EXPECT_EQ(ReasonOf(third.status()), "TOO_MANY_UPLOADS");
  second.reset();  // abandoned: its slot and its bytes are free again
  ASSERT_OK(first->Write(rows));
  ASSERT_OK(first->Finish().status());
  first.reset();
  // 74 stored + 77 declared > 150.
  absl::StatusOr<std::unique_ptr<FileManager::Upload>> full =
      manager_->BeginUpload(Header(v1::FILE_KIND_DATASET, {{"d.csv", rows + "xyz"}}));
  EXPECT_THAT(full, StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("--max_files_mb")));
  EXPECT_EQ(ReasonOf(full.status()), "STORAGE_FULL");
  // The same bytes again take no space: they are stored once.
  ASSERT_OK(Upload(v1::FILE_KIND_DATASET, {{"again.csv", rows}}).status());
  ASSERT_OK(Upload(v1::FILE_KIND_DATASET, {{"e.csv", "text,label\na,b\n"}}).status());
  absl::StatusOr<std::unique_ptr<FileManager::Upload>> many =
      manager_->BeginUpload(Header(v1::FILE_KIND_DATASET, {{"f.csv", "text,label\nc,d\n"}}));
  EXPECT_EQ(ReasonOf(many.status()), "TOO_MANY_FILES");
}

// A stalled client cannot hold an upload's place: once idle for the
// timeout, its place and staged bytes go to the next upload that needs
// them, and it is told why.
TEST_F(FileManagerTest, AnIdleUploadGivesUpItsPlaceToTheNextOne) {
  absl::Time now = absl::FromUnixSeconds(1000);
  FileManager::Options options;
  options.max_uploads = 1;
  options.upload_idle_timeout = absl::Seconds(60);
  options.now = [&now] { return now; };
  MakeManager(options);
  const Files data = {{"train.csv", "text,label\nhi,a\nho,b\n"}};
  ASSERT_OK_AND_ASSIGN(auto stalled, manager_->BeginUpload(Header(v1::FILE_KIND_DATASET, data)));
  ASSERT_OK(stalled->Write(Concat(data).substr(0, 5)));
  now += absl::Seconds(59);  // not idle long enough yet
  absl::Status busy = manager_->BeginUpload(Header(v1::FILE_KIND_DATASET, data)).status();
  EXPECT_EQ(ReasonOf(busy), "TOO_MANY_UPLOADS");
  now += absl::Seconds(1);
  ASSERT_OK_AND_ASSIGN(auto next, manager_->BeginUpload(Header(v1::FILE_KIND_DATASET, data)));
  // The stalled one's staged bytes are gone; only the new one's are there.
  EXPECT_EQ(
      std::distance(fs::directory_iterator(dir_.Sub("files/staging")), fs::directory_iterator()),
      1);
  absl::Status dropped = stalled->Write(Concat(data).substr(5));
  EXPECT_THAT(dropped, StatusIs(absl::StatusCode::kAborted,
                                HasSubstr("sent nothing for 1m (--upload_idle_timeout)")));
  EXPECT_EQ(ReasonOf(dropped), "UPLOAD_IDLE");
  EXPECT_EQ(ReasonOf(stalled->Finish().status()), "UPLOAD_IDLE");
  stalled.reset();  // gives back nothing twice: the place is the new one's
  ASSERT_OK(next->Write(Concat(data)));
  ASSERT_OK(next->Finish().status());
  next.reset();
  ASSERT_OK(Upload(Header(v1::FILE_KIND_DATASET, data), Concat(data)).status());

  // An upload that keeps sending is never dropped.
  ASSERT_OK_AND_ASSIGN(auto steady, manager_->BeginUpload(Header(v1::FILE_KIND_DATASET, data)));
  for (char c : Concat(data)) {
    now += absl::Seconds(30);
    ASSERT_OK(steady->Write(std::string(1, c)));
    EXPECT_EQ(ReasonOf(manager_->BeginUpload(Header(v1::FILE_KIND_DATASET, data)).status()),
              "TOO_MANY_UPLOADS");
  }
  ASSERT_OK(steady->Finish().status());
}

// Each tenant holds at most its share of the storage; another tenant's
// files do not count against it, and its files are not another's to see.
TEST_F(FileManagerTest, EachTenantHoldsAtMostItsShare) {
  FileManager::Options options;
  options.max_tenant_bytes = 100;
  MakeManager(options);
  const Caller alice{"alice", false}, bob{"bob", false};
  auto upload = [&](const Caller& who, const std::string& name, const std::string& content) {
    const Files files = {{name, content}};
    absl::StatusOr<std::unique_ptr<FileManager::Upload>> started =
        manager_->BeginUpload(Header(v1::FILE_KIND_DATASET, files), who);
    if (!started.ok()) return started.status();
    RETURN_IF_ERROR((*started)->Write(Concat(files)));
    return (*started)->Finish().status();
  };
  const std::string rows = "text,label\n" + std::string(60, 'a') + ",b\n";  // 74 bytes
  ASSERT_OK(upload(alice, "a.csv", rows));
  absl::Status full = upload(alice, "b.csv", rows + "c,d\n");
  EXPECT_EQ(ReasonOf(full), "TENANT_STORAGE_FULL");
  EXPECT_THAT(full.message(), HasSubstr("tenant \"alice\""));
  ASSERT_OK(upload(bob, "b.csv", rows + "e,f\n"));
  ASSERT_OK_AND_ASSIGN(v1::ListFilesResponse alices, manager_->List({}, alice));
  ASSERT_EQ(alices.files_size(), 1);
  EXPECT_EQ(alices.files(0).tenant(), "alice");
  EXPECT_THAT(manager_->Get(alices.files(0).id(), bob),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("no file")));
}

// Upload places and file counts per tenant: one tenant's uploads do not
// take every place, nor its files the whole count.
TEST_F(FileManagerTest, EachTenantHasItsShareOfUploadPlacesAndFiles) {
  FileManager::Options options;
  options.max_tenant_uploads = 1;
  options.max_tenant_files = 2;
  options.max_uploads = 2;
  MakeManager(options);
  const Caller alice{"alice", false}, bob{"bob", false}, carol{"carol", false};
  const Files data = {{"t.csv", "text,label\nx,a\n"}};
  ASSERT_OK_AND_ASSIGN(auto first,
                       manager_->BeginUpload(Header(v1::FILE_KIND_DATASET, data), alice));
  ASSERT_OK_AND_ASSIGN(auto bobs, manager_->BeginUpload(Header(v1::FILE_KIND_DATASET, data), bob));
  // The daemon's places are taken too; she is told of her own limit only.
  EXPECT_EQ(ReasonOf(manager_->BeginUpload(Header(v1::FILE_KIND_DATASET, data), alice).status()),
            "TENANT_TOO_MANY_UPLOADS");
  EXPECT_EQ(ReasonOf(manager_->BeginUpload(Header(v1::FILE_KIND_DATASET, data), carol).status()),
            "TOO_MANY_UPLOADS");
  ASSERT_OK(first->Write(Concat(data)));
  ASSERT_OK(first->Finish().status());
  first.reset();
  // Her place is free again; her second file fits, a third does not.
  ASSERT_OK_AND_ASSIGN(auto second,
                       manager_->BeginUpload(Header(v1::FILE_KIND_DATASET, data), alice));
  ASSERT_OK(second->Write(Concat(data)));
  ASSERT_OK(second->Finish().status());
  second.reset();
  absl::Status third = manager_->BeginUpload(Header(v1::FILE_KIND_DATASET, data), alice).status();
  EXPECT_EQ(ReasonOf(third), "TENANT_TOO_MANY_FILES");
  EXPECT_THAT(third.message(), HasSubstr("--max_files_per_tenant"));
  bobs.reset();  // an upload dropped before its end gives its place back too
  EXPECT_OK(manager_->BeginUpload(Header(v1::FILE_KIND_DATASET, data), bob).status());
}

// Files with the same content share their stored bytes. What a user's
// delete says it freed is what its own usage went down by, not whether
// another tenant holds the same bytes (which an admin's delete tells).
TEST_F(FileManagerTest, WhatADeleteFreesTellsAUserNothingOfAnotherTenantsFiles) {
  const Caller alice{"alice", false}, bob{"bob", false}, admin;
  const Files data = {{"a.csv", "text,label\nguessed,content\n"}};
  ASSERT_OK_AND_ASSIGN(v1::File alices,
                       Upload(Header(v1::FILE_KIND_DATASET, data), Concat(data), 7, alice));
  ASSERT_OK_AND_ASSIGN(v1::File bobs,
                       Upload(Header(v1::FILE_KIND_DATASET, data), Concat(data), 7, bob));
  ASSERT_OK_AND_ASSIGN(v1::DeleteFileResponse bobs_delete, manager_->Delete(bobs.id(), bob));
  EXPECT_EQ(bobs_delete.bytes_freed(), bobs.bytes());  // the disk got nothing back
  ASSERT_OK_AND_ASSIGN(v1::File again,
                       Upload(Header(v1::FILE_KIND_DATASET, data), Concat(data), 7, bob));
  ASSERT_OK_AND_ASSIGN(v1::DeleteFileResponse admins_delete, manager_->Delete(again.id(), admin));
  EXPECT_EQ(admins_delete.bytes_freed(), 0);  // alice's file holds the bytes
  ASSERT_OK_AND_ASSIGN(v1::DeleteFileResponse last, manager_->Delete(alices.id(), alice));
  EXPECT_EQ(last.bytes_freed(), alices.bytes());
  ExpectNothingKept();
}

TEST_F(FileManagerTest, AFilePinnedByAJobCannotBeDeletedUntilTheJobEnds) {
  ASSERT_OK_AND_ASSIGN(v1::File a, Upload(v1::FILE_KIND_DATASET, {{"a.csv", "text,label\na,b\n"}}));
  ASSERT_OK(manager_->Pin("submitting", {a.id()}));
  manager_->MovePins("submitting", "job-4");
  ASSERT_OK_AND_ASSIGN(v1::File got, manager_->Get(a.id()));
  EXPECT_THAT(got.in_use_by(), ElementsAre("job-4"));
  absl::StatusOr<v1::DeleteFileResponse> refused = manager_->Delete(a.id());
  EXPECT_THAT(refused, StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("job-4")));
  EXPECT_EQ(ReasonOf(refused.status()), "FILE_IN_USE");
  manager_->Unpin("job-4");
  ASSERT_OK_AND_ASSIGN(v1::DeleteFileResponse deleted, manager_->Delete(a.id()));
  EXPECT_EQ(deleted.bytes_freed(), a.bytes());
  EXPECT_THAT(manager_->Pin("job-5", {a.id()}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("was deleted")));
  EXPECT_THAT(manager_->Delete(a.id()), StatusIs(absl::StatusCode::kNotFound, HasSubstr("file-1")));
  ExpectNothingKept();
}

TEST_F(FileManagerTest, ListingIsNewestFirstInPagesAndByKind) {
  for (int i = 0; i < 5; ++i) {
    ASSERT_OK(
        Upload(v1::FILE_KIND_DATASET, {{"d.csv", "text,label\nrow" + std::to_string(i) + ",b\n"}})
            .status());
  }
  ASSERT_OK(Upload(v1::FILE_KIND_MODEL, Model()).status());
  v1::ListFilesRequest request;
  request.set_page_size(4);
  ASSERT_OK_AND_ASSIGN(v1::ListFilesResponse page, manager_->List(request));
  std::vector<std::string> ids;
  for (const auto& f : page.files()) ids.push_back(f.id());
  EXPECT_THAT(ids, ElementsAre("file-6", "file-5", "file-4", "file-3"));
  request.set_page_token(page.next_page_token());
  ASSERT_OK_AND_ASSIGN(page, manager_->List(request));
  ids.clear();
  for (const auto& f : page.files()) ids.push_back(f.id());
  EXPECT_THAT(ids, ElementsAre("file-2", "file-1"));
  EXPECT_THAT(page.next_page_token(), IsEmpty());
  v1::ListFilesRequest models;
  models.set_kind(v1::FILE_KIND_MODEL);
  ASSERT_OK_AND_ASSIGN(page, manager_->List(models));
  ASSERT_EQ(page.files_size(), 1);
  EXPECT_EQ(page.files(0).id(), "file-6");
  request.set_page_token("x");
  EXPECT_THAT(manager_->List(request),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("page_token")));
}

// An upload is checked as a job will load it, as a submit naming the folder
// by path is (model_check.h's CheckModelFolder); the error names the entry.
TEST_F(FileManagerTest, AModelWhoseHiddenSizeTheHeadsDoNotDivideIsRefusedAtUpload) {
  Files model = Model();
  std::string& config = model[0].second;
  for (auto [from, to] :
       {std::pair<std::string, std::string>{"\"hidden_size\": 32", "\"hidden_size\": 250"},
        {"\"num_attention_heads\": 2", "\"num_attention_heads\": 4"}}) {
    const size_t at = config.find(from);
    ASSERT_NE(at, std::string::npos) << from;
    config.replace(at, from.size(), to);
  }
  absl::StatusOr<v1::File> file = Upload(v1::FILE_KIND_MODEL, model);
  EXPECT_THAT(file, StatusIs(absl::StatusCode::kInvalidArgument,
                             HasSubstr("header.entries: model/config.json: \"hidden_size\" is not "
                                       "a multiple of \"num_attention_heads\"")));
  EXPECT_THAT(std::string(file.status().message()), Not(HasSubstr("250")));
  ExpectNothingKept();
}

TEST_F(FileManagerTest, AnEmptyVocabularyIsRefusedAtUpload) {
  Files model = Model();
  ASSERT_EQ(model[1].first, "vocab.txt");
  model[1].second = "";
  EXPECT_THAT(Upload(v1::FILE_KIND_MODEL, model),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("header.entries[1]: model/vocab.txt: vocab.txt has no [PAD] "
                                 "token")));
  model[1].second = "[PAD]\n[UNK]\n[CLS]\n[MASK]\n";
  EXPECT_THAT(Upload(v1::FILE_KIND_MODEL, model),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("header.entries[1]: model/vocab.txt: vocab.txt has no [SEP] "
                                 "token")));
  ExpectNothingKept();
}

TEST_F(FileManagerTest, AZeroByteShardIsRefusedAtUpload) {
  Files model = Model();
  model[2] = {"model.safetensors.index.json",
              "{\"weight_map\": {\"bert.pooler.dense.bias\": \"model-1.safetensors\"}}"};
  model.emplace_back("model-1.safetensors", "");
  EXPECT_THAT(Upload(v1::FILE_KIND_MODEL, model),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("header.entries[3]: model/model-1.safetensors: not a valid "
                                 "safetensors file: it has 0 bytes")));
  ExpectNothingKept();
}

TEST_F(FileManagerTest, AShardIndexNamingAFileOutsideTheUploadIsRefusedAtUpload) {
  for (const char* shard : {"../model.safetensors", "/etc/x", "sub/../../x"}) {
    Files model = Model();  // its model.safetensors is valid
    model.emplace_back("model.safetensors.index.json",
                       absl::StrCat("{\"weight_map\": {\"a\": \"", shard, "\"}}"));
    model.erase(model.begin() + 2);  // the index alone names the weights
    absl::StatusOr<v1::File> file = Upload(v1::FILE_KIND_MODEL, model);
    EXPECT_THAT(file, StatusIs(absl::StatusCode::kInvalidArgument,
                               HasSubstr("header.entries[2]: model/model.safetensors.index.json: "
                                         "\"weight_map\" maps a tensor to something not a file "
                                         "name in the model's folder")))
        << shard;
    EXPECT_THAT(std::string(file.status().message()), Not(HasSubstr(shard)));
  }
  ExpectNothingKept();
}

}  // namespace
}  // namespace ftd::core
