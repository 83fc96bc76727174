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

}  // namespace seqrec::nn
