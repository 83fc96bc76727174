// Mixed precision for the LLM towers: bfloat16 compute under LibTorch's autocast, with parameters,
// gradients and optimizer state kept in float32 (the master copies).
//
// What runs in bfloat16 under autocast: the towers' linear layers and attention matmuls (autocast
// casts the float32 weights per use; gradients flow back into them in float32). What stays float32:
// the residual stream (the embeddings are float32 and float32 + bfloat16 promotes), RMSNorm,
// attention softmax, the jagged attention kernel of packed item texts (CPU float32 only: its q, k, v
// are cast up), the towers' outputs, and everything outside the towers (losses, scores).
#pragma once

#include <torch/nn/module.h>
#include <torch/types.h>

#include <cstdint>
#include <string>

#include "seqrec/config/options.h"

namespace seqrec::llm {

/// Enables autocast to `dtype` for the device type of `device` while it lives and restores the
/// previous state after; kFloat does nothing. Weight casts are not cached: each weight is used once
/// per forward pass, and a cast cached under no_grad (gradient checkpointing's first pass) would
/// carry no gradient when reused.
class AutocastScope {
 public:
  AutocastScope(torch::Device device, torch::Dtype dtype);
  ~AutocastScope();
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  bool active_ = false;
  bool cpu_ = true;
  bool previous_enabled_ = false;
  bool previous_cache_ = true;
  torch::Dtype previous_dtype_ = torch::kBFloat16;
};

/// The compute dtype a precision stands for: fp32 -> kFloat, bf16 -> kBFloat16.
torch::Dtype precision_dtype(config::Precision precision);

/// Sets the training compute dtype of every decoder LM (DecoderLmImpl) inside `model`, itself
/// included, and returns how many there are. With bf16, throws ConfigError naming `field` when
/// `model` has no decoder LM (bf16 is for LLM towers) or `device` cannot run bfloat16 matmuls; warns
/// when the CPU has no native bfloat16 instructions (avx512_bf16 / AMX: oneDNN then emulates them).
int64_t set_training_precision(torch::nn::Module& model, config::Precision precision, torch::Device device,
                               const std::string& field);

}  // namespace seqrec::llm
