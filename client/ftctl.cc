#include "client/ftctl.h"

#include "absl/strings/str_cat.h"
#include "client/format.h"
#include "client/transfer.h"

namespace ftd::client {

std::string StatusCodeName(grpc::StatusCode code) {
  switch (code) {
    case grpc::OK:
      return "OK";
    case grpc::CANCELLED:
      return "CANCELLED";
    case grpc::UNKNOWN:
      return "UNKNOWN";
    case grpc::INVALID_ARGUMENT:
      return "INVALID_ARGUMENT";
    case grpc::DEADLINE_EXCEEDED:
      return "DEADLINE_EXCEEDED";
    case grpc::NOT_FOUND:
      return "NOT_FOUND";
    case grpc::ALREADY_EXISTS:
      return "ALREADY_EXISTS";
    case grpc::PERMISSION_DENIED:
      return "PERMISSION_DENIED";
    case grpc::RESOURCE_EXHAUSTED:
      return "RESOURCE_EXHAUSTED";
    case grpc::FAILED_PRECONDITION:
      return "FAILED_PRECONDITION";
    case grpc::ABORTED:
      return "ABORTED";
    case grpc::OUT_OF_RANGE:
      return "OUT_OF_RANGE";
    case grpc::UNIMPLEMENTED:
      return "UNIMPLEMENTED";
    case grpc::INTERNAL:
      return "INTERNAL";
    case grpc::UNAVAILABLE:
      return "UNAVAILABLE";
    case grpc::DATA_LOSS:
      return "DATA_LOSS";
    case grpc::UNAUTHENTICATED:
      return "UNAUTHENTICATED";
    default:
      return absl::StrCat("CODE_", static_cast<int>(code));
  }
}

int Ftctl::Fail(const grpc::Status& status) {
  std::string message = status.error_message();
  if (status.error_code() == grpc::UNAVAILABLE && message.find("connect") != std::string::npos) {
    message = absl::StrCat("cannot reach the ftd daemon (", message, ")");
  }
  *options_.err << "ftctl: " << StatusCodeName(status.error_code()) << ": " << message << "\n";
  return kExitError;
}

void Ftctl::Prepare(grpc::ClientContext* context, bool deadline) const {
  if (deadline) context->set_deadline(std::chrono::system_clock::now() + options_.timeout);
  if (!options_.token.empty()) context->AddMetadata("authorization", "Bearer " + options_.token);
}

int Ftctl::Submit(const v1::SubmitJobRequest& request, bool watch) {
  grpc::ClientContext context;
  Prepare(&context);
  v1::Job job;
  grpc::Status status = stub_->SubmitJob(&context, request, &job);
  if (!status.ok()) return Fail(status);
  if (options_.json) {
    *options_.out << ToJson(job, !watch) << "\n";
  } else {
    *options_.out << "submitted " << job.id() << " (" << StateName(job.state());
    if (job.queue_position() > 0) *options_.out << ", position " << job.queue_position();
    *options_.out << ")\n";
  }
  options_.out->flush();
  return watch ? Watch(job.id()) : kExitOk;
}

int Ftctl::Get(const std::string& job_id) {
  grpc::ClientContext context;
  Prepare(&context);
  v1::GetJobRequest request;
  request.set_job_id(job_id);
  v1::Job job;
  grpc::Status status = stub_->GetJob(&context, request, &job);
  if (!status.ok()) return Fail(status);
  *options_.out << (options_.json ? ToJson(job, true) + "\n" : FormatJob(job));
  return kExitOk;
}

int Ftctl::List(const v1::ListJobsRequest& first, bool all) {
  v1::ListJobsRequest request = first;
  std::vector<v1::Job> jobs;
  std::string next;
  do {
    grpc::ClientContext context;
    Prepare(&context);
    v1::ListJobsResponse response;
    grpc::Status status = stub_->ListJobs(&context, request, &response);
    if (!status.ok()) return Fail(status);
    jobs.insert(jobs.end(), response.jobs().begin(), response.jobs().end());
    next = response.next_page_token();
    request.set_page_token(next);
  } while (all && !next.empty());
  if (options_.json) {
    v1::ListJobsResponse response;
    for (const v1::Job& job : jobs) *response.add_jobs() = job;
    response.set_next_page_token(next);
    *options_.out << ToJson(response, true) << "\n";
    return kExitOk;
  }
  *options_.out << FormatJobTable(jobs);
  if (!next.empty()) {
    *options_.err << "more jobs: ftctl list --page_token=" << next << " (or --all)\n";
  }
  return kExitOk;
}

int Ftctl::Delete(const std::string& job_id) {
  grpc::ClientContext context;
  Prepare(&context);
  v1::DeleteJobRequest request;
  request.set_job_id(job_id);
  v1::DeleteJobResponse response;
  grpc::Status status = stub_->DeleteJob(&context, request, &response);
  if (!status.ok()) return Fail(status);
  if (options_.json) {
    *options_.out << ToJson(response, true) << "\n";
    return kExitOk;
  }
  *options_.out << "deleted " << job_id << ": " << FormatBytes(response.output_bytes_freed())
                << " of outputs";
  if (response.cache_cleared_size() > 0 || response.cache_kept_size() > 0) {
    *options_.out << ", " << response.cache_cleared_size() << " cache segments ("
                  << FormatBytes(response.cache_bytes_freed()) << ")";
    if (response.cache_kept_size() > 0) {
      *options_.out << "; " << response.cache_kept_size() << " kept for unfinished jobs";
    }
  }
  *options_.out << "\n";
  return kExitOk;
}

int Ftctl::Cancel(const std::string& job_id) {
  grpc::ClientContext context;
  Prepare(&context);
  v1::CancelJobRequest request;
  request.set_job_id(job_id);
  v1::Job job;
  grpc::Status status = stub_->CancelJob(&context, request, &job);
  if (!status.ok()) return Fail(status);
  if (options_.json) {
    *options_.out << ToJson(job, true) << "\n";
  } else {
    *options_.out << job.id() << " " << StateName(job.state()) << "\n";
  }
  return kExitOk;
}

int Ftctl::Watch(const std::string& job_id) {
  grpc::ClientContext context;
  Prepare(&context, /*deadline=*/false);  // a job may train for hours
  v1::WatchJobRequest request;
  request.set_job_id(job_id);
  std::unique_ptr<grpc::ClientReaderInterface<v1::JobEvent>> reader =
      stub_->WatchJob(&context, request);
  v1::JobEvent event;
  v1::JobState last_state = v1::JOB_STATE_UNSPECIFIED;
  std::string error;
  bool progress_line_open = false;
  while (reader->Read(&event)) {
    if (event.has_state_change()) {
      last_state = event.state_change().to_state();
      if (last_state == v1::JOB_STATE_FAILED) error = event.state_change().reason();
    }
    if (options_.json) {
      *options_.out << ToJson(event, false) << "\n";
    } else if (event.has_progress() && options_.live) {
      *options_.out << "\r\033[K" << FormatEvent(event);
      progress_line_open = true;
    } else {
      if (progress_line_open) *options_.out << "\n";
      progress_line_open = false;
      *options_.out << FormatEvent(event) << "\n";
    }
    options_.out->flush();
  }
  if (progress_line_open) *options_.out << "\n";
  grpc::Status status = reader->Finish();
  if (!status.ok()) return Fail(status);
  switch (last_state) {
    case v1::JOB_STATE_SUCCEEDED:
      return kExitOk;
    case v1::JOB_STATE_CANCELLED:
      *options_.err << "ftctl: " << job_id << " was cancelled\n";
      return kExitCancelled;
    case v1::JOB_STATE_FAILED:
      *options_.err << "ftctl: " << job_id << " failed: " << error << "\n";
      return kExitJobFailed;
    default:
      *options_.err << "ftctl: the watch of " << job_id << " ended while it was "
                    << StateName(last_state) << "\n";
      return kExitError;
  }
}

int Ftctl::Events(const std::string& job_id, int page_size, const std::string& page_token) {
  v1::ListJobEventsRequest request;
  request.set_job_id(job_id);
  request.set_page_size(page_size);
  request.set_page_token(page_token);
  const bool one_page = page_size > 0 || !page_token.empty();
  std::string next;
  int64_t dropped = 0;
  do {
    grpc::ClientContext context;
    Prepare(&context);
    v1::ListJobEventsResponse response;
    grpc::Status status = stub_->ListJobEvents(&context, request, &response);
    if (!status.ok()) return Fail(status);
    for (const v1::JobEvent& event : response.events()) {
      *options_.out << (options_.json ? ToJson(event, false) : FormatEvent(event)) << "\n";
    }
    next = response.next_page_token();
    dropped = response.dropped_events();
    request.set_page_token(next);
  } while (!one_page && !next.empty());
  if (dropped > 0 && !options_.json) {
    *options_.err
        << dropped
        << " older events (progress, evaluations, freeze decisions) were dropped to keep "
           "the history within the daemon's bound; state changes, warnings and errors "
           "are all here, and `ftctl get` shows the newest evaluations and every freeze\n";
  }
  if (one_page && !next.empty()) {
    *options_.err << "more events: ftctl events " << job_id << " --page_size=" << page_size
                  << " --page_token=" << next << "\n";
  }
  return kExitOk;
}

int Ftctl::Info() {
  grpc::ClientContext context;
  Prepare(&context);
  v1::ServerInfo info;
  grpc::Status status = stub_->GetServerInfo(&context, v1::GetServerInfoRequest(), &info);
  if (!status.ok()) return Fail(status);
  *options_.out << (options_.json ? ToJson(info, true) + "\n" : FormatServerInfo(info));
  return kExitOk;
}

int Ftctl::Cache(const std::string& job_id) {
  grpc::ClientContext context;
  Prepare(&context);
  v1::GetCacheRequest request;
  request.set_job_id(job_id);
  v1::CacheInfo info;
  grpc::Status status = stub_->GetCache(&context, request, &info);
  if (!status.ok()) return Fail(status);
  *options_.out << (options_.json ? ToJson(info, true) + "\n"
                                  : FormatCacheInfo(info, !job_id.empty()));
  return kExitOk;
}

int Ftctl::ClearCache(const std::string& job_id) {
  grpc::ClientContext context;
  Prepare(&context);
  v1::ClearJobCacheRequest request;
  request.set_job_id(job_id);
  v1::ClearJobCacheResponse response;
  grpc::Status status = stub_->ClearJobCache(&context, request, &response);
  if (!status.ok()) return Fail(status);
  *options_.out << (options_.json ? ToJson(response, true) + "\n" : FormatClearedCache(response));
  return kExitOk;
}

absl::StatusOr<std::string> Ftctl::UploadForSpec(const std::string& path,
                                                 v1::DatasetFormat format) {
  absl::StatusOr<v1::UploadFileRequest::Header> header = DescribeLocal(path, format, "");
  if (!header.ok()) return header.status();
  v1::File file;
  grpc::ClientContext context;
  Prepare(&context, /*deadline=*/false);  // as long as the bytes take
  grpc::Status status = client::Upload(stub_, &context, path, *header, &file);
  if (!status.ok()) {
    return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                        absl::StrCat(path, ": ", status.error_message()));
  }
  *options_.err << "ftctl: uploaded " << path << " as " << file.id() << "\n";
  return file.id();
}

int Ftctl::Upload(const std::string& path, v1::DatasetFormat format, const std::string& name) {
  absl::StatusOr<v1::UploadFileRequest::Header> header = DescribeLocal(path, format, name);
  if (!header.ok()) {
    *options_.err << "ftctl: " << header.status().message() << "\n";
    return kExitUsage;
  }
  v1::File file;
  grpc::ClientContext context;
  Prepare(&context, /*deadline=*/false);  // as long as the bytes take
  grpc::Status status = client::Upload(stub_, &context, path, *header, &file);
  if (!status.ok()) return Fail(status);
  *options_.out << (options_.json ? ToJson(file, false) + "\n" : FormatFile(file, false));
  return kExitOk;
}

int Ftctl::Files(const std::string& file_id, v1::FileKind kind) {
  grpc::ClientContext context;
  Prepare(&context);
  if (!file_id.empty()) {
    v1::GetFileRequest request;
    request.set_file_id(file_id);
    v1::File file;
    grpc::Status status = stub_->GetFile(&context, request, &file);
    if (!status.ok()) return Fail(status);
    *options_.out << (options_.json ? ToJson(file, true) + "\n" : FormatFile(file, true));
    return kExitOk;
  }
  v1::ListFilesRequest request;
  request.set_page_size(1000);
  request.set_kind(kind);
  v1::ListFilesResponse response;
  grpc::Status status = stub_->ListFiles(&context, request, &response);
  if (!status.ok()) return Fail(status);
  *options_.out << (options_.json ? ToJson(response, true) + "\n" : FormatFileTable(response));
  return kExitOk;
}

int Ftctl::DeleteFile(const std::string& file_id) {
  grpc::ClientContext context;
  Prepare(&context);
  v1::DeleteFileRequest request;
  request.set_file_id(file_id);
  v1::DeleteFileResponse response;
  grpc::Status status = stub_->DeleteFile(&context, request, &response);
  if (!status.ok()) return Fail(status);
  if (options_.json) {
    *options_.out << ToJson(response, false) << "\n";
  } else {
    *options_.out << "deleted " << file_id << " (" << FormatBytes(response.bytes_freed())
                  << " freed)\n";
  }
  return kExitOk;
}

int Ftctl::Download(const std::string& job_id, const std::string& dest,
                    const std::string& artifact) {
  v1::DownloadJobOutputResponse::Header header;
  grpc::ClientContext context;
  Prepare(&context, /*deadline=*/false);
  grpc::Status status = client::Download(stub_, &context, job_id, artifact, dest, &header);
  if (!status.ok()) return Fail(status);
  if (options_.json) {
    *options_.out << ToJson(header, false) << "\n";
  } else {
    int64_t bytes = 0;
    for (const v1::FileEntry& e : header.entries()) bytes += e.size();
    *options_.out << "downloaded " << job_id << " " << header.artifact() << " to " << dest << " ("
                  << header.entries_size() << " files, " << FormatBytes(bytes) << ")\n";
  }
  return kExitOk;
}

}  // namespace ftd::client
