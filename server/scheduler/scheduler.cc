#include "server/scheduler/scheduler.h"

#include <algorithm>
#include <map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace ftd::scheduler {

Scheduler::Scheduler(Options options)
    : run_(std::move(options.run)),
      preemption_(options.preemption),
      max_running_per_group_(options.max_running_per_group) {
  std::stable_sort(options.devices.begin(), options.devices.end(),
                   [](const Device& a, const Device& b) {
                     return a.kind == Device::Kind::kCuda && b.kind != Device::Kind::kCuda;
                   });
  absl::MutexLock lock(&mu_);
  for (Device& device : options.devices) {
    Slot slot;
    slot.device = std::move(device);
    slots_.push_back(std::move(slot));
  }
}

Scheduler::~Scheduler() { Shutdown(); }

bool Scheduler::Before(const QueuedJob& a, const QueuedJob& b) {
  if (a.priority != b.priority) return a.priority > b.priority;
  return a.order < b.order;
}

bool Scheduler::Fits(const v1::DeviceRequest& request, int count, const Device& device) {
  // A job's first replica runs here: a job on one device, wholly.
  if (count == 1 && !device.local()) return false;
  switch (request.kind()) {
    case v1::DeviceRequest::KIND_CPU:
      return device.kind == Device::Kind::kCpu;
    case v1::DeviceRequest::KIND_CUDA:
      // One device names its index; several take any CUDA devices.
      return device.kind == Device::Kind::kCuda &&
             (count > 1 || device.index == request.cuda_index());
    default:
      return true;
  }
}

std::vector<Device::Kind> Scheduler::Kinds(const v1::DeviceRequest& request) {
  switch (request.kind()) {
    case v1::DeviceRequest::KIND_CPU:
      return {Device::Kind::kCpu};
    case v1::DeviceRequest::KIND_CUDA:
      return {Device::Kind::kCuda};
    default:
      return {Device::Kind::kCuda, Device::Kind::kCpu};
  }
}

absl::Status Scheduler::CheckRequest(const v1::DeviceRequest& request, int devices) const {
  absl::MutexLock lock(&mu_);
  std::vector<std::string> cuda;
  int cpus = 0, remote = 0, local_cuda = 0, local_cpus = 0;
  for (const Slot& slot : slots_) {
    if (slot.gone) continue;
    if (!slot.device.local()) ++remote;
    if (slot.device.kind == Device::Kind::kCuda) {
      cuda.push_back(slot.device.name());
      if (slot.device.local()) ++local_cuda;
    } else {
      ++cpus;
      if (slot.device.local()) ++local_cpus;
    }
  }
  if (devices < 1) {
    return absl::InvalidArgumentError(absl::StrCat("devices: must be at least 1, got ", devices));
  }
  const int gpus = static_cast<int>(cuda.size());
  const std::string has = absl::StrCat(
      "this server has ", gpus, " CUDA device", gpus == 1 ? "" : "s", " and ", cpus, " CPU device",
      cpus == 1 ? "" : "s",
      remote > 0 ? absl::StrCat(" (", remote, " of them on its workers)") : std::string());
  // Several devices take one of this daemon's for the first replica.
  auto needs_local = [&](const char* kind) {
    return absl::InvalidArgumentError(absl::StrCat(
        "devices: a job on ", devices, " devices runs its first replica on this daemon, which has no ",
        kind, " device of its own (", has, ")"));
  };
  switch (request.kind()) {
    // One device of any kind, or on the CPU, is always accepted: a pool
    // without one keeps such jobs queued (as a daemon with no devices does).
    case v1::DeviceRequest::KIND_UNSPECIFIED:
      if (devices > 1 && devices > std::max(gpus, cpus)) {
        return absl::InvalidArgumentError(absl::StrCat("devices: ", devices, " were asked for but ",
                                                       has,
                                                       " (a job's devices are all of one kind)"));
      }
      if (devices > 1 && !(devices <= gpus && local_cuda > 0) &&
          !(devices <= cpus && local_cpus > 0)) {
        return needs_local("CUDA or CPU");
      }
      return absl::OkStatus();
    case v1::DeviceRequest::KIND_CPU:
      if (devices > 1 && devices > cpus) {
        return absl::InvalidArgumentError(
            absl::StrCat("devices: ", devices, " CPU devices were asked for but ", has));
      }
      if (devices > 1 && local_cpus == 0) return needs_local("CPU");
      return absl::OkStatus();
    case v1::DeviceRequest::KIND_CUDA:
      if (request.cuda_index() < 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("device.cuda_index: must not be negative, got ", request.cuda_index()));
      }
      if (cuda.empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat("device: cuda:", request.cuda_index(),
                         " was requested but this server has no CUDA device; ask for cpu or any"));
      }
      if (devices > 1) {
        if (request.cuda_index() != 0) {
          return absl::InvalidArgumentError(
              absl::StrCat("device.cuda_index: a job on ", devices,
                           " devices takes any free CUDA devices; leave cuda_index unset, got ",
                           request.cuda_index()));
        }
        if (devices > gpus) {
          return absl::InvalidArgumentError(
              absl::StrCat("devices: ", devices, " CUDA devices were asked for but ", has));
        }
        if (local_cuda == 0) return needs_local("CUDA");
        return absl::OkStatus();
      }
      for (const Slot& slot : slots_) {
        if (!slot.gone && Fits(request, 1, slot.device)) return absl::OkStatus();
      }
      return absl::InvalidArgumentError(absl::StrCat("device: cuda:", request.cuda_index(),
                                                     " does not exist; this server has ",
                                                     absl::StrJoin(cuda, ", ")));
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("device.kind: unknown value ", static_cast<int>(request.kind())));
  }
}

void Scheduler::Enqueue(const std::string& job_id, int priority, uint64_t order,
                        const v1::DeviceRequest& request, const std::string& group, int devices) {
  absl::MutexLock lock(&mu_);
  QueuedJob job{job_id, priority, order, request, group, std::max(1, devices)};
  queue_.insert(std::upper_bound(queue_.begin(), queue_.end(), job, Before), std::move(job));
  Dispatch();
}

void Scheduler::Start() {
  absl::MutexLock lock(&mu_);
  started_ = true;
  Dispatch();
}

bool Scheduler::PoolFits(const QueuedJob& job, Device::Kind kind) const {
  int fitting = 0;
  bool local = false;
  for (const Slot& slot : slots_) {
    if (slot.gone || slot.device.kind != kind || !Fits(job.request, job.devices, slot.device))
      continue;
    ++fitting;
    local = local || slot.device.local();
  }
  return local && fitting >= job.devices;
}

std::vector<size_t> Scheduler::FreeSlotsFor(const QueuedJob& job,
                                            const std::vector<bool>& held) const {
  for (Device::Kind kind : Kinds(job.request)) {
    // This daemon's slots first, then its workers': the first chosen is
    // this daemon's whenever one is free.
    std::vector<size_t> chosen;
    for (const bool local : {true, false}) {
      for (size_t i = 0; i < slots_.size() && static_cast<int>(chosen.size()) < job.devices;
           ++i) {
        const Slot& slot = slots_[i];
        if (slot.device.local() == local && slot.job_id.empty() && !held[i] && !slot.gone &&
            slot.device.kind == kind && Fits(job.request, job.devices, slot.device)) {
          chosen.push_back(i);
        }
      }
    }
    if (static_cast<int>(chosen.size()) == job.devices && slots_[chosen[0]].device.local()) {
      return chosen;
    }
  }
  return {};
}

std::map<std::string, int> Scheduler::RunningByGroup() const {
  std::map<std::string, int> running;
  for (const auto& [id, job] : running_) ++running[job.group];
  return running;
}

void Scheduler::Dispatch() {
  if (!started_ || shutting_down_) return;
  std::map<std::string, int> running = RunningByGroup();
  // Free devices that a job on several devices, queued before the jobs that
  // look at them, waits to gather.
  std::vector<bool> held(slots_.size(), false);
  while (true) {
    // Of the queued jobs that free devices fit (and whose group is under
    // its cap): the highest priority; then the group running the fewest;
    // then the first submitted.
    auto best = queue_.end();
    std::vector<size_t> best_slots;
    std::fill(held.begin(), held.end(), false);
    for (auto it = queue_.begin(); it != queue_.end(); ++it) {
      if (best != queue_.end() && it->priority < best->priority) break;  // sorted by priority
      if (max_running_per_group_ > 0 && running[it->group] >= max_running_per_group_) continue;
      std::vector<size_t> chosen = FreeSlotsFor(*it, held);
      if (chosen.empty()) {
        if (it->devices > 1) {
          // It holds the free devices of the first kind the pool can give it
          // enough of, until the rest free up.
          for (Device::Kind kind : Kinds(it->request)) {
            if (!PoolFits(*it, kind)) continue;
            for (size_t i = 0; i < slots_.size(); ++i) {
              if (slots_[i].job_id.empty() && !slots_[i].gone && slots_[i].device.kind == kind)
                held[i] = true;
            }
            break;
          }
        }
        continue;
      }
      // Fewest running; then the group that started a job longest ago
      // (round robin between groups); then the queue's order.
      if (best == queue_.end() || running[it->group] < running[best->group] ||
          (running[it->group] == running[best->group] &&
           last_start_[it->group] < last_start_[best->group])) {
        best = it;
        best_slots = std::move(chosen);
      }
    }
    if (best == queue_.end()) break;
    RunningJob& job = running_[best->job_id];
    job.slots = best_slots;
    job.group = best->group;
    job.priority = best->priority;
    job.order = best->order;
    job.stop = std::make_unique<StopToken>();
    for (size_t i : best_slots) slots_[i].job_id = best->job_id;
    job.thread = std::thread(&Scheduler::RunJob, this, best->job_id);
    ++running[best->group];
    last_start_[best->group] = ++starts_;
    queue_.erase(best);
  }
  if (preemption_) PreemptLocked();
}

void Scheduler::PreemptLocked() {
  std::map<std::string, int> running = RunningByGroup();
  for (const QueuedJob& waiting : queue_) {
    // A group at its cap could not start the job on the room made for it.
    if (max_running_per_group_ > 0 && running[waiting.group] >= max_running_per_group_) continue;
    // Jobs make room for it once at a time.
    bool pending = false;
    for (const auto& [id, job] : running_) {
      if (job.stop->reason() == StopReason::kPreempted && job.stop->by() == waiting.job_id) {
        pending = true;
      }
    }
    if (pending) continue;
    // Running jobs of lower priority on devices it fits: the lowest
    // priority first, then the latest submitted.
    std::vector<RunningJob*> candidates;
    for (auto& [id, job] : running_) {
      if (job.stop->stop_requested() || job.priority >= waiting.priority) continue;
      candidates.push_back(&job);
    }
    std::sort(candidates.begin(), candidates.end(), [](const RunningJob* a, const RunningJob* b) {
      if (a->priority != b->priority) return a->priority < b->priority;
      return a->order > b->order;
    });
    for (Device::Kind kind : Kinds(waiting.request)) {
      auto usable = [&](size_t i) {
        return !slots_[i].gone && slots_[i].device.kind == kind &&
               Fits(waiting.request, waiting.devices, slots_[i].device);
      };
      // Room, and room on this daemon's own devices (the first replica's).
      int room = 0, local_room = 0;
      for (size_t i = 0; i < slots_.size(); ++i) {
        if (slots_[i].job_id.empty() && usable(i)) {
          ++room;
          if (slots_[i].device.local()) ++local_room;
        }
      }
      std::vector<RunningJob*> victims;
      for (RunningJob* candidate : candidates) {
        if (room >= waiting.devices && local_room > 0) break;
        int frees = 0, local_frees = 0;
        for (size_t i : candidate->slots) {
          if (!usable(i)) continue;
          ++frees;
          if (slots_[i].device.local()) ++local_frees;
        }
        if (frees == 0) continue;
        room += frees;
        local_room += local_frees;
        victims.push_back(candidate);
      }
      if (room < waiting.devices || local_room == 0 || victims.empty()) continue;
      for (RunningJob* victim : victims) {
        victim->stop->RequestStop(StopReason::kPreempted, waiting.job_id);
      }
      break;
    }
  }
}

void Scheduler::RunJob(std::string job_id) {
  std::vector<Device> devices;
  const StopToken* stop = nullptr;
  {
    absl::MutexLock lock(&mu_);
    const RunningJob& job = running_.at(job_id);
    for (size_t i : job.slots) devices.push_back(slots_[i].device);
    stop = job.stop.get();
  }
  run_(job_id, devices, *stop);
  absl::MutexLock lock(&mu_);
  auto it = running_.find(job_id);
  for (size_t i : it->second.slots) slots_[i].job_id.clear();
  // This thread cannot join itself: it leaves its handle to be reaped by the
  // next thread through here, or by Shutdown.
  // (Shutdown may have taken the handle already.)
  if (it->second.thread.joinable()) finished_.push_back(std::move(it->second.thread));
  // The stop token goes with the entry: the job has returned and no longer reads it.
  running_.erase(it);
  ReapLocked();
  Dispatch();
}

void Scheduler::ReapLocked() {
  for (auto it = finished_.begin(); it != finished_.end();) {
    if (it->get_id() == std::this_thread::get_id()) {
      ++it;
      continue;
    }
    // It has done all its work under mu_ and only has to return.
    it->join();
    it = finished_.erase(it);
  }
}

Scheduler::CancelOutcome Scheduler::Cancel(const std::string& job_id) {
  absl::MutexLock lock(&mu_);
  auto it = std::find_if(queue_.begin(), queue_.end(),
                         [&](const QueuedJob& job) { return job.job_id == job_id; });
  if (it != queue_.end()) {
    queue_.erase(it);
    // A job on several devices may have held free devices that others can take now.
    Dispatch();
    return CancelOutcome::kRemovedFromQueue;
  }
  auto running = running_.find(job_id);
  if (running != running_.end()) {
    running->second.stop->RequestStop(StopReason::kCancelled);
    return CancelOutcome::kStopRequested;
  }
  return CancelOutcome::kNotFound;
}

int64_t Scheduler::QueuePosition(const std::string& job_id) const {
  absl::MutexLock lock(&mu_);
  auto it = std::find_if(queue_.begin(), queue_.end(),
                         [&](const QueuedJob& job) { return job.job_id == job_id; });
  if (it == queue_.end()) return 0;
  return std::count_if(queue_.begin(), it + 1,
                       [&](const QueuedJob& job) { return job.group == it->group; });
}

int64_t Scheduler::QueueLength() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int64_t>(queue_.size());
}

std::vector<Scheduler::DeviceState> Scheduler::Devices() const {
  absl::MutexLock lock(&mu_);
  std::vector<DeviceState> states;
  for (const Slot& slot : slots_) {
    if (!slot.gone) states.push_back({slot.device, slot.job_id});
  }
  return states;
}

void Scheduler::AddDevices(const std::vector<Device>& devices) {
  absl::MutexLock lock(&mu_);
  for (const Device& device : devices) {
    auto it = std::find_if(slots_.begin(), slots_.end(),
                           [&](const Slot& slot) { return slot.device.name() == device.name(); });
    if (it != slots_.end()) {
      it->device = device;
      it->gone = false;
      continue;
    }
    Slot slot;
    slot.device = device;
    slots_.push_back(std::move(slot));
  }
  Dispatch();
}

void Scheduler::RemoveHost(const std::string& host) {
  if (host.empty()) return;
  absl::MutexLock lock(&mu_);
  for (Slot& slot : slots_) {
    if (slot.device.host == host) slot.gone = true;
  }
  // Jobs that held them may start elsewhere, or hold others now.
  Dispatch();
}

int Scheduler::Capacity(const v1::DeviceRequest& request) const {
  absl::MutexLock lock(&mu_);
  int best = 0;
  for (Device::Kind kind : Kinds(request)) {
    int count = 0;
    bool local = false;
    for (const Slot& slot : slots_) {
      // (Any CUDA device of a kind may join a gang; one alone must fit.)
      if (slot.gone || slot.device.kind != kind || !Fits(request, 2, slot.device)) continue;
      ++count;
      local = local || slot.device.local();
    }
    if (local) best = std::max(best, count);
  }
  return best;
}

void Scheduler::Shutdown() {
  std::vector<std::thread> threads;
  {
    absl::MutexLock lock(&mu_);
    shutting_down_ = true;
    for (auto& [id, job] : running_) {
      job.stop->RequestStop(StopReason::kShutdown);
      if (job.thread.joinable()) threads.push_back(std::move(job.thread));
    }
    for (std::thread& thread : finished_) threads.push_back(std::move(thread));
    finished_.clear();
  }
  for (std::thread& thread : threads) thread.join();
}

}  // namespace ftd::scheduler
