#include "server/metrics/metrics.h"

#include <algorithm>
#include <utility>

#include "absl/status/status.h"
#include "prometheus/text_serializer.h"

namespace ftd::metrics {
namespace {

using prometheus::BuildCounter;
using prometheus::BuildGauge;
using prometheus::BuildHistogram;
using prometheus::Counter;
using prometheus::Family;
using prometheus::Gauge;
using prometheus::Histogram;
using prometheus::Registry;

Family<Gauge>& GaugeFamily(Registry& registry, const std::string& name, const std::string& help) {
  return BuildGauge().Name(name).Help(help).Register(registry);
}
Family<Counter>& CounterFamily(Registry& registry, const std::string& name,
                               const std::string& help) {
  return BuildCounter().Name(name).Help(help).Register(registry);
}
Family<Histogram>& HistogramFamily(Registry& registry, const std::string& name,
                                   const std::string& help) {
  return BuildHistogram().Name(name).Help(help).Register(registry);
}

const Histogram::BucketBoundaries& StepBuckets() {
  static const auto* buckets =
      new Histogram::BucketBoundaries{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
  return *buckets;
}
const Histogram::BucketBoundaries& QueueWaitBuckets() {
  static const auto* buckets = new Histogram::BucketBoundaries{
      0.1, 0.5, 1, 5, 15, 60, 300, 900, 1800, 3600, 4 * 3600, 12 * 3600};
  return *buckets;
}
const Histogram::BucketBoundaries& ReadBuckets() {
  static const auto* buckets = new Histogram::BucketBoundaries{
      0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1};
  return *buckets;
}

// Counters only go up: adds what is missing to reach `total`.
void RaiseTo(Counter& counter, double total) {
  const double now = counter.Value();
  if (total > now) counter.Increment(total - now);
}

const char* StateLabel(v1::JobState state) {
  switch (state) {
    case v1::JOB_STATE_QUEUED:
      return "queued";
    case v1::JOB_STATE_RUNNING:
      return "running";
    case v1::JOB_STATE_CANCELLING:
      return "cancelling";
    case v1::JOB_STATE_SUCCEEDED:
      return "succeeded";
    case v1::JOB_STATE_FAILED:
      return "failed";
    case v1::JOB_STATE_CANCELLED:
      return "cancelled";
    default:
      return nullptr;
  }
}

constexpr v1::JobState kStates[] = {v1::JOB_STATE_QUEUED,     v1::JOB_STATE_RUNNING,
                                    v1::JOB_STATE_CANCELLING, v1::JOB_STATE_SUCCEEDED,
                                    v1::JOB_STATE_FAILED,     v1::JOB_STATE_CANCELLED};

}  // namespace

std::string GrpcCodeName(int code) {
  // gRPC's codes are absl's, number for number.
  const std::string name = absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
  return name.empty() ? "UNKNOWN" : name;
}

Metrics::Metrics(Options options)
    : options_(std::move(options)),
      registry_(std::make_shared<Registry>()),
      jobs_(GaugeFamily(*registry_, "ftd_jobs", "Jobs by state (every job the daemon knows).")),
      queue_length_(
          GaugeFamily(*registry_, "ftd_queue_length", "Jobs waiting in the scheduler's queue.")
              .Add({})),
      submitted_(
          CounterFamily(*registry_, "ftd_jobs_submitted_total", "Jobs accepted by SubmitJob.")
              .Add({})),
      finished_(CounterFamily(*registry_, "ftd_jobs_finished_total",
                              "Jobs that reached a final state, by outcome.")),
      queue_wait_(HistogramFamily(*registry_, "ftd_queue_wait_seconds",
                                  "Time from a job's submission to the start of its run.")
                      .Add({}, QueueWaitBuckets())),
      samples_per_second_(GaugeFamily(*registry_, "ftd_job_samples_per_second",
                                      "Training throughput of a job in its current epoch.")),
      step_seconds_(HistogramFamily(*registry_, "ftd_job_step_duration_seconds",
                                    "Duration of a job's training steps (forward, backward, "
                                    "optimizer, cache reads and writes).")),
      epoch_(GaugeFamily(*registry_, "ftd_job_epoch", "A job's current epoch (1-based).")),
      loss_(GaugeFamily(*registry_, "ftd_job_training_loss",
                        "A job's mean training loss in its current epoch.")),
      accuracy_(GaugeFamily(*registry_, "ftd_job_validation_accuracy_ratio",
                            "A job's accuracy on its validation dataset at the last evaluation.")),
      samples_(CounterFamily(*registry_, "ftd_job_samples_trained_total",
                             "Training examples a job has trained on (each epoch counts).")),
      frozen_layers_(GaugeFamily(*registry_, "ftd_job_frozen_layers",
                                 "Encoder layers frozen (a prefix, with the embeddings).")),
      layers_(GaugeFamily(*registry_, "ftd_job_layers", "Encoder layers of the job's model.")),
      trained_parameters_(GaugeFamily(*registry_, "ftd_job_trained_parameters_ratio",
                                      "Fraction of the model's parameters that still train.")),
      freeze_decisions_(CounterFamily(*registry_, "ftd_job_freeze_decisions_total",
                                      "Freeze decision points a job has passed (AutoFreeze "
                                      "evaluations, or the start of static freezing).")),
      forwards_skipped_(CounterFamily(*registry_, "ftd_job_layer_forward_passes_skipped_total",
                                      "Encoder-layer forward passes not run because the "
                                      "activation cache served their output, per example.")),
      backwards_skipped_(CounterFamily(*registry_, "ftd_job_layer_backward_passes_skipped_total",
                                       "Encoder-layer backward passes not run because the layer "
                                       "is frozen, per example.")),
      cache_hits_(CounterFamily(*registry_, "ftd_cache_hits_total",
                                "Examples that started at the frozen depth from a stored "
                                "activation.")),
      cache_partial_hits_(CounterFamily(*registry_, "ftd_cache_partial_hits_total",
                                        "Examples that started from an activation stored at a "
                                        "shallower depth than the frozen prefix.")),
      cache_misses_(CounterFamily(*registry_, "ftd_cache_misses_total",
                                  "Examples computed from the embeddings while a prefix was "
                                  "frozen and the cache on.")),
      allreduce_bytes_(
          CounterFamily(*registry_, "ftd_allreduce_bytes_total",
                        "Bytes a job on several devices all-reduced between its "
                        "replicas (each replica's share: the gradients of the layers "
                        "still training and a step's sums); frozen layers send none.")),
      cache_stored_bytes_(
          GaugeFamily(*registry_, "ftd_cache_stored_bytes", "Bytes of activations in the cache.")
              .Add({})),
      cache_capacity_bytes_(GaugeFamily(*registry_, "ftd_cache_capacity_bytes",
                                        "The cache's size cap (--cache_max_mb).")
                                .Add({})),
      cache_read_bytes_(CounterFamily(*registry_, "ftd_cache_read_bytes_total",
                                      "Bytes of activations read from the cache.")
                            .Add({})),
      cache_written_bytes_(CounterFamily(*registry_, "ftd_cache_written_bytes_total",
                                         "Bytes of activations written to the cache.")
                               .Add({})),
      cache_read_seconds_(HistogramFamily(*registry_, "ftd_cache_read_duration_seconds",
                                          "Duration of the cache's reads (one MultiGet per "
                                          "batch).")
                              .Add({}, ReadBuckets())),
      cache_evictions_(CounterFamily(*registry_, "ftd_cache_evictions_total",
                                     "Cache segments evicted to stay under the size cap.")
                           .Add({})),
      cache_corrupt_(CounterFamily(*registry_, "ftd_cache_corrupt_entries_total",
                                   "Stored activations that failed their checksum or did not "
                                   "decode (recomputed and deleted).")
                         .Add({})),
      device_busy_(GaugeFamily(*registry_, "ftd_device_busy",
                               "1 while a job runs on the device, 0 while it is idle.")),
      device_memory_(GaugeFamily(*registry_, "ftd_device_memory_used_bytes",
                                 "Memory LibTorch's allocator holds in tensors on a CUDA "
                                 "device.")),
      grpc_requests_(CounterFamily(*registry_, "ftd_grpc_requests_total",
                                   "gRPC requests handled, by method and status code.")),
      rocksdb_live_(GaugeFamily(*registry_, "ftd_rocksdb_live_data_bytes",
                                "RocksDB's estimate of live data, by column family.")),
      rocksdb_pending_(GaugeFamily(*registry_, "ftd_rocksdb_pending_compaction_bytes",
                                   "RocksDB's estimate of bytes compaction still has to rewrite, "
                                   "by column family.")),
      rocksdb_memtables_(GaugeFamily(*registry_, "ftd_rocksdb_memtable_bytes",
                                     "Memory of RocksDB's memtables (writes not yet flushed to "
                                     "tables), by column family.")),
      resident_memory_(GaugeFamily(*registry_, "ftd_process_resident_memory_bytes",
                                   "Resident memory of the daemon's process.")
                           .Add({})) {
  GaugeFamily(*registry_, "ftd_build_info", "The daemon's version (value 1).")
      .Add({{"version", options_.version}})
      .Set(1);
  for (v1::JobState state : kStates) jobs_.Add({{"state", StateLabel(state)}});
  for (const char* outcome : {"succeeded", "failed", "cancelled"}) {
    finished_.Add({{"outcome", outcome}});
  }
}

Metrics::~Metrics() = default;

std::vector<prometheus::MetricFamily> Metrics::Collect() const {
  absl::MutexLock collect_lock(&collect_mu_);
  std::vector<std::function<void()>> hooks;
  {
    absl::MutexLock lock(&mu_);
    hooks = scrape_hooks_;
  }
  for (const auto& hook : hooks) hook();
  {
    absl::MutexLock lock(&mu_);
    SweepLocked();
  }
  return registry_->Collect();
}

std::string Metrics::Serialize() const { return prometheus::TextSerializer().Serialize(Collect()); }

void Metrics::AddScrapeHook(std::function<void()> hook) {
  absl::MutexLock lock(&mu_);
  scrape_hooks_.push_back(std::move(hook));
}

void Metrics::SetJobCounts(const std::map<v1::JobState, int64_t>& counts, int64_t queue_length) {
  for (v1::JobState state : kStates) {
    auto it = counts.find(state);
    jobs_.Add({{"state", StateLabel(state)}})
        .Set(it == counts.end() ? 0 : static_cast<double>(it->second));
  }
  queue_length_.Set(static_cast<double>(queue_length));
}

void Metrics::JobSubmitted() { submitted_.Increment(); }

void Metrics::JobFinished(v1::JobState state) {
  const char* label = StateLabel(state);
  if (label == nullptr || (state != v1::JOB_STATE_SUCCEEDED && state != v1::JOB_STATE_FAILED &&
                           state != v1::JOB_STATE_CANCELLED)) {
    return;
  }
  finished_.Add({{"outcome", label}}).Increment();
}

void Metrics::ObserveQueueWait(absl::Duration wait) {
  queue_wait_.Observe(std::max(0.0, absl::ToDoubleSeconds(wait)));
}

void Metrics::JobStarted(const std::string& job_id, const std::string& model,
                         const std::string& device) {
  absl::MutexLock lock(&mu_);
  auto it = jobs_series_.find(job_id);
  if (it != jobs_series_.end()) RemoveLocked(it->second);  // a run before this one
  JobSeries series;
  series.labels = {{"job_id", job_id}, {"model", model}, {"device", device}};
  const prometheus::Labels& l = series.labels;
  series.samples_per_second = &samples_per_second_.Add(l);
  series.step_seconds = &step_seconds_.Add(l, StepBuckets());
  series.epoch = &epoch_.Add(l);
  series.loss = &loss_.Add(l);
  series.samples = &samples_.Add(l);
  series.frozen_layers = &frozen_layers_.Add(l);
  series.layers = &layers_.Add(l);
  series.trained_parameters = &trained_parameters_.Add(l);
  series.trained_parameters->Set(1);
  series.freeze_decisions = &freeze_decisions_.Add(l);
  series.forwards_skipped = &forwards_skipped_.Add(l);
  series.backwards_skipped = &backwards_skipped_.Add(l);
  series.cache_hits = &cache_hits_.Add(l);
  series.cache_partial_hits = &cache_partial_hits_.Add(l);
  series.cache_misses = &cache_misses_.Add(l);
  series.allreduce_bytes = &allreduce_bytes_.Add(l);
  jobs_series_[job_id] = std::move(series);
}

void Metrics::RecordStep(const std::string& job_id, const training::StepStats& stats) {
  for (double seconds : stats.cache_read_seconds) cache_read_seconds_.Observe(seconds);
  cache_read_bytes_.Increment(static_cast<double>(stats.cache_bytes_read));
  cache_written_bytes_.Increment(static_cast<double>(stats.cache_bytes_written));
  cache_corrupt_.Increment(static_cast<double>(stats.cache_corrupt));

  absl::MutexLock lock(&mu_);
  auto it = jobs_series_.find(job_id);
  if (it == jobs_series_.end()) return;
  JobSeries& s = it->second;
  s.samples_per_second->Set(stats.samples_per_second);
  s.step_seconds->Observe(stats.seconds);
  s.epoch->Set(stats.epoch);
  s.loss->Set(stats.loss);
  s.samples->Increment(static_cast<double>(stats.examples));
  s.frozen_layers->Set(stats.frozen_layers);
  s.layers->Set(stats.total_layers);
  s.trained_parameters->Set(stats.trained_parameter_fraction);
  s.forwards_skipped->Increment(static_cast<double>(stats.layer_forwards_skipped));
  s.backwards_skipped->Increment(static_cast<double>(stats.layer_backwards_skipped));
  s.cache_hits->Increment(static_cast<double>(stats.cache_hits));
  s.cache_partial_hits->Increment(static_cast<double>(stats.cache_partial_hits));
  s.cache_misses->Increment(static_cast<double>(stats.cache_misses));
  s.allreduce_bytes->Increment(static_cast<double>(stats.allreduce_bytes));
}

void Metrics::RecordEvaluation(const std::string& job_id, const v1::Evaluation& evaluation) {
  absl::MutexLock lock(&mu_);
  auto it = jobs_series_.find(job_id);
  if (it == jobs_series_.end()) return;
  if (it->second.accuracy == nullptr) it->second.accuracy = &accuracy_.Add(it->second.labels);
  it->second.accuracy->Set(evaluation.accuracy());
}

void Metrics::RecordFreezeDecision(const std::string& job_id, const v1::FreezeDecision& decision) {
  absl::MutexLock lock(&mu_);
  auto it = jobs_series_.find(job_id);
  if (it == jobs_series_.end()) return;
  JobSeries& s = it->second;
  s.freeze_decisions->Increment();
  s.frozen_layers->Set(decision.frozen_after());
  s.layers->Set(decision.total_layers());
  s.trained_parameters->Set(decision.trainable_parameter_fraction());
}

void Metrics::JobStopped(const std::string& job_id) {
  absl::MutexLock lock(&mu_);
  auto it = jobs_series_.find(job_id);
  if (it == jobs_series_.end()) return;
  it->second.expires = options_.now() + options_.job_retention;
  it->second.samples_per_second->Set(0);
}

void Metrics::RemoveLocked(const JobSeries& s) const {
  samples_per_second_.Remove(s.samples_per_second);
  step_seconds_.Remove(s.step_seconds);
  epoch_.Remove(s.epoch);
  loss_.Remove(s.loss);
  if (s.accuracy != nullptr) accuracy_.Remove(s.accuracy);
  samples_.Remove(s.samples);
  frozen_layers_.Remove(s.frozen_layers);
  layers_.Remove(s.layers);
  trained_parameters_.Remove(s.trained_parameters);
  freeze_decisions_.Remove(s.freeze_decisions);
  forwards_skipped_.Remove(s.forwards_skipped);
  backwards_skipped_.Remove(s.backwards_skipped);
  cache_hits_.Remove(s.cache_hits);
  cache_partial_hits_.Remove(s.cache_partial_hits);
  cache_misses_.Remove(s.cache_misses);
  allreduce_bytes_.Remove(s.allreduce_bytes);
}

void Metrics::SweepLocked() const {
  const absl::Time now = options_.now();
  for (auto it = jobs_series_.begin(); it != jobs_series_.end();) {
    if (it->second.expires <= now) {
      RemoveLocked(it->second);
      it = jobs_series_.erase(it);
    } else {
      ++it;
    }
  }
}

void Metrics::SetDeviceBusy(const std::string& device, bool busy) {
  device_busy_.Add({{"device", device}}).Set(busy ? 1 : 0);
}

void Metrics::SetDeviceMemoryUsed(const std::string& device, int64_t bytes) {
  device_memory_.Add({{"device", device}}).Set(static_cast<double>(bytes));
}

void Metrics::SetCacheSize(int64_t stored_bytes, int64_t capacity_bytes) {
  cache_stored_bytes_.Set(static_cast<double>(stored_bytes));
  cache_capacity_bytes_.Set(static_cast<double>(capacity_bytes));
}

void Metrics::SetCacheEvictions(int64_t evictions) {
  RaiseTo(cache_evictions_, static_cast<double>(evictions));
}

void Metrics::RecordGrpcRequest(const std::string& method, const std::string& code) {
  grpc_requests_.Add({{"method", method}, {"code", code}}).Increment();
}

void Metrics::SetRocksDbSizes(const std::string& column_family, int64_t live_data_bytes,
                              int64_t pending_compaction_bytes, int64_t memtable_bytes) {
  rocksdb_live_.Add({{"column_family", column_family}}).Set(static_cast<double>(live_data_bytes));
  rocksdb_pending_.Add({{"column_family", column_family}})
      .Set(static_cast<double>(pending_compaction_bytes));
  rocksdb_memtables_.Add({{"column_family", column_family}})
      .Set(static_cast<double>(memtable_bytes));
}

void Metrics::SetResidentMemory(int64_t bytes) { resident_memory_.Set(static_cast<double>(bytes)); }

void Metrics::SetCpuKernels(const std::string& blas_core, const std::string& best_blas_core,
                            const std::string& cpu_features) {
  GaugeFamily(*registry_, "ftd_cpu_kernels_info",
              "The matrix-product kernels the daemon runs (value 1): the core OpenBLAS chose, the "
              "one made for this CPU, and the CPU's vector features.")
      .Add({{"blas_core", blas_core},
            {"best_blas_core", best_blas_core},
            {"cpu_features", cpu_features}})
      .Set(1);
}

}  // namespace ftd::metrics
