// Dot products of each row of h with a few rows of a table chosen per row, without materialising
// the chosen rows ([N, K, D]) or all products ([N, V]): the logits of sampled losses.
#pragma once

#include <torch/types.h>

namespace seqrec::nn {

/// out[n, k] = h[n] . table[ids[n, k]]. h: [N, D]; table: [T, D]; ids: [N, K] int64 in [0, T).
/// Returns [N, K]. Differentiable in h and table (the table's gradient is scattered row by row).
/// CPU float32 runs the fused kernel; anything else gathers and multiplies.
torch::Tensor gathered_dot(const torch::Tensor& h, const torch::Tensor& table, const torch::Tensor& ids);

}  // namespace seqrec::nn
