#include "server/core/event_hub.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "server/core/error_details.h"

namespace ftd::core {
namespace {

// Events read from the store at a time, for a watcher behind the live ones.
constexpr int kHistoryPage = 64;

}  // namespace

EventSubscription::~EventSubscription() { hub_->Unsubscribe(id_); }

EventSubscription::Pull EventSubscription::Next(v1::JobEvent* event, absl::Status* status) {
  return hub_->Next(id_, event, status);
}

EventHub::EventHub(Options options) : options_(std::move(options)) {
  thread_ = std::thread([this] { WakeLoop(); });
}

EventHub::~EventHub() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    cv_.SignalAll();
  }
  thread_.join();
}

absl::StatusOr<std::unique_ptr<EventSubscription>> EventHub::Subscribe(
    const std::string& job_id, int64_t after_sequence, int64_t last_sequence, bool ended,
    std::function<void()> wake, const std::string& tenant) {
  absl::MutexLock lock(&mu_);
  const size_t per_tenant = options_.max_subscriptions_per_tenant;
  auto open = per_tenant_.find(tenant);
  if (!tenant.empty() && per_tenant > 0 && open != per_tenant_.end() &&
      open->second >= per_tenant) {
    return WithReason(absl::ResourceExhaustedError(
                          absl::StrCat("tenant \"", tenant, "\" has its most open watches (",
                                       per_tenant, "); close one or try again later")),
                      "TENANT_TOO_MANY_WATCHES", {{"limit", absl::StrCat(per_tenant)}});
  }
  if (subs_.size() >= options_.max_subscriptions) {
    return WithReason(absl::ResourceExhaustedError(absl::StrCat(
                          "too many open watches (the limit is ", options_.max_subscriptions,
                          "); close one or try again later")),
                      "TOO_MANY_WATCHES", {{"limit", absl::StrCat(options_.max_subscriptions)}});
  }
  const uint64_t id = next_id_++;
  auto sub = std::make_unique<Sub>();
  sub->job_id = job_id;
  sub->tenant = tenant;
  if (!tenant.empty()) ++per_tenant_[tenant];
  sub->wake = std::move(wake);
  sub->next = std::max<int64_t>(after_sequence, 0) + 1;
  sub->known_last = last_sequence;
  if (ended) {
    sub->close_status = absl::OkStatus();
  } else if (closed_all_.has_value()) {
    sub->close_status = *closed_all_;
  }
  Sub& ref = *sub;
  subs_[id] = std::move(sub);
  by_job_[job_id].insert(id);
  WakeLocked(id, ref);
  return std::unique_ptr<EventSubscription>(new EventSubscription(this, id));
}

void EventHub::Publish(const v1::JobEvent& event) {
  absl::MutexLock lock(&mu_);
  auto job = by_job_.find(event.job_id());
  if (job == by_job_.end()) return;
  for (uint64_t id : job->second) {
    Sub& sub = *subs_.at(id);
    if (sub.close_status.has_value()) continue;  // closed: nothing after the close
    sub.known_last = std::max(sub.known_last, event.sequence());
    if (event.sequence() >= sub.next) {
      if (sub.live.size() >= options_.max_buffered_events) {
        // Too far behind: what it has not seen is read from the store.
        sub.live.clear();
      }
      sub.live.push_back(event);
    }
    if (sub.waiting) WakeLocked(id, sub);
  }
}

void EventHub::CloseJob(const std::string& job_id, const absl::Status& status) {
  absl::MutexLock lock(&mu_);
  auto job = by_job_.find(job_id);
  if (job == by_job_.end()) return;
  for (uint64_t id : job->second) {
    Sub& sub = *subs_.at(id);
    if (sub.close_status.has_value()) continue;
    sub.close_status = status;
    WakeLocked(id, sub);
  }
}

void EventHub::CloseAll(const absl::Status& status) {
  absl::MutexLock lock(&mu_);
  closed_all_ = status;
  for (auto& [id, sub] : subs_) {
    if (sub->close_status.has_value()) continue;
    sub->close_status = status;
    WakeLocked(id, *sub);
  }
}

size_t EventHub::subscriptions() const {
  absl::MutexLock lock(&mu_);
  return subs_.size();
}

size_t EventHub::buffered_events() const {
  absl::MutexLock lock(&mu_);
  size_t n = 0;
  for (const auto& [id, sub] : subs_) n += sub->live.size() + sub->history.size();
  return n;
}

EventSubscription::Pull EventHub::Next(uint64_t id, v1::JobEvent* event, absl::Status* status) {
  absl::MutexLock lock(&mu_);
  Sub* sub = subs_.at(id).get();
  while (true) {
    for (std::deque<v1::JobEvent>* queue : {&sub->history, &sub->live}) {
      while (!queue->empty() && queue->front().sequence() < sub->next) queue->pop_front();
      if (!queue->empty() && queue->front().sequence() == sub->next) {
        *event = std::move(queue->front());
        queue->pop_front();
        ++sub->next;
        return EventSubscription::Pull::kEvent;
      }
    }
    if (sub->next <= sub->known_last) {
      // Stored but not buffered (the history, or live events it fell behind
      // on): a page from the store, read outside the lock. Only this
      // subscription's owner calls Next, so `sub` stays.
      const std::string job_id = sub->job_id;
      const int64_t after = sub->next - 1;
      mu_.Unlock();
      absl::StatusOr<storage::EventPage> page =
          options_.store->ListEvents(job_id, after, kHistoryPage, "");
      mu_.Lock();
      if (!page.ok()) {
        *status = absl::UnavailableError(
            absl::StrCat("cannot read ", job_id, "'s events: ", page.status().message()));
        sub->close_status = *status;
        sub->known_last = sub->next - 1;
        return EventSubscription::Pull::kClosed;
      }
      if (page->events.empty()) {
        // The store has no more than this (it cannot be behind what was
        // published, so this is the end of what exists).
        sub->known_last = sub->next - 1;
      } else if (page->events.front().sequence() > sub->next) {
        // Events the history's bound dropped (--max_job_events): their
        // numbers are skipped.
        sub->next = page->events.front().sequence();
      }
      sub->history.assign(std::make_move_iterator(page->events.begin()),
                          std::make_move_iterator(page->events.end()));
      continue;
    }
    if (sub->close_status.has_value()) {
      *status = *sub->close_status;
      return EventSubscription::Pull::kClosed;
    }
    sub->waiting = true;
    return EventSubscription::Pull::kWait;
  }
}

void EventHub::Unsubscribe(uint64_t id) {
  absl::MutexLock lock(&mu_);
  auto it = subs_.find(id);
  if (it == subs_.end()) return;
  const bool from_own_wake = in_flight_ == id && std::this_thread::get_id() == thread_.get_id();
  while (in_flight_ == id && !from_own_wake) done_cv_.Wait(&mu_);
  auto job = by_job_.find(it->second->job_id);
  if (job != by_job_.end()) {
    job->second.erase(id);
    if (job->second.empty()) by_job_.erase(job);
  }
  if (queued_.erase(id) > 0) wakes_.erase(std::find(wakes_.begin(), wakes_.end(), id));
  if (const std::string& tenant = it->second->tenant; !tenant.empty()) {
    auto count = per_tenant_.find(tenant);
    if (--count->second == 0) per_tenant_.erase(count);
  }
  // From inside its own wake, the wake function runs on: freed once it returns.
  if (from_own_wake) dying_ = std::move(it->second);
  subs_.erase(it);
}

void EventHub::WakeLocked(uint64_t id, Sub& sub) {
  sub.waiting = false;
  if (queued_.insert(id).second) {
    wakes_.push_back(id);
    cv_.Signal();
  }
}

void EventHub::WakeLoop() {
  absl::MutexLock lock(&mu_);
  while (true) {
    while (!stopping_ && wakes_.empty()) cv_.Wait(&mu_);
    if (wakes_.empty()) return;  // stopping, with every queued wake delivered
    const uint64_t id = wakes_.front();
    wakes_.pop_front();
    queued_.erase(id);
    Sub* sub = subs_.at(id).get();
    in_flight_ = id;
    mu_.Unlock();
    sub->wake();
    mu_.Lock();
    in_flight_ = 0;
    dying_.reset();
    done_cv_.SignalAll();
  }
}

}  // namespace ftd::core
