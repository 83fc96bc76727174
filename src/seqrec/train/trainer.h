// The training loop: batches -> loss -> gradients (one sync point) -> AdamW; per-epoch validation,
// early stopping, best/last checkpoints and exact resume.
//
// Files in train.out_dir: last.state.safetensors (the resume unit: weights, optimizer moments, loop
// counters and metrics.jsonl's text, one file written atomically after each epoch), last.safetensors
// (a copy of its weights, for eval and serve), best.safetensors, metrics.jsonl (one JSON line per
// epoch's training -- mean loss, last learning rate -- and per evaluation; a resume rewrites it to
// the state's text, so that no epoch appears twice).
// Determinism: data order and negatives are functions of (seed, epoch); the torch generator is
// reseeded from (seed, epoch) at each epoch start, so resuming at an epoch boundary reproduces an
// uninterrupted run bit for bit on CPU.
//
// Data parallel (setup.group set): rank 0's weights (and, on resume, its optimizer state and loop
// counters) are broadcast at the start, each rank trains on its shard of the samples, gradients are
// averaged by a dist::GradientReducer, validation and test are sharded and reduced exactly, and
// only rank 0 writes files and prints progress. train.zero_stage 1/2 shards the optimizer state (and
// the gradients) by parameter (zero.h); rank 0 still writes one consolidated state file.
// Gradient accumulation: train.grad_accum_steps consecutive batches per optimiser step, each
// batch's mean loss weighted by its share of the step's target positions (= one batch of all).
#pragma once

#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "seqrec/config/options.h"
#include "seqrec/data/interaction_store.h"
#include "seqrec/eval/evaluator.h"
#include "seqrec/eval/metrics.h"
#include "seqrec/models/recommender.h"
#include "seqrec/data/batcher.h"
#include "seqrec/train/checkpoint.h"
#include "seqrec/train/optim.h"
#include "seqrec/train/zero.h"

#include <optional>

namespace seqrec::dist {
class ProcessGroup;
class GradientReducer;
}  // namespace seqrec::dist

namespace seqrec::train {

/// Everything the trainer needs besides the model and the data.
struct TrainerSetup {
  config::DataOptions data;
  config::TrainOptions train;
  config::EvalOptions eval;          ///< protocol used for validation (and the final test)
  std::string model_yaml;            ///< resolved `model:` subtree, stored in checkpoints
  models::ModelContext context;      ///< stored in checkpoints
  int64_t rank = 0;                  ///< data-parallel rank (rank 0 writes files)
  int64_t world_size = 1;
  std::shared_ptr<dist::ProcessGroup> group;  ///< data-parallel group (null: one process); sets rank/world_size
  int64_t local_rank = 0;            ///< this process on its machine: train.device "cuda" means cuda:local_rank
};

/// The device train.device names: cpu, cuda (= cuda:local_rank) or cuda:N. Throws ConfigError
/// (train.device) when CUDA is asked for and this LibTorch has none or the GPU does not exist.
torch::Device resolve_device(const std::string& spec, int64_t local_rank);

/// The batcher options a run's config implies (one process; the trainer adds rank, world size
/// and the cold-start exclusions).
data::TrainBatcherOptions train_batcher_options(const config::DataOptions& data, const config::TrainOptions& train);

/// Where the gradients of all processes meet: the single-process default does nothing.
using GradientSync = std::function<void(const NamedTensors& params)>;

/// What training produced.
struct TrainSummary {
  int64_t epochs_run = 0;            ///< epochs completed in total (including resumed ones)
  int64_t best_epoch = 0;            ///< epoch of the best validation metric (1-based; data.holdout 1: the last evaluation)
  double best_metric = 0;            ///< its value
  eval::MetricSet test;              ///< test metrics of the best checkpoint (data.holdout 1: the last epoch's)
  int64_t test_users = 0;
  double train_seconds = 0;          ///< wall time of this invocation's training epochs
  double final_loss = 0;             ///< mean loss of the last epoch
};

/// Trains `model` on `store`.
class Trainer {
 public:
  Trainer(models::SequenceRecommender model, data::InteractionStore store, TrainerSetup setup);
  /// Installs the gradient all-reduce; default: none in one process, a dist::GradientReducer over
  /// setup.group in a data-parallel job.
  void set_gradient_sync(GradientSync sync) { sync_ = std::move(sync); }
  /// Trains on these rows instead of the store's training parts (nothing in them held out; the
  /// store still serves evaluation): data.train_feat_max_length (data::train_rows). One row per user
  /// of the store.
  void set_train_rows(data::InteractionStore rows);
  /// Runs to train.epochs (or early stop). With resume, continues from out_dir/last.* if present.
  TrainSummary fit(bool resume);

 private:
  /// The loop's counters, restored by a resume and saved with every epoch (TrainCounters), and what
  /// a resume read for the optimizer until the ranks have synchronised.
  struct RunState {
    int64_t start_epoch = 0;  ///< epochs already done
    double best = -std::numeric_limits<double>::infinity();
    int64_t best_epoch = 0;
    int64_t bad_evals = 0;    ///< evaluations without improvement (early stopping)
    bool stopped = false;     ///< early stopping ended the run (a resumed one trains no further)
    std::vector<std::string> committed_shards;  ///< the optimizer shards the resumed state names
    NamedTensors full_opt_state;                ///< a resume's optimizer state as read by this rank
    bool own_share_loaded = false;              ///< ZeRO: this rank read its moments from the shards itself
  };
  // The steps of fit(), in order.
  NamedTensors trainable_parameters() const;
  /// ZeRO in a data-parallel job: the shard plan, ZeRO-3's gate, and the parameters every rank keeps whole.
  void plan_sharding(const NamedTensors& params);
  /// With resume and a state in out_dir: weights, optimizer, counters (and metrics.jsonl cut back to
  /// them); otherwise a fresh start that clears what a killed run left.
  RunState restore(bool resume, const NamedTensors& params, AdamW& optimizer);
  /// Data parallel: rank 0's counters, weights and optimizer state everywhere; the gradient reducer.
  void sync_ranks(RunState& state, AdamW& optimizer, const NamedTensors& params);
  /// The batcher for this rank, after the checks the loss and the model's layout need.
  data::TrainBatcherOptions batcher_options() const;
  /// Refuses an empty training set; rank 0 logs the run's shape.
  void log_plan(const data::TrainBatcher& batcher, int64_t total_params) const;
  /// Evaluates after `epoch` (0-based): metrics line, selection (best.safetensors) and early
  /// stopping; holdout 1 keeps the evaluation as the final test. Returns whether to stop.
  bool evaluate_epoch(int64_t epoch, RunState& state, std::optional<eval::EvalResult>& final_test);
  /// Commits the epoch: optimizer shards, then last.state.safetensors (the commit point), then last.safetensors.
  void commit_epoch(int64_t epoch, const RunState& state, AdamW& optimizer, bool stop);
  bool data_parallel() const { return setup_.group && setup_.world_size > 1; }
  std::string out_path(const std::string& name) const { return setup_.train.out_dir + "/" + name; }

  double train_epoch(int64_t epoch, AdamW& optimizer, data::TrainBatcher& batcher);
  eval::EvalResult evaluate_split(data::Split split);
  void broadcast_model();
  void log_peak_memory();  ///< every rank's peak resident set, logged by rank 0
  models::SequenceRecommender model_;
  data::InteractionStore store_;
  std::optional<data::InteractionStore> train_rows_;  ///< set_train_rows (empty: the store's training parts)
  TrainerSetup setup_;
  GradientSync sync_;
  std::vector<char> cold_items_;  ///< cold-start hold-out mask (empty = off)
  std::shared_ptr<dist::GradientReducer> reducer_;
  std::optional<ShardPlan> plan_;  ///< ZeRO-1/2 in a data-parallel job: who owns which parameter
  NamedTensors owned_params_;      ///< this rank's share under plan_
  NamedTensors replicated_params_; ///< parameters every rank holds whole (ZeRO-3: all but the blocks')
  ShardPlan replicated_plan_;      ///< plan_'s owners of replicated_params_
  std::unique_ptr<Zero3Gate> zero3_;  ///< ZeRO-3: the block stack's sharded parameters
  torch::Device device_ = torch::kCPU;  ///< where the model and its batches live
  double last_lr_ = 0;                  ///< learning rate of the last optimiser step (metrics.jsonl's train line)
};

}  // namespace seqrec::train
