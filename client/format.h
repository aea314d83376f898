// How ftctl shows jobs and events to a person.
#pragma once

#include <string>
#include <vector>

#include "ftd/v1/ftd.pb.h"

namespace ftd::client {

// "QUEUED", "RUNNING", ... ; "?" for unknown values.
std::string StateName(v1::JobState state);
// "1h02m", "3m05s", "12s".
std::string FormatDuration(double seconds);
// "step 120/564 (21%) epoch 1/3 loss 1.2345 312.4 samples/s ETA 1m25s".
std::string FormatProgress(const v1::Progress& progress);
// A table with a header row: ID NAME STATE PRIORITY PROGRESS DEVICE CREATED.
std::string FormatJobTable(const std::vector<v1::Job>& jobs);
// Several lines describing one job.
std::string FormatJob(const v1::Job& job);
// One line for one event, with its time.
std::string FormatEvent(const v1::JobEvent& event);
std::string FormatServerInfo(const v1::ServerInfo& info);
// "12.3 MiB"
std::string FormatBytes(int64_t bytes);
// One epoch's (or the job's) cache counts on one line.
std::string FormatCacheStats(const v1::CacheStats& stats);
// "step 120 (epoch 2), 64.0 MiB, 2026-12-02 10:00:00 (epoch end)"
std::string FormatCheckpoint(const v1::Checkpoint& checkpoint);
// The cache's size and segments; with `job`, that job's counts first.
std::string FormatCacheInfo(const v1::CacheInfo& info, bool job);
std::string FormatClearedCache(const v1::ClearJobCacheResponse& response);
// Proto JSON, snake_case field names (as job files use them).
// A file: its id, kind, name, size and what it holds; with `detail`, its
// entries too.
std::string FormatFile(const v1::File& file, bool detail);
std::string FormatFileTable(const v1::ListFilesResponse& response);

std::string ToJson(const google::protobuf::Message& message, bool multiline);

}  // namespace ftd::client
