#include "storage/file_store.h"

#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <memory>

#include "absl/strings/str_cat.h"
#include "common/fs_util.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "storage/database.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace ftd::storage {
namespace {

namespace fs = std::filesystem;
using ::ftd::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

v1::FileEntry Entry(const std::string& name, const std::string& content) {
  v1::FileEntry e;
  e.set_name(name);
  e.set_size(static_cast<int64_t>(content.size()));
  e.set_sha256(Sha256::Hex(content));
  return e;
}

std::vector<std::string> Names(const fs::path& dir) {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) names.push_back(e.path().filename());
  std::sort(names.begin(), names.end());
  return names;
}

class FileStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { Open(); }

  void Open(IdScheme ids = IdScheme::kSequential) {
    store_.reset();
    database_.reset();
    ASSERT_OK_AND_ASSIGN(database_,
                         Database::Open({dir_.Sub("db"), {FileStore::kColumnFamily}, {}}));
    FileStore::Options options;
    options.root = dir_.Sub("files");
    options.database = database_.get();
    options.ids = ids;
    ASSERT_OK_AND_ASSIGN(store_, FileStore::Open(options));
  }

  // Uploads `files` (name, content) in chunks of `chunk` bytes.
  absl::StatusOr<v1::File> Put(const std::vector<std::pair<std::string, std::string>>& files,
                               size_t chunk = 3) {
    std::vector<v1::FileEntry> entries;
    std::string all;
    for (const auto& [name, content] : files) {
      entries.push_back(Entry(name, content));
      all += content;
    }
    ASSIGN_OR_RETURN(std::unique_ptr<FileStore::Upload> upload, store_->BeginUpload(entries));
    for (size_t i = 0; i < all.size(); i += chunk) {
      RETURN_IF_ERROR(upload->Write(std::string_view(all).substr(i, chunk)));
    }
    v1::File file;
    file.set_kind(v1::FILE_KIND_MODEL);
    file.set_display_name("m");
    return store_->Commit(std::move(upload), file);
  }

  ftd::testing::TempDir dir_;
  std::unique_ptr<Database> database_;
  std::unique_ptr<FileStore> store_;
};

TEST_F(FileStoreTest, ChunksAcrossEntriesMakeAFolderOfTheFilesUnderASequentialId) {
  ASSERT_OK_AND_ASSIGN(
      v1::File a,
      Put({{"config.json", "{\"a\": 1}"}, {"empty.txt", ""}, {"vocab.txt", "[PAD]\n[UNK]\n"}}));
  EXPECT_EQ(a.id(), "file-1");
  EXPECT_EQ(a.bytes(), 8 + 12);
  EXPECT_EQ(a.entries_size(), 3);
  EXPECT_TRUE(a.has_create_time());
  const fs::path folder = store_->ObjectPath(a.id());
  EXPECT_THAT(Names(folder), ElementsAre("config.json", "empty.txt", "vocab.txt"));
  ASSERT_OK_AND_ASSIGN(std::string vocab, ReadFile((folder / "vocab.txt").string()));
  EXPECT_EQ(vocab, "[PAD]\n[UNK]\n");
  // Stored read-only.
  struct stat st;
  ASSERT_EQ(::stat((folder / "vocab.txt").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0222, 0u);
  ASSERT_OK_AND_ASSIGN(v1::File b, Put({{"x.csv", "text,label\na,b\n"}}));
  EXPECT_EQ(b.id(), "file-2");
  EXPECT_EQ(store_->List()[0].id(), "file-2");  // newest first
}

TEST_F(FileStoreTest, TheSameBytesAreStoredOnceAndFreedWithTheirLastFile) {
  const std::string weights(10000, 'w');
  ASSERT_OK_AND_ASSIGN(v1::File a, Put({{"model.safetensors", weights}}, 4096));
  ASSERT_OK_AND_ASSIGN(v1::File b, Put({{"model.safetensors", weights}, {"extra", "e"}}, 4096));
  EXPECT_EQ(store_->stored_bytes(), 10001);
  EXPECT_EQ(Names(dir_.Sub("files/blobs")).size(), 2u);
  ASSERT_OK_AND_ASSIGN(int64_t freed, store_->Delete(a.id()));
  EXPECT_EQ(freed, 0);  // b shares its weights
  EXPECT_FALSE(fs::exists(store_->ObjectPath(a.id())));
  ASSERT_OK_AND_ASSIGN(freed, store_->Delete(b.id()));
  EXPECT_EQ(freed, 10001);
  EXPECT_EQ(store_->stored_bytes(), 0);
  EXPECT_THAT(Names(dir_.Sub("files/blobs")), IsEmpty());
  EXPECT_THAT(store_->Delete(b.id()), StatusIs(absl::StatusCode::kNotFound, HasSubstr("file-2")));
}

TEST_F(FileStoreTest, AWrongDigestOrTooManyBytesOrAnAbandonedUploadLeavesNothing) {
  std::vector<v1::FileEntry> entries = {Entry("a", "aaaa"), Entry("b", "bbbb")};
  entries[1].set_sha256(Sha256::Hex("cccc"));
  {
    ASSERT_OK_AND_ASSIGN(auto upload, store_->BeginUpload(entries));
    EXPECT_OK(upload->Write("aaaab"));
    EXPECT_THAT(upload->Write("bbb"),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("\"b\" have SHA-256")));
    EXPECT_EQ(upload->failed_entry(), 1u);
  }
  {
    ASSERT_OK_AND_ASSIGN(auto upload, store_->BeginUpload({Entry("a", "aaaa")}));
    EXPECT_THAT(upload->Write("aaaaa"),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("more bytes")));
  }
  {
    ASSERT_OK_AND_ASSIGN(auto upload, store_->BeginUpload({Entry("a", "aaaa")}));
    EXPECT_OK(upload->Write("aa"));
    EXPECT_THAT(store_->Commit(std::move(upload), v1::File()),
                StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("2 of 4 bytes")));
  }
  EXPECT_THAT(Names(dir_.Sub("files/staging")), IsEmpty());
  EXPECT_THAT(Names(dir_.Sub("files/blobs")), IsEmpty());
  EXPECT_THAT(Names(dir_.Sub("files/objects")), IsEmpty());
  EXPECT_EQ(store_->size(), 0u);
}

TEST_F(FileStoreTest, FilesSurviveAReopenAndWhatACrashLeftHalfDoneIsRemoved) {
  ASSERT_OK_AND_ASSIGN(v1::File a, Put({{"a.csv", "text,label\nx,y\n"}}));
  ASSERT_OK_AND_ASSIGN(v1::File b, Put({{"b.csv", "text,label\nz,w\n"}}));
  ASSERT_OK(store_->Delete(b.id()).status());
  // A crash mid-upload, mid-commit (a folder without a record) and
  // mid-delete (a blob no file links).
  fs::create_directories(dir_.Sub("files/staging/7"));
  std::ofstream(dir_.Sub("files/staging/7/part")) << "half";
  fs::create_directories(dir_.Sub("files/objects/file-9"));
  std::ofstream(dir_.Sub("files/blobs/0123")) << "orphan";
  Open();
  ASSERT_OK_AND_ASSIGN(v1::File read, store_->Get("file-1"));
  EXPECT_EQ(read.entries(0).sha256(), a.entries(0).sha256());
  EXPECT_THAT(Names(dir_.Sub("files/staging")), IsEmpty());
  EXPECT_THAT(Names(dir_.Sub("files/objects")), ElementsAre("file-1"));
  EXPECT_EQ(Names(dir_.Sub("files/blobs")).size(), 1u);
  EXPECT_EQ(store_->stored_bytes(), a.bytes());
  // Ids are not reused, even the deleted newest one's.
  ASSERT_OK_AND_ASSIGN(v1::File c, Put({{"c.csv", "text,label\nq,r\n"}}));
  EXPECT_EQ(c.id(), "file-3");
}

// A commit refused after its write's log append landed leaves no folder (its
// undo removed it), yet its record can come back at the reopen: a file with
// nothing in it, counting against the limits. The reopen removes it.
TEST_F(FileStoreTest, ARecordWhoseFilesAreGoneIsRemovedAtTheNextOpen) {
  ASSERT_OK_AND_ASSIGN(v1::File a, Put({{"a.csv", "text,label\nx,y\n"}}));
  ASSERT_OK_AND_ASSIGN(v1::File b, Put({{"b.csv", "text,label\nz,w\n"}}));
  fs::remove_all(dir_.Sub("files/objects/" + b.id()));  // what the refused commit's undo removed
  Open();
  EXPECT_THAT(store_->Get(b.id()), StatusIs(absl::StatusCode::kNotFound, HasSubstr(b.id())));
  EXPECT_EQ(store_->List().size(), 1u);
  EXPECT_EQ(store_->stored_bytes(), a.bytes());
  Open();  // and stays removed
  EXPECT_THAT(store_->Get(b.id()), StatusIs(absl::StatusCode::kNotFound, HasSubstr(b.id())));
  ASSERT_OK_AND_ASSIGN(v1::File c, Put({{"c.csv", "text,label\nq,r\n"}}));
  EXPECT_EQ(c.id(), "file-3");
}

// Opaque ids (for tenants) are canonical ids, survive a reopen, list
// newest first and go on from a sequential store's numbers.
TEST_F(FileStoreTest, OpaqueIdsAreCanonicalAndGoOnFromSequentialOnes) {
  ASSERT_OK_AND_ASSIGN(v1::File a, Put({{"a.csv", "text,label\nx,y\n"}}));
  EXPECT_EQ(a.id(), "file-1");
  Open(IdScheme::kOpaque);
  ASSERT_OK_AND_ASSIGN(v1::File b, Put({{"b.csv", "text,label\nz,w\n"}}));
  EXPECT_EQ(b.id().size(), 5u + 19u) << b.id();
  EXPECT_EQ(absl::StrCat("file-", FileNumber(b.id())), b.id());
  EXPECT_TRUE(fs::is_directory(store_->ObjectPath(b.id())));
  Open(IdScheme::kOpaque);
  ASSERT_OK_AND_ASSIGN(v1::File read, store_->Get(b.id()));
  EXPECT_EQ(read.entries(0).sha256(), b.entries(0).sha256());
  ASSERT_OK_AND_ASSIGN(v1::File c, Put({{"c.csv", "text,label\nq,r\n"}}));
  EXPECT_GT(FileNumber(c.id()), FileNumber(b.id()));
  std::vector<std::string> listed;
  for (const v1::File& file : store_->List()) listed.push_back(file.id());
  EXPECT_THAT(listed, ElementsAre(c.id(), b.id(), a.id()));
}

TEST(FileNumberTest, OnlyCanonicalIdsHaveANumber) {
  EXPECT_EQ(FileNumber("file-12"), 12u);
  for (const char* bad : {"file-", "file-0", "file-012", "file-1a", "job-1", "file--1", ""}) {
    EXPECT_EQ(FileNumber(bad), 0u) << bad;
  }
}

}  // namespace
}  // namespace ftd::storage
