// train.init_from: initialise a model from another run's checkpoint (any seqrec safetensors file of
// named tensors) through a name map, keeping the model's own initialisation for what the checkpoint
// does not have. LSVCR's stage 2 starts from stage 1 this way; any model can warm-start.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace torch::nn {
class Module;
}
namespace seqrec::config {
class ConfigNode;
}

namespace seqrec::train {

/// The `train.init_from:` section.
struct InitFromOptions {
  std::string checkpoint;  ///< safetensors file of another run ("" = off)
  /// Prefix renames applied to the checkpoint's names, in order, first match wins; written
  /// "from=to" ("encoder.=video_encoder." renames, "sr.=" strips a prefix, "=x." adds one).
  std::vector<std::pair<std::string, std::string>> name_map;
};

/// Reads `train.init_from` (a mapping {checkpoint, name_map: [from=to, ...]}); an absent section is off.
InitFromOptions read_init_from_options(config::ConfigNode train_node);

/// What init_from_checkpoint did, by model parameter / buffer name (sorted).
struct InitFromReport {
  std::vector<std::string> loaded;      ///< copied from the checkpoint
  std::vector<std::string> missing;     ///< in the model, not in the (renamed) checkpoint: kept as initialised
  std::vector<std::string> unexpected;  ///< in the (renamed) checkpoint, not in the model: ignored
};

/// A checkpoint name after the name map.
std::string map_tensor_name(const std::string& name, const std::vector<std::pair<std::string, std::string>>& name_map);

/// Copies the checkpoint's tensors into the model's tensors of the same (mapped) name. Throws
/// CheckpointError naming the file and tensor on a shape mismatch, a missing file, or when nothing
/// at all matches (a wrong name map); logs the missing and unexpected names.
InitFromReport init_from_checkpoint(torch::nn::Module& model, const InitFromOptions& options);

}  // namespace seqrec::train
