// Checkpoints: model weights in safetensors, with the architecture config (the model's YAML, item
// count, L) in the safetensors metadata, so a checkpoint rebuilds its model through make_model.
// Written atomically (temp + rename). Python reads them with safetensors.torch.load_file.
#pragma once

#include <torch/types.h>

#include <functional>
#include <limits>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "seqrec/models/recommender.h"

namespace seqrec::train {

using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;

constexpr const char* kCheckpointFormat = "seqrec-checkpoint-1";

/// Writes named CPU-copyable tensors (F32/I64/...) and metadata atomically.
void save_tensors(const std::string& path, const NamedTensors& tensors,
                  const std::map<std::string, std::string>& metadata);
/// Reads all tensors (copied out of the mapping) and the metadata.
NamedTensors load_tensors(const std::string& path, std::map<std::string, std::string>* metadata);

/// Parameters and buffers of a module, by registered name.
NamedTensors model_state(const torch::nn::Module& model);

/// Saves a model checkpoint. `model_yaml` is the resolved `model:` subtree.
void save_checkpoint(const std::string& path, const torch::nn::Module& model, const std::string& model_yaml,
                     const models::ModelContext& context);

/// Copies a state into the model; throws CheckpointError listing missing / unexpected names, a
/// shape mismatch ("<path>: tensor 'x': expected shape [..], got [..]") or NaN / Inf values.
void load_state_into(torch::nn::Module& model, const NamedTensors& state, const std::string& origin);

/// A loaded checkpoint: the rebuilt model and what it was built from.
struct LoadedModel {
  models::SequenceRecommender model;
  models::ModelContext context;
  std::string model_yaml;
};

/// Loads a checkpoint, rebuilding the model from its saved config. Throws CheckpointError
/// (what, expected, found) for a missing file, a foreign format or a mismatch.
/// `data_dir` is the prepared directory, for models that read files from it (hllm: item texts).
LoadedModel load_checkpoint(const std::string& path, const std::string& data_dir = "");

constexpr const char* kTrainStateFormat = "seqrec-train-state-2";

/// The training loop's counters after an epoch, saved in one file with the weights and the
/// optimizer state.
struct TrainCounters {
  int64_t epoch = 0;       ///< epochs completed
  int64_t step = 0;        ///< optimizer steps taken
  double best_metric = -std::numeric_limits<double>::infinity();  ///< best monitored value so far
  int64_t best_epoch = 0;  ///< its epoch (1-based; 0: none yet)
  int64_t bad_evals = 0;   ///< evaluations without improvement since the best
  bool stopped = false;    ///< early stopping ended the run after this epoch
  std::string metrics;     ///< metrics.jsonl as it was when the state was saved
  /// ZeRO: the files (in the state's folder) holding the optimizer moments, one per rank, instead
  /// of the state file itself (empty: the moments are in the state file).
  std::vector<std::string> optimizer_shards;
};

/// Saves the resume unit: the model's weights ("model." + name), the optimizer's tensors
/// ("optim." + name) and the counters, as ONE safetensors file written atomically, so that a kill
/// or a full disk at any moment leaves the previous unit or the new one, never weights of one
/// epoch with moments of another.
void save_train_state(const std::string& path, const torch::nn::Module& model, const NamedTensors& optimizer_state,
                      const TrainCounters& counters);

/// Loads a resume unit: copies the weights into `model`, puts the optimizer's tensors (names
/// without the prefix) in `optimizer_state` and returns the counters. Throws CheckpointError
/// naming the file for another format, e.g. the state file of seqrec before issue 21, which does
/// not hold the weights and cannot be checked against last.safetensors.
TrainCounters load_train_state(const std::string& path, torch::nn::Module& model, NamedTensors* optimizer_state);

constexpr const char* kOptimizerShardFormat = "seqrec-optimizer-shard-1";

/// File name of rank `rank`'s optimizer shard of the state after `epoch`, e.g.
/// "last.state.e3.rank0-of-2.safetensors" (the epoch in the name: a new epoch's shards never
/// replace the ones the committed state names). `prefix`: the state file's name without
/// ".safetensors" (seqrec train's "last.state"; finetune's "<out_dir name>.resume").
std::string optimizer_shard_name(int64_t epoch, int64_t rank, int64_t world_size,
                                 const std::string& prefix = "last.state");

/// Writes one rank's optimizer moments, stamped with the epoch and step they belong to (atomic).
void save_optimizer_shard(const std::string& path, const NamedTensors& moments, int64_t epoch, int64_t step);

/// Reads the moments that `wanted` selects from the shards `counters` names (in `dir`), one file at
/// a time. Throws CheckpointError naming the shard when it is missing, damaged, or stamped with
/// another epoch or step than the state (`state_path`, for the message).
NamedTensors load_optimizer_shards(const std::string& dir, const std::string& state_path, const TrainCounters& counters,
                                   const std::function<bool(const std::string&)>& wanted);

/// Removes the optimizer shards in `dir` that `keep` does not name (left by earlier epochs or by a
/// run killed before its state was committed); only files named by optimizer_shard_name()'s
/// pattern with this `prefix` whose metadata says they are optimizer shards.
void remove_other_optimizer_shards(const std::string& dir, const std::vector<std::string>& keep,
                                   const std::string& prefix = "last.state");

}  // namespace seqrec::train
