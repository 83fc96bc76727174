// Batched matrix multiply for many small matrices (attention on CPU). LibTorch 1.13's CPU bmm
// without MKL is about 2.5x slower than one GEMM per batch entry spread over threads (measured in
// bench/); this differentiable version uses the latter in forward and backward.
#pragma once

#include <torch/types.h>

namespace seqrec::nn {

/// a [N, n, k] x b [N, k, m] -> [N, n, m]; any strides; differentiable in both arguments.
/// With `bias` [N, n, m] (a constant: no gradient flows into it) the result is bias + a x b, fused.
torch::Tensor batched_matmul(const torch::Tensor& a, const torch::Tensor& b,
                             const torch::Tensor& bias = torch::Tensor());

}  // namespace seqrec::nn
