#include "server/training/cache/activation_cache.h"

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/sha256.h"
#include "server/training/parallel/replica_shard.h"

namespace ftd::training {
namespace {

using storage::ActivationDtype;

v1::ActivationCache::Dtype ToProto(ActivationDtype dtype) {
  return dtype == ActivationDtype::kFp32 ? v1::ActivationCache::DTYPE_FP32
                                         : v1::ActivationCache::DTYPE_BF16;
}

}  // namespace

torch::Tensor PrefixOutput(BertClassifierImpl& model, const torch::Tensor& ids,
                           const torch::Tensor& mask_bias,
                           const std::vector<CachedActivation>& cached, int depth,
                           const torch::Device& device) {
  torch::NoGradGuard no_grad;
  const int64_t rows = ids.size(0), seq = ids.size(1);
  std::map<int, std::vector<int64_t>> starts;  // start layer (-1: embeddings) -> rows
  for (int64_t i = 0; i < rows; ++i) {
    starts[cached.empty() ? -1 : std::min(cached[i].layer, depth)].push_back(i);
  }
  if (starts.size() == 1 && starts.begin()->first < 0) {
    return model.RunPrefix(model.Embed(ids), mask_bias, 0, depth);  // nothing stored
  }
  // The stored rows, padded with zeros to the batch's length: the mask keeps
  // padding out of every real token's attention, so its value does not matter.
  int64_t hidden = 0;
  for (const CachedActivation& c : cached) {
    if (c.layer >= 0) hidden = c.value.size(1);
  }
  torch::Tensor stored = torch::zeros({rows, seq, hidden}, torch::kFloat);
  for (int64_t i = 0; i < rows; ++i) {
    const CachedActivation& c = cached[i];
    if (c.layer >= 0) stored[i].narrow(0, 0, c.value.size(0)).copy_(c.value);
  }
  stored = stored.to(device);
  torch::Tensor out = stored;
  for (const auto& [start, members] : starts) {
    if (start == depth) continue;
    if (static_cast<int64_t>(members.size()) == rows) {  // the whole batch starts here
      torch::Tensor from = start < 0 ? model.Embed(ids) : stored;
      return model.RunPrefix(from, mask_bias, std::max(start, 0), depth).to(torch::kFloat);
    }
    torch::Tensor index = torch::tensor(members, torch::kLong).to(device);
    torch::Tensor from =
        start < 0 ? model.Embed(ids.index_select(0, index)) : stored.index_select(0, index);
    torch::Tensor h =
        model.RunPrefix(from, mask_bias.index_select(0, index), std::max(start, 0), depth);
    out.index_copy_(0, index, h.to(torch::kFloat));
  }
  return out;
}

std::string ParameterDigest(torch::nn::Module& module) {
  Sha256 hash;
  for (const auto& item : module.named_parameters()) {
    torch::Tensor p = item.value().detach().to(torch::kCPU).to(torch::kFloat).contiguous();
    hash.Update(item.key());
    hash.Update(absl::StrCat(":", p.sizes().size()));
    for (int64_t d : p.sizes()) hash.Update(absl::StrCat(",", d));
    hash.Update(std::string_view(static_cast<const char*>(p.data_ptr()),
                                 static_cast<size_t>(p.numel()) * sizeof(float)));
  }
  return hash.FinishHex();
}

JobActivationCache::JobActivationCache(Options options)
    : options_(std::move(options)),
      dataset_bytes_(absl::HexStringToBytes(options_.dataset_fingerprint)),
      level_(options_.lengths.size(), -1) {
  totals_.set_epoch(0);
  reader_ = std::thread([this] { ReaderLoop(); });
}

JobActivationCache::~JobActivationCache() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    reading_ = false;
  }
  cv_.notify_all();
  reader_.join();
  for (Segment& segment : segments_) {
    if (segment.held) options_.store->Release(options_.job_id, segment.key, false).IgnoreError();
  }
  options_.store->Flush().IgnoreError();
}

void JobActivationCache::Disable(const std::string& reason) {
  if (!enabled()) return;
  disabled_reason_ = reason;
  {
    std::lock_guard<std::mutex> lock(mu_);
    reading_ = false;
  }
  cv_.notify_all();
}

bool JobActivationCache::TakeDisabledReport(v1::CacheReport* report) {
  if (enabled() || disabled_reported_) return false;
  disabled_reported_ = true;
  *report->mutable_epoch() = epoch_stats_;
  *report->mutable_totals() = totals_;
  Add(report->mutable_totals(), epoch_stats_);
  report->set_disabled_reason(disabled_reason_);
  for (v1::CacheSegment& s : DescribeSegments()) *report->add_segments() = std::move(s);
  return true;
}

void JobActivationCache::SetDepth(const std::vector<std::string>& block_digests) {
  const int depth = static_cast<int>(block_digests.size()) - 1;
  if (!enabled() || depth <= depth_) return;
  Sha256 hash;
  hash.Update("ftd-activations/1\n");
  hash.Update(options_.inputs_digest);
  hash.Update(options_.dtype == ActivationDtype::kFp32 ? "\nfp32\n" : "\nbf16\n");
  for (const std::string& digest : block_digests) hash.Update(digest);
  const std::array<uint8_t, 32> full = hash.Finish();
  storage::SegmentKey key{std::string(full.begin(), full.begin() + 16), dataset_bytes_, depth};

  v1::CacheSegment info;
  info.set_dtype(ToProto(options_.dtype));
  info.set_base_model(options_.base_model);
  info.set_tenant(options_.tenant);
  if (absl::Status s = options_.store->Acquire(options_.job_id, key, info); !s.ok()) {
    Disable(std::string(s.message()));
    return;
  }
  // What is stored at this depth already (by an earlier job, or before a
  // restart) serves at once.
  absl::StatusOr<std::vector<int64_t>> present = options_.store->ListExamples(key);
  std::lock_guard<std::mutex> lock(mu_);
  depth_ = depth;
  segments_.push_back(Segment{key, 0, true});
  const int index = static_cast<int>(segments_.size()) - 1;
  if (present.ok()) {
    for (int64_t example : *present) {
      if (example < 0 || example >= static_cast<int64_t>(level_.size())) continue;
      if (level_[example] >= 0) --segments_[level_[example]].rows;
      level_[example] = index;
      ++segments_[index].rows;
    }
  } else {
    epoch_stats_.set_errors(epoch_stats_.errors() + 1);  // what is there recomputes
  }
  for (int i = 0; i < index; ++i) MaybeDrop(i);
}

void JobActivationCache::MaybeDrop(int index) {
  Segment& segment = segments_[index];
  if (!segment.held || segment.rows > 0 || index == static_cast<int>(segments_.size()) - 1) return;
  segment.held = false;
  options_.store->Release(options_.job_id, segment.key, /*drop=*/true).IgnoreError();
}

void JobActivationCache::StartEpoch(const std::vector<int64_t>& order, int64_t batch_size,
                                    int64_t first_batch) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++generation_;
    order_ = order;
    batch_size_ = batch_size;
    num_batches_ = (static_cast<int64_t>(order.size()) + batch_size - 1) / batch_size;
    next_fetch_ = next_take_ = std::clamp<int64_t>(first_batch, 0, num_batches_);
    fetched_.clear();
  }
  cv_.notify_all();
}

void JobActivationCache::ReaderLoop() {
  // The reader must only take CPU time the training leaves idle: on a
  // machine whose cores all run the training's BLAS threads, a reader at
  // normal priority preempts one of them and the whole matrix product waits
  // (see docs/performance.md).
  setpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)), 19);
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    cv_.wait(lock, [&] {
      return !reading_ ||
             (next_fetch_ < num_batches_ && next_fetch_ < next_take_ + options_.prefetch_batches);
    });
    if (!reading_) return;
    const uint64_t generation = generation_;
    const int64_t b = next_fetch_;
    int64_t begin = b * batch_size_;
    int64_t end = std::min<int64_t>(begin + batch_size_, static_cast<int64_t>(order_.size()));
    if (options_.replicas > 1) {  // this replica's share of the batch
      const parallel::RowRange share =
          parallel::ReplicaRows(end - begin, options_.replica, options_.replicas);
      begin += share.begin;
      end = begin + share.count;
    }
    std::vector<int64_t> rows(order_.begin() + begin, order_.begin() + end);
    std::vector<std::pair<storage::SegmentKey, int64_t>> keys;
    std::vector<size_t> positions;
    std::vector<int> layers;
    for (size_t i = 0; i < rows.size(); ++i) {
      const int level = level_[rows[i]];
      if (level < 0) continue;
      keys.emplace_back(segments_[level].key, rows[i]);
      positions.push_back(i);
      layers.push_back(segments_[level].key.layer);
    }
    lock.unlock();

    std::vector<CachedActivation> batch(rows.size());
    int64_t corrupt = 0, errors = 0, bytes = 0;
    double read_seconds = -1;
    if (!keys.empty()) {
      const auto read_start = std::chrono::steady_clock::now();
      std::vector<absl::StatusOr<std::string>> values = options_.store->MultiGet(keys);
      read_seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - read_start).count();
      for (size_t k = 0; k < keys.size(); ++k) {
        const int64_t example = keys[k].second;
        if (!values[k].ok()) {
          if (absl::IsDataLoss(values[k].status())) {  // RocksDB's own checksums
            ++corrupt;
            options_.store->Delete(keys[k].first, example).IgnoreError();
          } else if (!absl::IsNotFound(values[k].status())) {
            ++errors;
          }
          continue;
        }
        absl::StatusOr<storage::ActivationView> view = storage::DecodeActivation(*values[k]);
        if (!view.ok() || view->dtype != options_.dtype ||
            view->tokens != static_cast<uint32_t>(options_.lengths[example]) ||
            view->hidden != static_cast<uint32_t>(options_.hidden_size)) {
          ++corrupt;
          options_.store->Delete(keys[k].first, example).IgnoreError();
          continue;
        }
        const auto dtype = view->dtype == ActivationDtype::kBf16 ? torch::kBFloat16 : torch::kFloat;
        torch::Tensor value =
            torch::from_blob(
                const_cast<char*>(view->data),
                {static_cast<int64_t>(view->tokens), static_cast<int64_t>(view->hidden)}, dtype)
                .to(torch::kFloat, /*non_blocking=*/false, /*copy=*/true);
        bytes += static_cast<int64_t>(values[k]->size());
        batch[positions[k]] = CachedActivation{layers[k], std::move(value)};
      }
    }

    lock.lock();
    if (generation != generation_ || !reading_) continue;  // a new epoch began meanwhile
    read_corrupt_ += corrupt;
    read_errors_ += errors;
    read_bytes_ += bytes;
    if (read_seconds >= 0) read_seconds_.push_back(read_seconds);
    fetched_[b] = std::move(batch);
    ++next_fetch_;
    cv_.notify_all();
  }
}

std::vector<CachedActivation> JobActivationCache::Take(int64_t b) {
  const auto start = std::chrono::steady_clock::now();
  std::vector<CachedActivation> batch;
  {
    std::unique_lock<std::mutex> lock(mu_);
    if (!reading_) return {};
    cv_.wait(lock, [&] { return !reading_ || fetched_.count(b) > 0; });
    if (!reading_) return {};
    batch = std::move(fetched_[b]);
    fetched_.erase(b);
    next_take_ = b + 1;
    epoch_stats_.set_corrupt(epoch_stats_.corrupt() + read_corrupt_);
    epoch_stats_.set_errors(epoch_stats_.errors() + read_errors_);
    epoch_stats_.set_bytes_read(epoch_stats_.bytes_read() + read_bytes_);
    read_corrupt_ = read_errors_ = read_bytes_ = 0;
    taken_read_seconds_.insert(taken_read_seconds_.end(), read_seconds_.begin(),
                               read_seconds_.end());
    read_seconds_.clear();
  }
  cv_.notify_all();
  epoch_stats_.set_read_wait_seconds(
      epoch_stats_.read_wait_seconds() +
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  if (depth_ > 0) {
    for (const CachedActivation& c : batch) {
      epoch_stats_.set_examples(epoch_stats_.examples() + 1);
      if (c.layer == depth_) {
        epoch_stats_.set_hits(epoch_stats_.hits() + 1);
      } else if (c.layer >= 0) {
        epoch_stats_.set_partial_hits(epoch_stats_.partial_hits() + 1);
      } else {
        epoch_stats_.set_misses(epoch_stats_.misses() + 1);
      }
    }
  }
  return batch;
}

std::vector<double> JobActivationCache::TakeReadSeconds() {
  return std::exchange(taken_read_seconds_, {});
}

void JobActivationCache::Store(const int64_t* rows, size_t count,
                               const std::vector<CachedActivation>& cached,
                               const torch::Tensor& hidden) {
  if (!enabled() || depth_ == 0) return;
  std::vector<int64_t> members;
  for (size_t i = 0; i < count; ++i) {
    if (cached.empty() || cached[i].layer != depth_) members.push_back(static_cast<int64_t>(i));
  }
  if (members.empty()) return;
  torch::Tensor values;
  {
    torch::NoGradGuard no_grad;
    values = hidden.detach();
    if (static_cast<int64_t>(members.size()) != hidden.size(0)) {
      values = values.index_select(0, torch::tensor(members, torch::kLong).to(hidden.device()));
    }
    values = values.to(options_.dtype == ActivationDtype::kBf16 ? torch::kBFloat16 : torch::kFloat)
                 .to(torch::kCPU)
                 .contiguous();
  }
  const size_t element = storage::ActivationDtypeSize(options_.dtype);
  const int64_t row_stride = values.size(1) * values.size(2);
  const char* base = static_cast<const char*>(values.data_ptr());
  std::vector<std::pair<int64_t, std::string>> entries;
  int64_t bytes = 0;
  for (size_t m = 0; m < members.size(); ++m) {
    const int64_t example = rows[members[m]];
    const int64_t tokens = options_.lengths[example];
    entries.emplace_back(example,
                         storage::EncodeActivation(options_.dtype, static_cast<uint32_t>(tokens),
                                                   static_cast<uint32_t>(values.size(2)),
                                                   base + m * row_stride * element));
    bytes += static_cast<int64_t>(entries.back().second.size());
  }
  const int index = static_cast<int>(segments_.size()) - 1;
  absl::Status s = options_.store->Put(segments_[index].key, entries);
  if (!s.ok()) {
    epoch_stats_.set_errors(epoch_stats_.errors() + 1);
    if (absl::IsResourceExhausted(s) || ++consecutive_write_errors_ >= 3) {
      Disable(absl::StrCat("caching turned off, training goes on: ", s.message()));
    }
    return;
  }
  consecutive_write_errors_ = 0;
  epoch_stats_.set_entries_written(epoch_stats_.entries_written() +
                                   static_cast<int64_t>(entries.size()));
  epoch_stats_.set_bytes_written(epoch_stats_.bytes_written() + bytes);
  std::vector<int64_t> examples;
  examples.reserve(entries.size());
  for (const auto& entry : entries) examples.push_back(entry.first);
  std::lock_guard<std::mutex> lock(mu_);
  MoveTo(index, examples);
}

void JobActivationCache::MoveTo(int index, const std::vector<int64_t>& examples) {
  std::set<int> touched;
  for (int64_t example : examples) {
    const int old = level_[example];
    if (old == index) continue;
    if (old >= 0) {
      --segments_[old].rows;
      touched.insert(old);
    }
    level_[example] = index;
    ++segments_[index].rows;
  }
  for (int old : touched) MaybeDrop(old);
}

void JobActivationCache::MarkStored(const int64_t* rows, size_t count) {
  if (!enabled() || depth_ == 0) return;
  std::lock_guard<std::mutex> lock(mu_);
  MoveTo(static_cast<int>(segments_.size()) - 1, std::vector<int64_t>(rows, rows + count));
}

void JobActivationCache::ReplaceEpochStats(const v1::CacheStats& all) { epoch_stats_ = all; }

void JobActivationCache::Add(v1::CacheStats* to, const v1::CacheStats& from) {
  to->set_frozen_layers(from.frozen_layers());
  to->set_examples(to->examples() + from.examples());
  to->set_hits(to->hits() + from.hits());
  to->set_partial_hits(to->partial_hits() + from.partial_hits());
  to->set_misses(to->misses() + from.misses());
  to->set_corrupt(to->corrupt() + from.corrupt());
  to->set_errors(to->errors() + from.errors());
  to->set_entries_written(to->entries_written() + from.entries_written());
  to->set_bytes_written(to->bytes_written() + from.bytes_written());
  to->set_bytes_read(to->bytes_read() + from.bytes_read());
  to->set_read_wait_seconds(to->read_wait_seconds() + from.read_wait_seconds());
}

std::vector<v1::CacheSegment> JobActivationCache::DescribeSegments() const {
  std::vector<v1::CacheSegment> out;
  std::lock_guard<std::mutex> lock(mu_);
  for (const Segment& segment : segments_) {
    absl::StatusOr<v1::CacheSegment> s = options_.store->Segment(segment.key);
    if (s.ok()) out.push_back(*std::move(s));
  }
  return out;
}

internal::CacheProgress JobActivationCache::SaveProgress() const {
  internal::CacheProgress progress;
  progress.set_depth(depth_);
  *progress.mutable_epoch_stats() = epoch_stats_;
  *progress.mutable_totals() = totals_;
  progress.set_disabled_reason(disabled_reason_);
  progress.set_disabled_reported(disabled_reported_);
  std::lock_guard<std::mutex> lock(mu_);
  for (const Segment& segment : segments_) {
    internal::CacheProgress::Segment* s = progress.add_segments();
    s->set_namespace_(segment.key.ns);
    s->set_dataset(segment.key.dataset);
    s->set_layer(segment.key.layer);
    s->set_rows(segment.rows);
    s->set_held(segment.held);
  }
  progress.mutable_level()->Reserve(static_cast<int>(level_.size()));
  for (int level : level_) progress.add_level(level);
  return progress;
}

absl::Status JobActivationCache::RestoreProgress(const internal::CacheProgress& progress) {
  if (progress.level_size() != static_cast<int>(options_.lengths.size())) {
    return absl::InvalidArgumentError(absl::StrCat("the cache progress covers ",
                                                   progress.level_size(), " examples, not ",
                                                   options_.lengths.size()));
  }
  for (int level : progress.level()) {
    if (level < -1 || level >= progress.segments_size()) {
      return absl::InvalidArgumentError("the cache progress names a segment it lacks");
    }
  }
  std::vector<Segment> segments;
  for (const internal::CacheProgress::Segment& s : progress.segments()) {
    if (s.dataset() != dataset_bytes_) {
      return absl::InvalidArgumentError("the cache progress is of another dataset");
    }
    segments.push_back(
        Segment{storage::SegmentKey{s.namespace_(), s.dataset(), s.layer()}, s.rows(), false});
  }
  epoch_stats_ = progress.epoch_stats();
  totals_ = progress.totals();
  disabled_reported_ = progress.disabled_reported();
  if (!progress.disabled_reason().empty()) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      segments_ = std::move(segments);
      level_.assign(progress.level().begin(), progress.level().end());
    }
    depth_ = progress.depth();
    Disable(progress.disabled_reason());
    return absl::OkStatus();
  }
  v1::CacheSegment info;
  info.set_dtype(ToProto(options_.dtype));
  info.set_base_model(options_.base_model);
  info.set_tenant(options_.tenant);
  for (size_t i = 0; i < segments.size(); ++i) {
    if (!progress.segments(static_cast<int>(i)).held()) continue;
    if (absl::Status s = options_.store->Acquire(options_.job_id, segments[i].key, info); !s.ok()) {
      for (size_t j = 0; j < i; ++j) {
        if (segments[j].held)
          options_.store->Release(options_.job_id, segments[j].key, false).IgnoreError();
      }
      Disable(std::string(s.message()));
      return absl::OkStatus();
    }
    segments[i].held = true;
  }
  std::lock_guard<std::mutex> lock(mu_);
  segments_ = std::move(segments);
  level_.assign(progress.level().begin(), progress.level().end());
  depth_ = progress.depth();
  return absl::OkStatus();
}

v1::CacheReport JobActivationCache::EndEpoch(int epoch) {
  epoch_stats_.set_epoch(epoch);
  epoch_stats_.set_frozen_layers(depth_);
  Add(&totals_, epoch_stats_);
  v1::CacheReport report;
  *report.mutable_epoch() = epoch_stats_;
  *report.mutable_totals() = totals_;
  report.set_disabled_reason(disabled_reason_);
  for (v1::CacheSegment& s : DescribeSegments()) *report.add_segments() = std::move(s);
  epoch_stats_ = v1::CacheStats();
  return report;
}

}  // namespace ftd::training
