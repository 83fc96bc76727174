// LayerNorm and RMSNorm over the last dimension in one pass per row each way (the small widths of sequential
// recommenders make ATen's kernel launch- and pass-bound).
#pragma once

#include <torch/types.h>

namespace seqrec::nn {

/// y = (x - mean) / sqrt(var + eps) * weight + bias over the last dimension; weight and bias [D]
/// or undefined (no affine). Differentiable in x, weight and bias. CPU float32 runs the fused
/// kernel; anything else torch::layer_norm.
torch::Tensor layer_norm(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias, double eps);

/// RMSNorm (LLaMA): y = x / sqrt(mean(x^2) + eps) * weight over the last dimension; weight [D].
/// Differentiable in x and weight; the same CPU/other-device split as layer_norm.
torch::Tensor rms_norm(const torch::Tensor& x, const torch::Tensor& weight, double eps);

}  // namespace seqrec::nn
