// Checkpoints: model weights in safetensors, with the architecture config (the model's YAML, item
// count, L) in the safetensors metadata, so a checkpoint rebuilds its model through make_model.
// Written atomically (temp + rename). Python reads them with safetensors.torch.load_file.
#pragma once

#include <torch/types.h>

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

/// Copies a state into the model; throws CheckpointError listing missing / unexpected names or a
/// shape mismatch ("<path>: tensor 'x': expected shape [..], got [..]").
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

}  // namespace seqrec::train
