// Metrics: the daemon's Prometheus metrics (docs/metrics.md lists them).
//
// The job manager, the gRPC interceptor and the daemon's scrape hooks write
// them; an exposer (or a test) collects them. A job's series carry the labels
// job_id, model and device; they stay for a retention period after the job
// ends, then go, so that the number of series stays bounded.
//
// Thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "ftd/v1/ftd.pb.h"
#include "prometheus/collectable.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"
#include "server/training/trainer.h"

namespace ftd::metrics {

class Metrics final : public prometheus::Collectable {
 public:
  struct Options {
    std::string version = "dev";
    // How long a finished job's series stay.
    absl::Duration job_retention = absl::Minutes(10);
    std::function<absl::Time()> now = [] { return absl::Now(); };
  };

  explicit Metrics(Options options);
  ~Metrics() override;
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  // Runs the scrape hooks, removes the series of jobs past their retention,
  // and returns every metric family.
  std::vector<prometheus::MetricFamily> Collect() const override;
  // The metrics in Prometheus's text format (what /metrics serves).
  std::string Serialize() const;

  // Called at every collection, before it: readings taken on demand (the
  // store's sizes, the process's memory).
  void AddScrapeHook(std::function<void()> hook);

  // The registry, for the metrics of other subjects to add their families
  // to (security_metrics.h); collected with these.
  prometheus::Registry& registry() { return *registry_; }

  // Jobs.
  // Jobs per state (states missing from `counts` have none) and the queue.
  void SetJobCounts(const std::map<v1::JobState, int64_t>& counts, int64_t queue_length);
  void JobSubmitted();
  // A job reached a final state (SUCCEEDED, FAILED or CANCELLED).
  void JobFinished(v1::JobState state);
  void ObserveQueueWait(absl::Duration wait);

  // Training, per job: the job starts on `device`; its series are created.
  void JobStarted(const std::string& job_id, const std::string& model, const std::string& device);
  void RecordStep(const std::string& job_id, const training::StepStats& stats);
  void RecordEvaluation(const std::string& job_id, const v1::Evaluation& evaluation);
  void RecordFreezeDecision(const std::string& job_id, const v1::FreezeDecision& decision);
  // The job stopped running: its series go after the retention period.
  void JobStopped(const std::string& job_id);

  // Devices.
  void SetDeviceBusy(const std::string& device, bool busy);
  void SetDeviceMemoryUsed(const std::string& device, int64_t bytes);

  // The activation cache as a whole.
  void SetCacheSize(int64_t stored_bytes, int64_t capacity_bytes);
  // The store's eviction count since the daemon started.
  void SetCacheEvictions(int64_t evictions);

  // The server.
  void RecordGrpcRequest(const std::string& method, const std::string& code);
  void SetRocksDbSizes(const std::string& column_family, int64_t live_data_bytes,
                       int64_t pending_compaction_bytes, int64_t memtable_bytes);
  void SetResidentMemory(int64_t bytes);
  // ftd_cpu_kernels_info: the BLAS core in use, the one made for this CPU,
  // and the CPU's vector features (set once, at start-up).
  void SetCpuKernels(const std::string& blas_core, const std::string& best_blas_core,
                     const std::string& cpu_features);

 private:
  struct JobSeries {
    prometheus::Labels labels;
    prometheus::Gauge* samples_per_second;
    prometheus::Histogram* step_seconds;
    prometheus::Gauge* epoch;
    prometheus::Gauge* loss;
    prometheus::Gauge* accuracy = nullptr;  // after the first evaluation
    prometheus::Counter* samples;
    prometheus::Gauge* frozen_layers;
    prometheus::Gauge* layers;
    prometheus::Gauge* trained_parameters;
    prometheus::Counter* freeze_decisions;
    prometheus::Counter* forwards_skipped;
    prometheus::Counter* backwards_skipped;
    prometheus::Counter* cache_hits;
    prometheus::Counter* cache_partial_hits;
    prometheus::Counter* cache_misses;
    prometheus::Counter* allreduce_bytes;
    absl::Time expires = absl::InfiniteFuture();
  };

  void RemoveLocked(const JobSeries& series) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SweepLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Options options_;
  std::shared_ptr<prometheus::Registry> registry_;

  // Jobs.
  prometheus::Family<prometheus::Gauge>& jobs_;
  prometheus::Gauge& queue_length_;
  prometheus::Counter& submitted_;
  prometheus::Family<prometheus::Counter>& finished_;
  prometheus::Histogram& queue_wait_;

  // Per job.
  prometheus::Family<prometheus::Gauge>& samples_per_second_;
  prometheus::Family<prometheus::Histogram>& step_seconds_;
  prometheus::Family<prometheus::Gauge>& epoch_;
  prometheus::Family<prometheus::Gauge>& loss_;
  prometheus::Family<prometheus::Gauge>& accuracy_;
  prometheus::Family<prometheus::Counter>& samples_;
  prometheus::Family<prometheus::Gauge>& frozen_layers_;
  prometheus::Family<prometheus::Gauge>& layers_;
  prometheus::Family<prometheus::Gauge>& trained_parameters_;
  prometheus::Family<prometheus::Counter>& freeze_decisions_;
  prometheus::Family<prometheus::Counter>& forwards_skipped_;
  prometheus::Family<prometheus::Counter>& backwards_skipped_;
  prometheus::Family<prometheus::Counter>& cache_hits_;
  prometheus::Family<prometheus::Counter>& cache_partial_hits_;
  prometheus::Family<prometheus::Counter>& cache_misses_;
  prometheus::Family<prometheus::Counter>& allreduce_bytes_;

  // The cache as a whole.
  prometheus::Gauge& cache_stored_bytes_;
  prometheus::Gauge& cache_capacity_bytes_;
  prometheus::Counter& cache_read_bytes_;
  prometheus::Counter& cache_written_bytes_;
  prometheus::Histogram& cache_read_seconds_;
  prometheus::Counter& cache_evictions_;
  prometheus::Counter& cache_corrupt_;

  // Devices and the server.
  prometheus::Family<prometheus::Gauge>& device_busy_;
  prometheus::Family<prometheus::Gauge>& device_memory_;
  prometheus::Family<prometheus::Counter>& grpc_requests_;
  prometheus::Family<prometheus::Gauge>& rocksdb_live_;
  prometheus::Family<prometheus::Gauge>& rocksdb_pending_;
  prometheus::Family<prometheus::Gauge>& rocksdb_memtables_;
  prometheus::Gauge& resident_memory_;

  mutable absl::Mutex mu_;
  mutable std::map<std::string, JobSeries> jobs_series_ ABSL_GUARDED_BY(mu_);
  std::vector<std::function<void()>> scrape_hooks_ ABSL_GUARDED_BY(mu_);
  // Collections run one at a time (hooks write gauges).
  mutable absl::Mutex collect_mu_;
};

// The name of a gRPC status code as Prometheus labels carry it ("OK",
// "NOT_FOUND", ...).
std::string GrpcCodeName(int code);

}  // namespace ftd::metrics
