#include "server/pool/worker_agent.h"

#include <unistd.h>

#include <cstdlib>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "common/fs_util.h"
#include "common/log.h"
#include "common/status_macros.h"

namespace ftd::pool {

namespace {

// A replica's view of its job on a worker: the spec (its paths this
// worker's copies), the devices and folders; it reports nothing (the job's
// first replica, on the coordinator, does) and stops when that one says.
class WorkerReplicaContext final : public training::TrainingContext {
 public:
  WorkerReplicaContext(std::string job_id, std::string tenant, ftd::v1::JobSpec spec,
                       ftd::v1::JobSpec recorded, std::vector<std::string> devices,
                       std::string output_dir, std::string checkpoint_dir)
      : job_id_(std::move(job_id)),
        tenant_(std::move(tenant)),
        spec_(std::move(spec)),
        recorded_(std::move(recorded)),
        devices_(std::move(devices)),
        output_dir_(std::move(output_dir)),
        checkpoint_dir_(std::move(checkpoint_dir)) {}
  const std::string& job_id() const override { return job_id_; }
  const std::string& tenant() const override { return tenant_; }
  const ftd::v1::JobSpec& spec() const override { return spec_; }
  const ftd::v1::JobSpec& recorded_spec() const override { return recorded_; }
  const std::vector<std::string>& devices() const override { return devices_; }
  const std::string& output_dir() const override { return output_dir_; }
  bool StopRequested() const override { return false; }
  std::string checkpoint_dir() const override { return checkpoint_dir_; }
  void ReportProgress(const ftd::v1::Progress&) override {}
  void Emit(ftd::v1::JobEvent) override {}
  void RecordFingerprint(const std::string&, const std::string&) override {}

 private:
  const std::string job_id_, tenant_;
  const ftd::v1::JobSpec spec_, recorded_;
  const std::vector<std::string> devices_;
  const std::string output_dir_, checkpoint_dir_;
};

// Refusals that attaching again would meet again.
bool Permanent(const grpc::Status& status) {
  switch (status.error_code()) {
    case grpc::StatusCode::FAILED_PRECONDITION:
    case grpc::StatusCode::UNAUTHENTICATED:
    case grpc::StatusCode::PERMISSION_DENIED:
    case grpc::StatusCode::INVALID_ARGUMENT:
    case grpc::StatusCode::UNIMPLEMENTED:
      return true;
    default:
      return false;
  }
}

}  // namespace

// One attachment's stream; replicas report on it while it lasts.
struct WorkerAgent::Session {
  std::unique_ptr<grpc::ClientReaderWriter<v1::WorkerMessage, v1::CoordinatorMessage>> stream;
  absl::Mutex write_mu;
  bool open ABSL_GUARDED_BY(write_mu) = true;

  bool Write(const v1::WorkerMessage& message) {
    absl::MutexLock lock(&write_mu);
    return open && stream->Write(message);
  }
  void Close() {
    absl::MutexLock lock(&write_mu);
    open = false;
  }
};

absl::StatusOr<std::unique_ptr<WorkerAgent>> WorkerAgent::Create(Options options) {
  if (!options.run) return absl::InvalidArgumentError("no replica runner");
  std::unique_ptr<WorkerAgent> agent(new WorkerAgent(std::move(options)));
  InputCache::Options cache;
  cache.dir = agent->options_.cache_dir;
  cache.max_bytes = agent->options_.cache_max_bytes;
  WorkerAgent* self = agent.get();
  cache.fetch = [self](const std::string& sha256, int64_t size, int fd) {
    return self->Fetch(sha256, size, fd);
  };
  ASSIGN_OR_RETURN(agent->cache_, InputCache::Open(std::move(cache)));
  agent->stub_ = v1::Pool::NewStub(agent->options_.channel);
  return agent;
}

WorkerAgent::~WorkerAgent() { Shutdown(); }

void WorkerAgent::PrepareContext(grpc::ClientContext* context) const {
  if (!options_.token.empty()) context->AddMetadata("authorization", "Bearer " + options_.token);
}

absl::Status WorkerAgent::Fetch(const std::string& sha256, int64_t size, int fd) {
  grpc::ClientContext context;
  PrepareContext(&context);
  v1::FetchFileRequest request;
  request.set_sha256(sha256);
  request.set_worker(options_.name);
  std::unique_ptr<grpc::ClientReader<v1::FileChunk>> reader = stub_->FetchFile(&context, request);
  v1::FileChunk chunk;
  int64_t written = 0;
  while (reader->Read(&chunk)) {
    written += static_cast<int64_t>(chunk.data().size());
    if (written > size) {
      context.TryCancel();
      reader->Finish();
      return absl::DataLossError(absl::StrCat("the file with SHA-256 ", sha256,
                                              " is longer than the ", size, " bytes announced"));
    }
    RETURN_IF_ERROR(WriteAll(fd, chunk.data(), absl::StrCat("the copy of ", sha256)));
  }
  grpc::Status status = reader->Finish();
  if (!status.ok()) {
    return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                        absl::StrCat("fetching the file with SHA-256 ", sha256,
                                     " from the coordinator: ", status.error_message()));
  }
  return absl::OkStatus();
}

absl::Status WorkerAgent::Run() {
  bool attached_before = false;
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (shutdown_) return absl::OkStatus();
    }
    absl::Status ended = AttachOnce(attached_before);
    if (!ended.ok()) return ended;
    attached_before = true;
    absl::MutexLock lock(&mu_);
    auto stopping = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return shutdown_; };
    mu_.AwaitWithTimeout(absl::Condition(&stopping), options_.retry_interval);
  }
}

absl::Status WorkerAgent::AttachOnce(bool attached_before) {
  grpc::ClientContext context;
  PrepareContext(&context);
  {
    absl::MutexLock lock(&mu_);
    if (shutdown_) return absl::OkStatus();
    attach_context_ = &context;
  }
  auto session = std::make_shared<Session>();
  session->stream = stub_->Attach(&context);
  v1::WorkerMessage hello;
  hello.mutable_hello()->set_name(options_.name);
  hello.mutable_hello()->set_version(options_.version);
  hello.mutable_hello()->set_collective_host(options_.collective_host);
  for (const scheduler::Device& device : options_.devices) {
    v1::WorkerDevice* d = hello.mutable_hello()->add_devices();
    d->set_name(device.local_name());
    d->set_description(device.description);
    d->set_memory_bytes(device.memory_bytes);
  }
  v1::CoordinatorMessage message;
  std::thread heartbeat;
  absl::Notification stop_heartbeat;
  bool welcomed = false;
  if (session->Write(hello) && session->stream->Read(&message) && message.has_welcome()) {
    welcomed = true;
    Log(LogLevel::kInfo, absl::StrCat("attached to the coordinator at ", options_.coordinator,
                                      " as worker ", options_.name));
    const absl::Duration interval =
        absl::Milliseconds(std::max<int64_t>(100, message.welcome().heartbeat_interval_ms()));
    heartbeat = std::thread([session, interval, &stop_heartbeat] {
      v1::WorkerMessage beat;
      beat.mutable_heartbeat();
      while (!stop_heartbeat.WaitForNotificationWithTimeout(interval)) {
        if (!session->Write(beat)) break;
      }
    });
    while (session->stream->Read(&message)) {
      if (message.has_run()) {
        StartReplica(session, std::move(*message.mutable_run()));
      } else if (message.has_stop()) {
        // The job's first replica has ended: this one fails at its next
        // collective, or ends with it.
        Log(LogLevel::kInfo,
            absl::StrCat("the coordinator stopped replica ", message.stop().run_id()));
      }
    }
  }
  session->Close();
  stop_heartbeat.Notify();
  if (heartbeat.joinable()) heartbeat.join();
  // (The stream has ended: Read returned false.)
  grpc::Status status = session->stream->Finish();
  {
    absl::MutexLock lock(&mu_);
    attach_context_ = nullptr;
    if (shutdown_) return absl::OkStatus();
  }
  if (!welcomed && !status.ok() &&
      (Permanent(status) ||
       (status.error_code() == grpc::StatusCode::ALREADY_EXISTS && !attached_before))) {
    return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                        absl::StrCat("the coordinator at ", options_.coordinator,
                                     " refused worker ", options_.name, ": ",
                                     status.error_message()));
  }
  Log(LogLevel::kWarning,
      absl::StrCat(welcomed ? "the coordinator at " : "cannot attach to the coordinator at ",
                   options_.coordinator, welcomed ? " went away" : "",
                   status.ok() ? std::string() : absl::StrCat(": ", status.error_message()),
                   "; attaching again in ", absl::FormatDuration(options_.retry_interval)));
  return absl::OkStatus();
}

void WorkerAgent::StartReplica(const std::shared_ptr<Session>& session, v1::RunReplica run) {
  ++*running_;
  std::shared_ptr<std::atomic<int>> running = running_;
  // Detached: a replica ends when its job's first replica stops it, which
  // this agent does not wait for (the worker daemon ends the process when
  // it must go with replicas running).
  std::thread([this, session, running, run = std::move(run)]() mutable {
    const std::string id = run.run_id();
    absl::Status status;
    absl::StatusOr<InputCache::Layout> layout =
        cache_->Prepare(id, {run.files().begin(), run.files().end()});
    if (!layout.ok()) {
      status = layout.status();
    } else {
      ftd::v1::JobSpec spec = run.spec();
      spec.set_base_model(layout->model_dir);
      spec.clear_base_model_file_id();
      spec.mutable_train_dataset()->set_path(layout->train_path);
      spec.mutable_train_dataset()->clear_file_id();
      if (spec.has_validation_dataset()) {
        spec.mutable_validation_dataset()->set_path(layout->validation_path);
        spec.mutable_validation_dataset()->clear_file_id();
      }
      WorkerReplicaContext context(run.job_id(), run.tenant(), std::move(spec), run.spec(),
                                   {run.devices().begin(), run.devices().end()},
                                   layout->output_dir, layout->checkpoint_dir);
      training::BertTrainer::ReplicaPlace place;
      place.rank = run.rank();
      const std::string& store = run.store_address();
      const size_t colon = store.rfind(':');
      place.store_host = colon == std::string::npos ? "" : store.substr(0, colon);
      if (place.store_host.empty()) {
        // The host this worker joined.
        place.store_host = options_.coordinator.substr(0, options_.coordinator.rfind(':'));
      }
      if (place.store_host.size() > 2 && place.store_host.front() == '[') {
        place.store_host = place.store_host.substr(1, place.store_host.size() - 2);
      }
      place.store_port = colon == std::string::npos ? 0 : std::atoi(store.c_str() + colon + 1);
      place.prefix = run.store_prefix();
      place.collective_host = options_.collective_host;
      Log(LogLevel::kInfo, absl::StrCat("running replica ", run.rank(), " of ", run.job_id(),
                                        " on ", run.device()));
      absl::StatusOr<ftd::v1::JobResult> result = options_.run(context, place);
      status = result.status();
    }
    cache_->Release(id);
    Log(status.ok() ? LogLevel::kInfo : LogLevel::kWarning,
        absl::StrCat("replica ", run.rank(), " of ", run.job_id(), " ended",
                     status.ok() ? std::string() : absl::StrCat(": ", status.message())));
    v1::WorkerMessage ended;
    ended.mutable_ended()->set_run_id(id);
    ended.mutable_ended()->set_code(static_cast<int>(status.code()));
    ended.mutable_ended()->set_message(std::string(status.message()));
    session->Write(ended);
    --*running;
  }).detach();
}

void WorkerAgent::Shutdown() {
  absl::MutexLock lock(&mu_);
  shutdown_ = true;
  if (attach_context_ != nullptr) attach_context_->TryCancel();
}

int WorkerAgent::running() const { return running_->load(); }

}  // namespace ftd::pool
