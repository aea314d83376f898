#include "server/pool/worker_pool.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/quote.h"
#include "common/time_util.h"
#include "server/training/trainer.h"

namespace ftd::pool {

namespace {

// "cpu:0" or "cuda:3": the device of a worker's, in the scheduler's terms.
std::optional<scheduler::Device> ParseDevice(const v1::WorkerDevice& offered,
                                             const std::string& worker) {
  const std::string& name = offered.name();
  scheduler::Device device;
  std::string index;
  if (name.rfind("cpu:", 0) == 0) {
    device.kind = scheduler::Device::Kind::kCpu;
    index = name.substr(4);
  } else if (name.rfind("cuda:", 0) == 0) {
    device.kind = scheduler::Device::Kind::kCuda;
    index = name.substr(5);
  } else {
    return std::nullopt;
  }
  if (index.empty() || index.size() > 4 ||
      !std::all_of(index.begin(), index.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return std::nullopt;
  }
  device.index = std::stoi(index);
  device.description = offered.description().substr(0, 256);
  device.memory_bytes = std::max<int64_t>(0, offered.memory_bytes());
  device.host = worker;
  return device;
}

}  // namespace

bool WorkerPool::ValidName(const std::string& name) {
  if (name.empty() || name.size() > 63 || name[0] == '.' || name[0] == '-') return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '.';
  });
}

WorkerPool::WorkerPool(Options options) : options_(std::move(options)) {
  watcher_ = std::thread([this] { WatchHeartbeats(); });
}

void WorkerPool::Close() {
  std::vector<std::string> names;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    stopping_ = true;
    for (const auto& [name, worker] : workers_) names.push_back(name);
  }
  watcher_.join();
  for (const std::string& name : names) Detach(name, "the coordinator is shutting down");
}

WorkerPool::~WorkerPool() { Close(); }

absl::Status WorkerPool::Attach(const v1::Hello& hello, WorkerStream* stream) {
  const std::string& name = hello.name();
  if (!ValidName(name)) {
    return absl::InvalidArgumentError(
        absl::StrCat("hello.name: ", QuoteUserText(name),
                     " is not a worker name (letters, digits, '-' and '.', 1 to 63 bytes)"));
  }
  if (hello.version() != options_.version) {
    return absl::FailedPreconditionError(
        absl::StrCat("worker ", name, " runs ftd ", QuoteUserText(hello.version()),
                     " but this coordinator runs ", options_.version,
                     ": a pool's daemons run one version"));
  }
  if (hello.devices().empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("hello.devices: worker ", name, " offers no device"));
  }
  if (hello.devices_size() > options_.max_devices_per_worker) {
    return absl::InvalidArgumentError(absl::StrCat("hello.devices: worker ", name, " offers ",
                                                   hello.devices_size(), " devices; at most ",
                                                   options_.max_devices_per_worker));
  }
  if (hello.collective_host().empty() || hello.collective_host().size() > 253) {
    return absl::InvalidArgumentError(
        absl::StrCat("hello.collective_host: worker ", name,
                     " must say the address its collectives listen on"));
  }
  std::vector<scheduler::Device> devices;
  for (int i = 0; i < hello.devices_size(); ++i) {
    std::optional<scheduler::Device> device = ParseDevice(hello.devices(i), name);
    if (!device.has_value()) {
      return absl::InvalidArgumentError(absl::StrCat("hello.devices[", i, "].name: ",
                                                     QuoteUserText(hello.devices(i).name()),
                                                     " is not \"cpu:N\" or \"cuda:N\""));
    }
    for (const scheduler::Device& other : devices) {
      if (other.name() == device->name()) {
        return absl::InvalidArgumentError(absl::StrCat("hello.devices[", i, "].name: ",
                                                       device->local_name(), " is offered twice"));
      }
    }
    devices.push_back(*std::move(device));
  }
  std::shared_ptr<absl::Mutex> send_mu;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return absl::UnavailableError("the coordinator is shutting down");
    if (workers_.count(name) > 0) {
      return absl::AlreadyExistsError(
          absl::StrCat("a worker named ", name,
                       " is attached already; give each worker its own --worker_name"));
    }
    if (static_cast<int>(workers_.size()) >= options_.max_workers) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "this coordinator has ", workers_.size(), " workers, its limit (--max_workers)"));
    }
    Worker& worker = workers_[name];
    worker.stream = stream;
    worker.collective_host = hello.collective_host();
    worker.attach_time = worker.last_heard = options_.now();
    for (const scheduler::Device& d : devices) worker.devices.push_back(d.name());
    send_mu = worker.send_mu;
  }
  // Welcomed before its devices can take a replica.
  v1::CoordinatorMessage welcome;
  welcome.mutable_welcome()->set_version(options_.version);
  welcome.mutable_welcome()->set_heartbeat_interval_ms(
      absl::ToInt64Milliseconds(options_.heartbeat_interval));
  bool sent;
  {
    absl::MutexLock send_lock(send_mu.get());
    sent = stream->Send(welcome);
  }
  if (!sent) {
    absl::MutexLock lock(&mu_);
    workers_.erase(name);
    return absl::UnavailableError(absl::StrCat("worker ", name, " left before its welcome"));
  }
  std::string listed;
  for (const scheduler::Device& d : devices) absl::StrAppend(&listed, listed.empty() ? "" : ", ", d.name());
  Log(LogLevel::kInfo, absl::StrCat("worker ", name, " attached (collectives on ",
                                    hello.collective_host(), "): ", listed));
  if (options_.add_devices) options_.add_devices(devices);
  return absl::OkStatus();
}

void WorkerPool::Heartbeat(const std::string& worker) {
  absl::MutexLock lock(&mu_);
  auto it = workers_.find(worker);
  if (it != workers_.end()) it->second.last_heard = options_.now();
}

void WorkerPool::ReplicaEnded(const std::string& worker, const v1::ReplicaEnded& ended) {
  absl::MutexLock lock(&mu_);
  auto it = runs_.find(ended.run_id());
  // Only the worker it was placed on ends a replica.
  if (it == runs_.end() || it->second.worker != worker || it->second.end.has_value()) return;
  const auto code = static_cast<absl::StatusCode>(ended.code());
  it->second.end = code == absl::StatusCode::kOk
                       ? absl::OkStatus()
                       : absl::Status(code, ended.message().substr(0, 4096));
  it->second.files.clear();  // no longer offered
}

void WorkerPool::Detach(const std::string& name, const std::string& reason,
                        const WorkerStream* stream) {
  std::shared_ptr<absl::Mutex> send_mu;
  WorkerStream* detached = nullptr;
  std::vector<std::string> lost;  // its replicas running now
  {
    absl::MutexLock lock(&mu_);
    auto it = workers_.find(name);
    if (it == workers_.end() || (stream != nullptr && it->second.stream != stream)) return;
    send_mu = it->second.send_mu;
    detached = it->second.stream;
    workers_.erase(it);
    for (const auto& [id, run] : runs_) {
      if (run.worker == name && !run.end.has_value()) lost.push_back(id);
    }
  }
  // A send blocked on the stream ends; none starts again on it.
  detached->Cancel();
  { absl::MutexLock send_lock(send_mu.get()); }
  Log(LogLevel::kWarning, absl::StrCat("worker ", name, " left: ", reason));
  // Its devices leave the scheduler before its replicas' jobs hear of it,
  // so that they go back to the queue for the devices left.
  if (options_.remove_worker) options_.remove_worker(name);
  absl::MutexLock lock(&mu_);
  for (const std::string& id : lost) {
    auto it = runs_.find(id);
    if (it == runs_.end() || it->second.end.has_value()) continue;
    it->second.end = training::DeviceLost(absl::StrCat("worker ", name, " left: ", reason));
    it->second.files.clear();
  }
}

bool WorkerPool::Send(const std::string& worker, const v1::CoordinatorMessage& message) {
  WorkerStream* stream = nullptr;
  std::shared_ptr<absl::Mutex> send_mu;
  {
    absl::MutexLock lock(&mu_);
    auto it = workers_.find(worker);
    if (it == workers_.end()) return false;
    stream = it->second.stream;
    send_mu = it->second.send_mu;
  }
  absl::MutexLock send_lock(send_mu.get());
  {
    // Still attached on that stream (Detach waits for this send to end).
    absl::MutexLock lock(&mu_);
    auto it = workers_.find(worker);
    if (it == workers_.end() || it->second.stream != stream) return false;
  }
  return stream->Send(message);
}

absl::StatusOr<std::unique_ptr<WorkerPool::Replica>> WorkerPool::Run(
    const std::string& worker, v1::RunReplica run, std::vector<OfferedFile> files) {
  std::string run_id;
  {
    absl::MutexLock lock(&mu_);
    if (workers_.count(worker) == 0) {
      return training::DeviceLost(absl::StrCat("worker ", worker, " is not attached"));
    }
    run_id = absl::StrCat(run.job_id(), "/", run.rank(), "/", ++next_run_);
    PlacedRun& placed = runs_[run_id];
    placed.worker = worker;
    placed.files = std::move(files);
  }
  run.set_run_id(run_id);
  std::unique_ptr<Replica> replica(new Replica(this, worker, run_id));
  v1::CoordinatorMessage message;
  *message.mutable_run() = std::move(run);
  if (!Send(worker, message)) {
    return training::DeviceLost(
        absl::StrCat("worker ", worker, " could not be sent the replica (it left)"));
  }
  return replica;
}

absl::Status WorkerPool::WaitFor(const std::string& run_id, absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto ended = [this, &run_id]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto it = runs_.find(run_id);
    return it == runs_.end() || it->second.end.has_value();
  };
  mu_.AwaitWithTimeout(absl::Condition(&ended), timeout);
  auto it = runs_.find(run_id);
  if (it == runs_.end()) return absl::InternalError("the replica's record is gone");
  if (it->second.end.has_value()) return *it->second.end;
  return training::DeviceLost(absl::StrCat("worker ", it->second.worker,
                                           " did not report the replica's end within ",
                                           absl::FormatDuration(timeout)));
}

void WorkerPool::Forget(const std::string& run_id) {
  absl::MutexLock lock(&mu_);
  runs_.erase(run_id);
}

absl::Status WorkerPool::Replica::Wait(absl::Duration timeout) {
  return pool_->WaitFor(run_id_, timeout);
}

void WorkerPool::Replica::Stop() {
  v1::CoordinatorMessage message;
  message.mutable_stop()->set_run_id(run_id_);
  pool_->Send(worker_, message);
}

WorkerPool::Replica::~Replica() { pool_->Forget(run_id_); }

absl::StatusOr<std::string> WorkerPool::OfferedPath(const std::string& worker,
                                                    const std::string& sha256) const {
  absl::MutexLock lock(&mu_);
  for (const auto& [id, run] : runs_) {
    if (run.worker != worker || run.end.has_value()) continue;
    for (const OfferedFile& offered : run.files) {
      if (offered.file.sha256() == sha256) return offered.path;
    }
  }
  return absl::NotFoundError(
      absl::StrCat("no file with SHA-256 ", QuoteUserText(sha256.substr(0, 64)),
                   " is offered to worker ", worker, " (only its replicas' inputs are)"));
}

std::vector<ftd::v1::Worker> WorkerPool::Workers() const {
  absl::MutexLock lock(&mu_);
  std::vector<ftd::v1::Worker> out;
  for (const auto& [name, worker] : workers_) {
    ftd::v1::Worker w;
    w.set_name(name);
    w.set_collective_host(worker.collective_host);
    *w.mutable_attach_time() = ToTimestamp(worker.attach_time);
    for (const std::string& device : worker.devices) w.add_devices(device);
    out.push_back(std::move(w));
  }
  return out;
}

void WorkerPool::WatchHeartbeats() {
  while (true) {
    std::vector<std::string> silent;
    {
      absl::MutexLock lock(&mu_);
      auto stopping = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_; };
      if (mu_.AwaitWithTimeout(absl::Condition(&stopping), options_.heartbeat_interval)) return;
      const absl::Time now = options_.now();
      for (const auto& [name, worker] : workers_) {
        if (now - worker.last_heard > 3 * options_.heartbeat_interval) silent.push_back(name);
      }
    }
    for (const std::string& name : silent) {
      Detach(name, absl::StrCat("no heartbeat for ",
                                absl::FormatDuration(3 * options_.heartbeat_interval)));
    }
  }
}

}  // namespace ftd::pool
