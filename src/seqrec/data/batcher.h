// SequenceBatch (the first torch type of the pipeline) and the batchers that build it:
// TrainBatcher (shuffled, optionally length-bucketed, negatives sampled, prefetched in a background
// thread) and
// make_eval_batch (histories of evaluation queries).
//
// Layout: sequences are left-padded with item 0. A batch may be narrower than the model's L: it is
// trimmed to its longest sequence, and `position_offset` = L - width keeps absolute positions
// (the newest item is always at position L-1, as in the SASRec code).
#pragma once

#include <torch/types.h>

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "seqrec/data/interaction_store.h"
#include "seqrec/data/split.h"

namespace seqrec::data {

/// A batch of left-padded sequences.
struct SequenceBatch {
  torch::Tensor item_ids;        ///< [B, W] int64, 0 = padding
  torch::Tensor timestamps;      ///< [B, W] int64 (undefined without timestamps)
  torch::Tensor targets;         ///< [B, W] int64 next item per position, 0 = no target (train)
  torch::Tensor target_timestamps;  ///< [B, W] int64 timestamp of each target (train, optional)
  torch::Tensor negatives;       ///< [B, W, R] int64 sampled negatives per position (train, optional)
  torch::Tensor user_ids;        ///< [B] int64 dense user index
  int64_t position_offset = 0;   ///< L - W
  bool last_only = false;        ///< the caller reads only the last position (eval): encode may skip the rest
  /// The same batch with every tensor on `device` (the batch itself when already there).
  SequenceBatch to(const torch::Device& device) const;
};

/// The real positions of a left-padded batch, packed row-major (what models encode during training:
/// no layer computes padding).
struct PackedPositions {
  torch::Tensor rows;        ///< [T] int64: indices of the real slots in the flattened [B * W] batch
  torch::Tensor lengths;     ///< [B] int64: real items per sequence
  torch::Tensor cu_seqlens;  ///< [B + 1] int64: sequence b's packed rows are cu[b] .. cu[b + 1] - 1
  int64_t batch = 0, width = 0;
  /// [T, D] -> [B, W, D] with zeros at the padding.
  torch::Tensor unpack(const torch::Tensor& x) const;
};

/// Packs the non-zero entries of item_ids [B, W].
PackedPositions pack_positions(const torch::Tensor& item_ids);

/// Options of the training batcher.
struct TrainBatcherOptions {
  int64_t max_seq_len = 200;     ///< L
  int64_t batch_size = 128;      ///< B
  int64_t num_negatives = 0;     ///< R per position (0 = none)
  bool exclude_history = false;  ///< negatives avoid the user's training items
  bool length_bucketing = false; ///< batch similar lengths together (batches are always trimmed to
                                 ///< their longest sequence)
  bool chunk_long_sequences = false;  ///< HLLM: non-overlapping chunks of L+1 instead of the last L+1
  int64_t holdout = 2;           ///< items held out per evaluated user (split.h: 2 = valid and test, 1 = test)
  uint64_t seed = 42;
  int64_t rank = 0;              ///< this process's shard (data parallel; shards are disjoint and cover all samples)
  int64_t world_size = 1;
  int64_t prefetch = 4;          ///< batches buffered ahead
  std::vector<char> excluded_items;  ///< [V+1] items dropped from samples and negatives (cold start); empty = none
  // PerSRec (systems.md §6.1): the last `recent_item_num` slots of a window (max_seq_len wide,
  // left-padded) are recent, the slots before them old.
  int64_t recent_item_num = 0;   ///< R (0 = no split: the two options below are off)
  int64_t boundary_target = -1;  ///< target of the last old item: -1 = the next item, 0 = none, > 0 = this id
  double recent_item_dropout = 0;  ///< each recent input is dropped (id and target 0) with this probability
};

/// One training sample: events [begin, end) of a user's store row; input = [begin, end-1),
/// targets = [begin+1, end).
struct TrainSample {
  int64_t user;
  int64_t begin;
  int64_t end;
};

/// Builds the training samples (GR/SASRec: the last L+1 training items of each user).
/// Items marked in `excluded` ([V+1], cold start) do not count: spans cover the last L+1 kept items.
std::vector<TrainSample> build_train_samples(const InteractionStore& store, int64_t max_seq_len,
                                             bool chunk_long_sequences, const std::vector<char>& excluded = {},
                                             int64_t holdout = 2);

/// Produces training batches for an epoch; a background thread builds them ahead of use.
class TrainBatcher {
 public:
  TrainBatcher(InteractionStore store, TrainBatcherOptions options);
  ~TrainBatcher();
  TrainBatcher(const TrainBatcher&) = delete;
  TrainBatcher& operator=(const TrainBatcher&) = delete;

  /// Training samples over all ranks.
  int64_t num_samples() const { return static_cast<int64_t>(samples_.size()); }
  /// Batches this rank gets per epoch: the same on every rank (a data-parallel step is collective).
  int64_t batches_per_epoch() const;
  /// Starts producing the batches of `epoch` (order is a function of seed and epoch only).
  void start_epoch(int64_t epoch);
  /// Next batch of the current epoch; false when the epoch is done.
  bool next(SequenceBatch* batch);

 private:
  std::vector<std::vector<int64_t>> plan_epoch(int64_t epoch) const;
  SequenceBatch make_batch(const std::vector<int64_t>& sample_ids, uint64_t seed) const;
  void shape_recent(int64_t row, int64_t width, int64_t pad, uint64_t seed, int64_t* ids, int64_t* tgt) const;
  void stop();

  InteractionStore store_;
  TrainBatcherOptions options_;
  std::vector<TrainSample> samples_;
  // Prefetch state.
  std::thread worker_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<SequenceBatch> queue_;
  int64_t remaining_ = 0;         // batches not yet handed out this epoch
  bool stop_ = false;
  std::exception_ptr error_;
};

/// A batch of evaluation histories (last L items of each query's history), queries [begin, end).
SequenceBatch make_eval_batch(const std::vector<EvalQuery>& queries, int64_t begin, int64_t end,
                              int64_t max_seq_len);

}  // namespace seqrec::data
