// The activation cache as the training engine uses it.
//
// Once the embeddings and encoder layers 0..k-1 are frozen, their output for
// a training example (the input of layer k) never changes. The engine stores
// it the first time it computes it, during the normal forward pass, and in
// later epochs starts that example at layer k from the stored value. When the
// frozen prefix grows from k to k', a stored value at k still helps: the
// example runs layers k..k'-1 without gradients and is stored again at k';
// once every example has moved on, the entries at k are dropped.
//
// A reader thread fetches the next batches' entries (their order is known from
// the seed) while the current batch trains. Entries that fail their checksum
// or do not decode, and reads RocksDB refuses, are recomputed and counted,
// never trained on. A full disk or the size cap turns caching off for the job;
// training goes on.
#pragma once

#include <torch/torch.h>

#include <condition_variable>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "ftd/internal/training_checkpoint.pb.h"
#include "ftd/v1/ftd.pb.h"
#include "server/training/model/bert_model.h"
#include "storage/activation_codec.h"
#include "storage/activation_store.h"

namespace ftd::training {

// One example's stored input of some layer, as the reader found it.
struct CachedActivation {
  int layer = -1;       // the depth it was stored at; -1 when there is none
  torch::Tensor value;  // [tokens, hidden], float32, on the CPU
};

// The input of layer `depth` for a batch (ids and mask bias as the model
// takes them, padded to the same length), computed without gradients: rows
// with an entry at `depth` take it, rows with an entry at a shallower layer
// run the layers between, the others run the embeddings and layers
// 0..depth-1. `cached` is empty or has one element per row.
torch::Tensor PrefixOutput(BertClassifierImpl& model, const torch::Tensor& ids,
                           const torch::Tensor& mask_bias,
                           const std::vector<CachedActivation>& cached, int depth,
                           const torch::Device& device);

// A digest of a module's parameters (names, shapes and values): what makes a
// frozen block's output what it is.
std::string ParameterDigest(torch::nn::Module& module);

// One job's use of the cache. Not thread-safe: the trainer's thread calls it;
// it runs its own reader thread.
class JobActivationCache {
 public:
  struct Options {
    storage::ActivationStore* store = nullptr;
    std::string job_id;
    std::string dataset_fingerprint;  // hex SHA-256 of the training dataset
    // A digest of the tokenized training inputs and the compute settings
    // (precision): with the prefix's weights, all a stored value depends on.
    std::string inputs_digest;
    std::string base_model;
    std::string tenant;  // whose share of the cache its segments count in
    storage::ActivationDtype dtype = storage::ActivationDtype::kBf16;
    std::vector<int64_t> lengths;  // each training example's token count
    int64_t hidden_size = 0;
    int prefetch_batches = 4;
    // A replica of a data-parallel job reads and writes the entries of its
    // share of each batch only (parallel/replica_shard.h); `job_id` is then
    // the replica's own name for the store.
    int replica = 0;
    int replicas = 1;
  };

  explicit JobActivationCache(Options options);
  // Stops the reader and releases the segments (kept for later jobs).
  ~JobActivationCache();
  JobActivationCache(const JobActivationCache&) = delete;
  JobActivationCache& operator=(const JobActivationCache&) = delete;

  bool enabled() const { return disabled_reason_.empty(); }
  const std::string& disabled_reason() const { return disabled_reason_; }

  // The frozen prefix is now `block_digests.size() - 1` layers deep:
  // block_digests[0] is the embeddings', [i] encoder layer i-1's.
  void SetDepth(const std::vector<std::string>& block_digests);
  int depth() const { return depth_; }

  // Starts reading an epoch's batches, from batch `first_batch` (a resumed
  // job's position).
  void StartEpoch(const std::vector<int64_t>& order, int64_t batch_size, int64_t first_batch = 0);
  // Batch `b`'s entries in the order of its rows; waits for the reader.
  std::vector<CachedActivation> Take(int64_t b);
  // Stores `hidden`, the batch's input of the current depth ([rows, seq,
  // hidden]), for the rows that were not served at that depth.
  void Store(const int64_t* rows, size_t count, const std::vector<CachedActivation>& cached,
             const torch::Tensor& hidden);
  // With replicas: the other replicas have stored their shares of the batch
  // `rows` at the current depth too (each replica's reader may be given any
  // row in a later epoch). An entry whose write failed there reads as a miss
  // and is computed again.
  void MarkStored(const int64_t* rows, size_t count);
  // With replicas: the epoch's counts so far of all replicas together
  // (summed by the caller), in place of this replica's own, so that the
  // reports and totals are the job's.
  void ReplaceEpochStats(const v1::CacheStats& all);
  // The epoch's counts so far.
  const v1::CacheStats& epoch_stats() const { return epoch_stats_; }
  // How long each read (one MultiGet per batch) took, for the batches taken
  // since the last call.
  std::vector<double> TakeReadSeconds();
  // The epoch's counts and the job's so far; resets the epoch's.
  v1::CacheReport EndEpoch(int epoch);
  // A report to emit once, when caching has just turned off.
  bool TakeDisabledReport(v1::CacheReport* report);

  // Where the cache stands, for a checkpoint: its segments, which one holds
  // each example's deepest entry, and the counts. Call between batches.
  internal::CacheProgress SaveProgress() const;
  // Continues from a checkpoint's progress instead of SetDepth(): holds its
  // segments again and serves exactly the entries it knew of (entries
  // written after the checkpoint are written again, so that a resumed job
  // computes what an uninterrupted one does). A segment the store no longer
  // has turns into recomputed misses. Errors: INVALID_ARGUMENT when it does
  // not fit this dataset.
  absl::Status RestoreProgress(const internal::CacheProgress& progress);

 private:
  struct Segment {
    storage::SegmentKey key;
    int64_t rows = 0;  // examples whose best entry is here
    bool held = false;
  };

  void ReaderLoop();
  void Disable(const std::string& reason);
  // Examples now at segment `index`; gives up the segments they left when
  // no example's best entry remains there. Under mu_.
  void MoveTo(int index, const std::vector<int64_t>& examples);
  // Gives up segment `index` once no example's best entry is in it.
  void MaybeDrop(int index);
  void Add(v1::CacheStats* to, const v1::CacheStats& from);
  std::vector<v1::CacheSegment> DescribeSegments() const;

  const Options options_;
  std::string dataset_bytes_;
  std::string disabled_reason_;
  bool disabled_reported_ = false;
  int depth_ = 0;
  v1::CacheStats epoch_stats_, totals_;

  // Shared with the reader thread.
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Segment> segments_;  // by depth, shallow first
  std::vector<int> level_;         // per example: index into segments_, -1 for none
  std::vector<int64_t> order_;
  int64_t batch_size_ = 1;
  int64_t num_batches_ = 0;
  int64_t next_fetch_ = 0, next_take_ = 0;
  uint64_t generation_ = 0;
  bool reading_ = true;
  std::map<int64_t, std::vector<CachedActivation>> fetched_;
  int64_t read_corrupt_ = 0, read_errors_ = 0, read_bytes_ = 0;
  std::vector<double> read_seconds_;  // reads not yet taken
  std::vector<double> taken_read_seconds_;
  std::thread reader_;
  int consecutive_write_errors_ = 0;
};

}  // namespace ftd::training
