#include "client/transfer.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/sha256.h"

namespace ftd::client {
namespace {

namespace fs = std::filesystem;

constexpr size_t kChunkBytes = 1 << 20;

absl::StatusOr<v1::FileEntry> DescribeFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::InvalidArgumentError(absl::StrCat(path.string(), ": cannot be read"));
  Sha256 digest;
  std::string buffer(kChunkBytes, '\0');
  int64_t size = 0;
  while (in) {
    in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    const std::streamsize n = in.gcount();
    if (n <= 0) break;
    digest.Update(std::string_view(buffer.data(), static_cast<size_t>(n)));
    size += n;
  }
  if (in.bad()) return absl::InvalidArgumentError(absl::StrCat(path.string(), ": cannot be read"));
  v1::FileEntry entry;
  entry.set_name(path.filename().string());
  entry.set_size(size);
  entry.set_sha256(digest.FinishHex());
  return entry;
}

grpc::Status LocalError(const std::string& message) {
  return grpc::Status(grpc::StatusCode::UNAVAILABLE, message);
}

}  // namespace

absl::StatusOr<v1::UploadFileRequest::Header> DescribeLocal(const std::string& path,
                                                            v1::DatasetFormat format,
                                                            const std::string& display_name) {
  std::error_code ec;
  v1::UploadFileRequest::Header header;
  header.set_display_name(display_name);
  const fs::path p(path);
  if (fs::is_regular_file(p, ec)) {
    header.set_kind(v1::FILE_KIND_DATASET);
    header.set_format(format);
    absl::StatusOr<v1::FileEntry> entry = DescribeFile(p);
    if (!entry.ok()) return entry.status();
    *header.add_entries() = *std::move(entry);
    return header;
  }
  if (!fs::is_directory(p, ec)) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": is not a dataset file or a model folder"));
  }
  header.set_kind(v1::FILE_KIND_MODEL);
  if (display_name.empty()) header.set_display_name(fs::absolute(p).lexically_normal().filename());
  if (header.display_name().empty()) {
    header.set_display_name(fs::absolute(p).lexically_normal().parent_path().filename());
  }
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(p, ec)) {
    const std::string name = e.path().filename().string();
    if (name.empty() || name[0] == '.' || !fs::is_regular_file(e.path(), ec)) continue;
    files.push_back(e.path());
  }
  if (ec) return absl::InvalidArgumentError(absl::StrCat(path, ": cannot list: ", ec.message()));
  std::sort(files.begin(), files.end());
  for (const fs::path& file : files) {
    absl::StatusOr<v1::FileEntry> entry = DescribeFile(file);
    if (!entry.ok()) return entry.status();
    *header.add_entries() = *std::move(entry);
  }
  return header;
}

grpc::Status Upload(v1::FineTuning::StubInterface* stub, grpc::ClientContext* context,
                    const std::string& path, const v1::UploadFileRequest::Header& header,
                    v1::File* file) {
  std::unique_ptr<grpc::ClientWriterInterface<v1::UploadFileRequest>> writer =
      stub->UploadFile(context, file);
  v1::UploadFileRequest request;
  *request.mutable_header() = header;
  bool open = writer->Write(request);
  const fs::path base =
      header.kind() == v1::FILE_KIND_MODEL ? fs::path(path) : fs::path(path).parent_path();
  std::string buffer;
  std::string local_error;
  for (int i = 0; open && i < header.entries_size(); ++i) {
    const v1::FileEntry& entry = header.entries(i);
    const fs::path file_path =
        header.kind() == v1::FILE_KIND_MODEL ? base / entry.name() : fs::path(path);
    std::ifstream in(file_path, std::ios::binary);
    int64_t left = entry.size();
    while (open && left > 0 && in) {
      buffer.resize(static_cast<size_t>(std::min<int64_t>(left, kChunkBytes)));
      in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
      const std::streamsize n = in.gcount();
      if (n <= 0) break;
      buffer.resize(static_cast<size_t>(n));
      request.Clear();
      request.set_chunk(buffer);
      open = writer->Write(request);
      left -= n;
    }
    if (open && left > 0) {
      // The file changed since it was described: stop, and the daemon
      // keeps nothing.
      local_error = absl::StrCat(file_path.string(), ": changed while being uploaded");
      context->TryCancel();
      break;
    }
  }
  if (local_error.empty()) writer->WritesDone();
  grpc::Status status = writer->Finish();
  if (!local_error.empty()) return LocalError(local_error);
  return status;
}

grpc::Status Download(v1::FineTuning::StubInterface* stub, grpc::ClientContext* context,
                      const std::string& job_id, const std::string& artifact,
                      const std::string& dest, v1::DownloadJobOutputResponse::Header* header) {
  std::error_code ec;
  const fs::path target = fs::absolute(dest, ec).lexically_normal();
  if (fs::exists(target, ec) && !(fs::is_directory(target, ec) && fs::is_empty(target, ec))) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        absl::StrCat(dest, ": exists and is not an empty folder"));
  }
  const fs::path partial =
      target.parent_path() /
      absl::StrCat(".", target.filename().string(), ".partial-", std::random_device()() % 1000000);
  fs::remove_all(partial, ec);
  if (!fs::create_directories(partial, ec)) {
    return LocalError(absl::StrCat("cannot create ", partial.string(), ": ", ec.message()));
  }
  auto cleanup = [&] {
    std::error_code ignored;
    fs::remove_all(partial, ignored);
  };

  v1::DownloadJobOutputRequest request;
  request.set_job_id(job_id);
  request.set_artifact(artifact);
  std::unique_ptr<grpc::ClientReaderInterface<v1::DownloadJobOutputResponse>> reader =
      stub->DownloadJobOutput(context, request);
  v1::DownloadJobOutputResponse message;
  bool have_header = false;
  int current = 0;
  int64_t written = 0;
  std::ofstream out;
  std::unique_ptr<Sha256> digest;
  std::string failure;
  // Opens the next entry (empty ones are complete at once).
  auto advance = [&]() -> bool {
    while (current < header->entries_size()) {
      const v1::FileEntry& entry = header->entries(current);
      if (!out.is_open()) {
        out.open(partial / entry.name(), std::ios::binary | std::ios::trunc);
        if (!out) {
          failure = absl::StrCat("cannot write ", (partial / entry.name()).string());
          return false;
        }
        digest = std::make_unique<Sha256>();
        written = 0;
      }
      if (written < entry.size()) return true;
      out.close();
      if (!out || digest->FinishHex() != entry.sha256()) {
        failure = absl::StrCat(entry.name(), ": the bytes received do not match its SHA-256");
        return false;
      }
      ++current;
    }
    return true;
  };
  while (failure.empty() && reader->Read(&message)) {
    if (!have_header) {
      if (!message.has_header()) {
        failure = "the daemon sent no header";
        break;
      }
      *header = message.header();
      have_header = true;
      for (const v1::FileEntry& entry : header->entries()) {
        const std::string& name = entry.name();
        if (name.empty() || name[0] == '.' || name.find('/') != std::string::npos) {
          failure = "the daemon sent a file name that is not a plain one";
        }
      }
      if (failure.empty()) advance();
      continue;
    }
    std::string_view chunk = message.chunk();
    while (failure.empty() && !chunk.empty()) {
      if (current >= header->entries_size()) {
        failure = "the daemon sent more bytes than its header declares";
        break;
      }
      const int64_t n = std::min<int64_t>(header->entries(current).size() - written,
                                          static_cast<int64_t>(chunk.size()));
      out.write(chunk.data(), n);
      digest->Update(chunk.substr(0, static_cast<size_t>(n)));
      written += n;
      chunk.remove_prefix(static_cast<size_t>(n));
      if (!advance()) break;
    }
  }
  if (!failure.empty()) context->TryCancel();
  grpc::Status status = reader->Finish();
  if (out.is_open()) out.close();
  if (failure.empty() && status.ok() && (!have_header || current < header->entries_size())) {
    failure = "the stream ended before every file had arrived";
  }
  if (!failure.empty()) {
    cleanup();
    return grpc::Status(grpc::StatusCode::DATA_LOSS, failure);
  }
  if (!status.ok()) {
    cleanup();
    return status;
  }
  if (fs::exists(target, ec)) fs::remove(target, ec);  // the empty folder
  fs::rename(partial, target, ec);
  if (ec) {
    cleanup();
    return LocalError(absl::StrCat("cannot rename to ", target.string(), ": ", ec.message()));
  }
  return grpc::Status::OK;
}

}  // namespace ftd::client
