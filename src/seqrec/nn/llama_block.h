// The LLaMA-2 decoder block (RMSNorm, RoPE, grouped-query attention, SwiGLU), written once and
// shared by the LLaMA-ID recommender and the Hugging Face decoder LMs (LLaMA / Qwen2 family).
// Registered names follow Hugging Face (self_attn.q_proj, mlp.gate_proj, input_layernorm, ...), so
// HF checkpoints load by name.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>

#include "seqrec/nn/lora.h"
#include <torch/types.h>

#include <string>
#include <vector>

namespace seqrec::nn {

/// Shape of one decoder block.
struct LlamaBlockOptions {
  int64_t hidden_dim = 64;      ///< D
  int64_t num_heads = 8;        ///< query heads H
  int64_t num_kv_heads = 8;     ///< key/value heads (GQA when < num_heads; must divide it)
  int64_t head_dim = 8;         ///< per head (HF head_dim; usually D / H)
  int64_t ffn_dim = 172;        ///< SwiGLU inner size
  double rms_eps = 1e-5;        ///< RMSNorm epsilon
  bool qkv_bias = false;        ///< Qwen2: biases on q/k/v projections
  double dropout = 0.0;         ///< attention-probability and residual dropout (training)
};

/// RMSNorm: x / sqrt(mean(x^2) + eps) * weight (computed in float32).
class RmsNormImpl : public torch::nn::Module {
 public:
  RmsNormImpl(int64_t dim, double eps);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor weight;

 private:
  double eps_;
};
TORCH_MODULE(RmsNorm);

/// Rotary tables for positions: cos and sin [.., T, head_dim] in HF rotate-half layout.
struct Rotary {
  torch::Tensor cos, sin;
};

/// Inverse frequencies of RoPE (theta^(-2i/d)), [head_dim / 2].
torch::Tensor rope_inverse_frequencies(int64_t head_dim, double theta);
/// Rotary tables for positions [B, T] (or [T]) from inverse frequencies.
Rotary rotary_for_positions(const torch::Tensor& positions, const torch::Tensor& inv_freq);
/// x * cos + rotate_half(x) * sin for x [B, H, T, hd] and tables [B, T, hd].
torch::Tensor apply_rotary(const torch::Tensor& x, const Rotary& rotary);

/// Cached keys and values of one block: [B, H_kv, S, hd] each (undefined when empty).
struct KvCache {
  torch::Tensor k, v;
};

/// Several sequences packed into one row [1, T] (HLLM's item texts): each token attends causally
/// within its own segment only, and no compute is spent on padding (the attention runs on a
/// left-padded [N, W] view through the jagged kernel, which skips the padding).
struct PackedSegments {
  torch::Tensor lengths;  ///< [N] int64 tokens per segment (segments are consecutive in the row)
  torch::Tensor slots;    ///< [T] int64 row-major slot of each packed token in the [N, W] view
  int64_t width = 0;      ///< W = the longest segment
};

/// Builds PackedSegments for consecutive segments of the given lengths (each >= 1).
PackedSegments pack_segments(const std::vector<int64_t>& lengths);

/// Grouped-query self-attention with RoPE.
class LlamaAttentionImpl : public torch::nn::Module {
 public:
  explicit LlamaAttentionImpl(const LlamaBlockOptions& options);
  /// x [B, T, D]; bias: additive mask [B or 1, 1, T, S] over (cached + new) keys; cache updated when given.
  /// With `packed`, x is [1, T, D] holding the packed segments and bias / cache are not used.
  torch::Tensor forward(const torch::Tensor& x, const Rotary& rotary, const torch::Tensor& bias, KvCache* cache,
                        const PackedSegments* packed = nullptr);
  LoraLinear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};

 private:
  LlamaBlockOptions options_;
};
TORCH_MODULE(LlamaAttention);

/// SwiGLU feed-forward: down(silu(gate(x)) * up(x)).
class LlamaMlpImpl : public torch::nn::Module {
 public:
  explicit LlamaMlpImpl(const LlamaBlockOptions& options);
  torch::Tensor forward(const torch::Tensor& x);
  LoraLinear gate_proj{nullptr}, up_proj{nullptr}, down_proj{nullptr};
};
TORCH_MODULE(LlamaMlp);

/// Pre-norm decoder block: x + attn(norm(x)), then + mlp(norm(.)).
class LlamaBlockImpl : public torch::nn::Module {
 public:
  explicit LlamaBlockImpl(const LlamaBlockOptions& options);
  torch::Tensor forward(const torch::Tensor& x, const Rotary& rotary, const torch::Tensor& bias,
                        KvCache* cache = nullptr, const PackedSegments* packed = nullptr);

 private:
  LlamaBlockOptions options_;
  RmsNorm input_layernorm{nullptr};
  LlamaAttention self_attn{nullptr};
  RmsNorm post_attention_layernorm{nullptr};
  LlamaMlp mlp{nullptr};
};
TORCH_MODULE(LlamaBlock);

/// Additive causal mask [B, 1, T, S] for T new positions after `past` cached ones, with key padding
/// from `key_valid` [B, S] bool (undefined = all valid). Masked entries are -inf except a row's own
/// position, so fully padded rows stay finite.
torch::Tensor causal_bias(int64_t t, int64_t past, const torch::Tensor& key_valid, const torch::TensorOptions& options);

}  // namespace seqrec::nn
