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

/// The same over packed rows: q, k, v [T, H, dh] (q scaled), the rows of sequence b being
/// cu_seqlens[b] .. cu_seqlens[b + 1] - 1 (cu_seqlens [B + 1] int64, starting at 0, ending at T).
/// No padding anywhere: the layers around attention can run on the T real rows only. CPU float32.
/// Row i of a sequence equals row W - l + i of the padded computation (same dropout stream too).
torch::Tensor packed_causal_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                      const torch::Tensor& cu_seqlens, double dropout_p, bool training);

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

/// Softmax attention of one query per sequence, the newest position (inference: no dropout).
/// q: [B, H, 1, dh] (already scaled); k, v: [B, H, W, dh]; lengths [B] real items at the end of
/// each row. Equals the last row of jagged_causal_attention. Returns [B, H, 1, dh].
torch::Tensor last_query_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                   const torch::Tensor& lengths);

/// HSTU's pointwise attention of the newest position only: sum_j SiLU(q.k_j + bias_j) / n * v_j
/// over real j. q: [B, H, 1, dqk]; bias_row: [B, W] (the last row of the bias) or undefined.
/// Equals the last row of jagged_pointwise_attention. Returns [B, H, 1, dv].
torch::Tensor last_query_pointwise_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                             const torch::Tensor& bias_row, const torch::Tensor& lengths, double n);

/// HSTU's relative bias in table form (systems.md §2.3): the bias of (sequence b, row i, column j)
/// is position_weights[position_origin + j - i] + time_weights[time_buckets[b, i, j]], each part
/// optional. The jagged kernel reads the tables directly, so no [B, W, W] bias is materialised
/// (forward) or reduced (backward): per layer that saves two passes over B x W x W floats.
struct RelativeBiasTables {
  torch::Tensor position_weights;  ///< [P], or undefined
  int64_t position_origin = 0;     ///< index of j - i = 0 (needs origin >= W - 1 and P > origin)
  torch::Tensor time_weights;      ///< [T], or undefined
  torch::Tensor time_buckets;      ///< [B, W, W] uint8 indices into time_weights (< T)
  bool empty() const { return !position_weights.defined() && !time_weights.defined(); }
};

/// jagged_pointwise_attention with the bias given as tables; differentiable in q, k, v and both
/// tables. On devices other than the CPU the bias is materialised and the padded path runs.
torch::Tensor jagged_pointwise_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                         const RelativeBiasTables& bias, const torch::Tensor& lengths, double n);

/// The same over packed rows: q, k [T, H, dqk], v [T, H, dv], sequence b's rows cu_seqlens[b] ..
/// cu_seqlens[b + 1] - 1; the time buckets stay in the padded batch's coordinates [B, width,
/// width] (sequence b's l real items in its last l columns). CPU float32. Returns [T, H, dv].
///
/// segments (optional, [T] int32) adds PerSRec's segment blocking (systems.md §6.1): each row has
/// a code, s >= 0 for an item of segment s, -(s + 1) for a user token inserted after segment s's
/// items. Row i then sees column j <= i only if j is a token or an item of i's own segment: the
/// items of earlier segments reach later rows only through the tokens. No [B, W, W] mask is built.
torch::Tensor packed_pointwise_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                         const RelativeBiasTables& bias, const torch::Tensor& cu_seqlens,
                                         int64_t width, double n, const torch::Tensor& segments = {});

/// The [B, W, W] bias the tables stand for (for the padded path and for tests).
torch::Tensor materialize_bias(const RelativeBiasTables& bias, int64_t batch, int64_t width);

/// Its last row only, [B, W] (or undefined when the tables are empty).
torch::Tensor materialize_last_bias_row(const RelativeBiasTables& bias, int64_t batch, int64_t width);

}  // namespace seqrec::nn
