// EventHub: fans a job's events out to its watchers, outside the job
// manager's lock and in bounded memory.
//
// A watcher subscribes to one job from a sequence number and pulls events
// with Next(); the hub calls its wake function (on the hub's own thread,
// never under the manager's or the hub's lock) when Next() may have
// something new. Each subscription buffers at most
// `Options::max_buffered_events` live events; a watcher that falls further
// behind loses nothing: its buffer is dropped and Next() reads the events it
// has not seen from the job store, in pages, as it reads the history before
// its first live event. So a slow client costs the daemon at most that many
// events of memory, and a watch from sequence 0 of a long job does not hold
// the whole history at once.
//
// Thread-safe. Lock order: a caller's locks (the manager's), then the hub's.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "ftd/v1/ftd.pb.h"
#include "storage/job_store.h"

namespace ftd::core {

class EventHub;

// One watcher's view of one job's events. Destroying it unsubscribes: once
// the destructor returns, its wake function is not called again (it may be
// destroyed from inside that wake function).
class EventSubscription {
 public:
  enum class Pull {
    kEvent,   // *event is the next event
    kWait,    // nothing now; the wake function is called when there is
    kClosed,  // no more events; *status says why (OK: the job ended)
  };

  ~EventSubscription();
  EventSubscription(const EventSubscription&) = delete;
  EventSubscription& operator=(const EventSubscription&) = delete;

  // The next event in sequence order. One caller at a time; it may read the
  // job store (outside every lock).
  Pull Next(v1::JobEvent* event, absl::Status* status);

 private:
  friend class EventHub;
  EventSubscription(EventHub* hub, uint64_t id) : hub_(hub), id_(id) {}
  EventHub* const hub_;
  const uint64_t id_;
};

class EventHub {
 public:
  struct Options {
    storage::JobStore* store = nullptr;  // not owned; outlives the hub
    // Live events one subscription holds before it falls back to the store.
    size_t max_buffered_events = 256;
    // Open subscriptions at once (each holds a stream); more are refused.
    size_t max_subscriptions = 1024;
    // ... of one tenant's (those subscribed with a tenant; 0: no limit), so
    // that one tenant cannot take every place.
    size_t max_subscriptions_per_tenant = 0;
  };

  explicit EventHub(Options options);
  // Delivers the wakes already queued; every subscription must be gone
  // once it returns.
  ~EventHub();
  EventHub(const EventHub&) = delete;
  EventHub& operator=(const EventHub&) = delete;

  // Subscribes to `job_id`'s events after `after_sequence`, the job's
  // newest being `last_sequence` now. With `ended` the job has no more
  // events: the subscription closes (OK) after `last_sequence`. `wake` is
  // called once soon and then whenever Next() may have more.
  // `tenant` (empty: an admin's, or no tenants) counts against that
  // tenant's share.
  // Errors: RESOURCE_EXHAUSTED when the tenant's max_subscriptions_per_tenant
  // (reason TENANT_TOO_MANY_WATCHES) or max_subscriptions (TOO_MANY_WATCHES)
  // are open.
  absl::StatusOr<std::unique_ptr<EventSubscription>> Subscribe(const std::string& job_id,
                                                               int64_t after_sequence,
                                                               int64_t last_sequence, bool ended,
                                                               std::function<void()> wake,
                                                               const std::string& tenant = "");

  // A stored event (its job id and sequence set), for the job's watchers.
  void Publish(const v1::JobEvent& event);
  // The job has no more events: its subscriptions close with `status` once
  // their watchers have had every event published so far.
  void CloseJob(const std::string& job_id, const absl::Status& status);
  // CloseJob for every job (the daemon is stopping); later subscriptions
  // close at once, after their history.
  void CloseAll(const absl::Status& status);

  size_t subscriptions() const;
  // Events held for watchers now, over every subscription.
  size_t buffered_events() const;

 private:
  friend class EventSubscription;
  struct Sub {
    std::string job_id;
    std::string tenant;
    std::function<void()> wake;
    int64_t next = 1;                          // the sequence Next() returns next
    int64_t known_last = 0;                    // the newest sequence the job is known to have
    std::deque<v1::JobEvent> live;             // published events, oldest first
    std::deque<v1::JobEvent> history;          // a page read from the store
    std::optional<absl::Status> close_status;  // closes once next > known_last
    bool waiting = false;                      // Next() said kWait and no wake was queued since
  };

  EventSubscription::Pull Next(uint64_t id, v1::JobEvent* event, absl::Status* status);
  void Unsubscribe(uint64_t id);
  // Queues `id`'s wake (under mu_).
  void WakeLocked(uint64_t id, Sub& sub) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void WakeLoop();

  const Options options_;
  mutable absl::Mutex mu_;
  absl::CondVar cv_;       // wakes queued, or stopping
  absl::CondVar done_cv_;  // a wake call returned
  std::map<uint64_t, std::unique_ptr<Sub>> subs_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::set<uint64_t>> by_job_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, size_t> per_tenant_ ABSL_GUARDED_BY(mu_);  // open subscriptions
  std::deque<uint64_t> wakes_ ABSL_GUARDED_BY(mu_);
  std::set<uint64_t> queued_ ABSL_GUARDED_BY(mu_);  // the ids in wakes_
  uint64_t in_flight_ ABSL_GUARDED_BY(mu_) = 0;     // the id whose wake runs now
  // A subscription destroyed from inside its own wake: freed once it returns.
  std::unique_ptr<Sub> dying_ ABSL_GUARDED_BY(mu_);
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
  std::optional<absl::Status> closed_all_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;  // calls the wake functions
};

}  // namespace ftd::core
