// Jagged causal softmax attention for left-padded batches on CPU.
//
// Each sequence b of a batch [B, W] holds lengths[b] real items in its last columns. The padded
// computation spends W x W scores per sequence and head; this kernel computes only the
// lengths[b] x lengths[b] causal block, one (sequence, head) at a time so the block stays in cache,
// with softmax, dropout and both GEMMs fused around it (forward and backward). For real positions
// the result equals the padded computation with a causal + key-padding mask; padded rows are 0.
#pragma once

#include <torch/types.h>

namespace seqrec::nn {

/// q, k, v: [B, H, W, dh] (q already scaled); lengths: [B] int64 (real items at the end of each
/// row). dropout_p applies to the attention probabilities when training. Returns [B, H, W, dh].
/// Differentiable in q, k, v. Falls back to the padded computation on non-CPU devices.
torch::Tensor jagged_causal_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                      const torch::Tensor& lengths, double dropout_p, bool training);

/// The padded reference computation (causal + key-padding mask, softmax, dropout): same contract.
torch::Tensor padded_causal_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                      const torch::Tensor& lengths, double dropout_p, bool training);

/// HSTU pointwise attention (systems.md §2.3), jagged: out_i = sum_{j<=i} SiLU(q_i.k_j + bias_ij) / n
/// * v_j over real positions only. q, k: [B, H, W, dqk]; v: [B, H, W, dv]; bias: [B, W, W] shared by
/// the heads, or undefined; lengths [B]; n: the padded length HSTU divides by. Differentiable in
/// q, k, v and bias. Scores are recomputed in backward (no [B, H, W, W] activations are kept).
torch::Tensor jagged_pointwise_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                         const torch::Tensor& bias, const torch::Tensor& lengths, double n);

/// The padded reference of jagged_pointwise_attention (same contract).
torch::Tensor padded_pointwise_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                         const torch::Tensor& bias, const torch::Tensor& lengths, double n);

}  // namespace seqrec::nn
