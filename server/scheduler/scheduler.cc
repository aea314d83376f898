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

bool Scheduler::Fits(const v1::DeviceRequest& request, const Device& device) {
  switch (request.kind()) {
    case v1::DeviceRequest::KIND_CPU:
      return device.kind == Device::Kind::kCpu;
    case v1::DeviceRequest::KIND_CUDA:
      return device.kind == Device::Kind::kCuda && device.index == request.cuda_index();
    default:
      return true;
  }
}

absl::Status Scheduler::CheckRequest(const v1::DeviceRequest& request) const {
  absl::MutexLock lock(&mu_);
  std::vector<std::string> cuda;
  for (const Slot& slot : slots_) {
    if (slot.device.kind == Device::Kind::kCuda) cuda.push_back(slot.device.name());
  }
  switch (request.kind()) {
    case v1::DeviceRequest::KIND_UNSPECIFIED:
    case v1::DeviceRequest::KIND_CPU:
      return absl::OkStatus();
    case v1::DeviceRequest::KIND_CUDA:
      if (request.cuda_index() < 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("device.cuda_index: must not be negative, got ", request.cuda_index()));
      }
      for (const Slot& slot : slots_) {
        if (Fits(request, slot.device)) return absl::OkStatus();
      }
      if (cuda.empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat("device: cuda:", request.cuda_index(),
                         " was requested but this server has no CUDA device; ask for cpu or any"));
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
                        const v1::DeviceRequest& request, const std::string& group) {
  absl::MutexLock lock(&mu_);
  QueuedJob job{job_id, priority, order, request, group};
  queue_.insert(std::upper_bound(queue_.begin(), queue_.end(), job, Before), std::move(job));
  Dispatch();
}

void Scheduler::Start() {
  absl::MutexLock lock(&mu_);
  started_ = true;
  Dispatch();
}

void Scheduler::Dispatch() {
  if (!started_ || shutting_down_) return;
  std::map<std::string, int> running;  // by group
  for (const Slot& slot : slots_) {
    if (!slot.job_id.empty()) ++running[slot.group];
  }
  while (true) {
    // Of the queued jobs that fit a free device (and whose group is under
    // its cap): the highest priority; then the group running the fewest;
    // then the first submitted.
    auto best = queue_.end();
    size_t best_slot = slots_.size();
    for (auto it = queue_.begin(); it != queue_.end(); ++it) {
      if (best != queue_.end() && it->priority < best->priority) break;  // sorted by priority
      if (max_running_per_group_ > 0 && running[it->group] >= max_running_per_group_) continue;
      size_t chosen = slots_.size();
      for (size_t i = 0; i < slots_.size(); ++i) {
        if (slots_[i].job_id.empty() && Fits(it->request, slots_[i].device)) {
          chosen = i;
          break;
        }
      }
      if (chosen == slots_.size()) continue;
      // Fewest running; then the group that started a job longest ago
      // (round robin between groups); then the queue's order.
      if (best == queue_.end() || running[it->group] < running[best->group] ||
          (running[it->group] == running[best->group] &&
           last_start_[it->group] < last_start_[best->group])) {
        best = it;
        best_slot = chosen;
      }
    }
    if (best == queue_.end()) break;
    Slot& slot = slots_[best_slot];
    slot.job_id = best->job_id;
    slot.group = best->group;
    slot.priority = best->priority;
    slot.order = best->order;
    slot.stop = std::make_unique<StopToken>();
    slot.thread = std::thread(&Scheduler::RunOnSlot, this, best_slot, best->job_id);
    ++running[best->group];
    last_start_[best->group] = ++starts_;
    queue_.erase(best);
  }
  if (preemption_) PreemptLocked();
}

void Scheduler::PreemptLocked() {
  std::map<std::string, int> running;  // by group
  for (const Slot& slot : slots_) {
    if (!slot.job_id.empty()) ++running[slot.group];
  }
  for (const QueuedJob& waiting : queue_) {
    // A group at its cap could not start the job on the room made for it.
    if (max_running_per_group_ > 0 && running[waiting.group] >= max_running_per_group_) continue;
    // One running job makes room for it at a time.
    bool pending = false;
    for (const Slot& slot : slots_) {
      if (!slot.job_id.empty() && slot.stop->reason() == StopReason::kPreempted &&
          slot.stop->by() == waiting.job_id) {
        pending = true;
      }
    }
    if (pending) continue;
    // The lowest priority below its own; of those, the latest submitted.
    Slot* victim = nullptr;
    for (Slot& slot : slots_) {
      if (slot.job_id.empty() || slot.stop->stop_requested() || slot.priority >= waiting.priority ||
          !Fits(waiting.request, slot.device)) {
        continue;
      }
      if (victim == nullptr || slot.priority < victim->priority ||
          (slot.priority == victim->priority && slot.order > victim->order)) {
        victim = &slot;
      }
    }
    if (victim != nullptr) victim->stop->RequestStop(StopReason::kPreempted, waiting.job_id);
  }
}

void Scheduler::RunOnSlot(size_t slot_index, std::string job_id) {
  Device device;
  const StopToken* stop = nullptr;
  {
    absl::MutexLock lock(&mu_);
    device = slots_[slot_index].device;
    stop = slots_[slot_index].stop.get();
  }
  run_(job_id, device, *stop);
  absl::MutexLock lock(&mu_);
  Slot& slot = slots_[slot_index];
  slot.job_id.clear();
  // This thread cannot join itself: it leaves its handle to be reaped by the
  // next thread through here, or by Shutdown.
  // (Shutdown may have taken the handle already.)
  if (slot.thread.joinable()) finished_.push_back(std::move(slot.thread));
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
    return CancelOutcome::kRemovedFromQueue;
  }
  for (Slot& slot : slots_) {
    if (slot.job_id == job_id) {
      slot.stop->RequestStop(StopReason::kCancelled);
      return CancelOutcome::kStopRequested;
    }
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
  for (const Slot& slot : slots_) states.push_back({slot.device, slot.job_id});
  return states;
}

void Scheduler::Shutdown() {
  std::vector<std::thread> threads;
  {
    absl::MutexLock lock(&mu_);
    shutting_down_ = true;
    for (Slot& slot : slots_) {
      if (!slot.job_id.empty()) slot.stop->RequestStop(StopReason::kShutdown);
      if (slot.thread.joinable()) threads.push_back(std::move(slot.thread));
    }
    for (std::thread& thread : finished_) threads.push_back(std::move(thread));
    finished_.clear();
  }
  for (std::thread& thread : threads) thread.join();
}

}  // namespace ftd::scheduler
