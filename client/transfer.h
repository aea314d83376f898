// Files to and from the daemon: uploads of a local dataset file or model
// folder, downloads of a job's output into a local folder.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "ftd/v1/ftd.grpc.pb.h"

namespace ftd::client {

// The upload header of a local path: a file is a dataset (format from its
// extension unless given), a folder a model (its regular files, symbolic
// links followed, hidden files and subfolders left out). Reads every file
// once for its SHA-256. Errors: INVALID_ARGUMENT naming the path.
absl::StatusOr<v1::UploadFileRequest::Header> DescribeLocal(const std::string& path,
                                                            v1::DatasetFormat format,
                                                            const std::string& display_name);

// Streams `path` (described by `header`) in 1 MiB chunks, on `context`
// (its credentials set). The error is the daemon's (INVALID_ARGUMENT,
// RESOURCE_EXHAUSTED, ...) or a local read's.
grpc::Status Upload(v1::FineTuning::StubInterface* stub, grpc::ClientContext* context,
                    const std::string& path, const v1::UploadFileRequest::Header& header,
                    v1::File* file);

// Writes the job's `artifact` into folder `dest` (it must not exist, or be
// empty): into a folder beside it, each file's size and SHA-256 checked,
// then renamed to `dest`; nothing is left on an error. `header` gets what
// the daemon sent. Errors: the daemon's, DATA_LOSS for bytes that do not match their
// header, or a local write's (as UNAVAILABLE naming the path).
grpc::Status Download(v1::FineTuning::StubInterface* stub, grpc::ClientContext* context,
                      const std::string& job_id, const std::string& artifact,
                      const std::string& dest, v1::DownloadJobOutputResponse::Header* header);

}  // namespace ftd::client
