// LoRA (Hu et al. 2021) on linear layers, as PEFT does it: y = W x + b + (alpha / r) B A dropout(x),
// A ~ kaiming-uniform, B = 0 (so a fresh adapter changes nothing). Adapters are enabled by module
// name (PEFT's target_modules), saved apart from the base weights under PEFT's tensor names, and
// can be merged into W.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>
#include <torch/types.h>

#include <map>
#include <string>
#include <vector>

namespace seqrec::nn {

/// LoRA hyper-parameters (PEFT LoraConfig).
struct LoraOptions {
  int64_t rank = 8;                                   ///< r
  double alpha = 16;                                  ///< lora_alpha; scale = alpha / r
  double dropout = 0.0;                               ///< lora_dropout on the adapter input
  std::vector<std::string> target_modules = {"q_proj", "v_proj"};  ///< last name component to adapt
};

/// A linear layer that can carry a LoRA adapter. Parameter names: weight, bias, and when adapted
/// lora_A.weight [r, in], lora_B.weight [out, r] (PEFT's names).
class LoraLinearImpl : public torch::nn::Module {
 public:
  LoraLinearImpl(int64_t in_features, int64_t out_features, bool bias);
  torch::Tensor forward(const torch::Tensor& x);
  /// Adds a fresh adapter (B = 0). Throws if one exists.
  void enable_lora(int64_t rank, double alpha, double dropout);
  /// W += scale * B A, then removes the adapter.
  void merge();
  /// W + scale * B A (a detached copy; W itself without an adapter); the layer is unchanged.
  torch::Tensor merged_weight() const;
  bool has_lora() const { return static_cast<bool>(lora_A); }
  torch::Tensor weight, bias;
  torch::nn::Linear lora_A{nullptr}, lora_B{nullptr};

 private:
  int64_t in_, out_;
  double scale_ = 0, dropout_ = 0;
};
TORCH_MODULE(LoraLinear);

/// Enables adapters on every LoraLinear whose name ends in one of options.target_modules and
/// freezes every other parameter. Returns the number of adapted layers; throws ConfigError when
/// none matched (listing the adaptable names).
int64_t apply_lora(torch::nn::Module& model, const LoraOptions& options);

/// Merges and removes every adapter of `model`.
void merge_lora(torch::nn::Module& model);

/// Adapter tensors under PEFT names ("base_model.model.<path>.lora_A.weight").
std::vector<std::pair<std::string, torch::Tensor>> lora_state(const torch::nn::Module& model);

/// Saves lora_state (+ r, alpha, targets in the metadata) to a safetensors file, atomically.
void save_lora(const torch::nn::Module& model, const LoraOptions& options, const std::string& path);

/// Enables adapters as saved in `path` and loads them. Throws CheckpointError on a mismatch.
void load_lora(torch::nn::Module& model, const std::string& path);

}  // namespace seqrec::nn
