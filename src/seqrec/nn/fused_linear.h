// A linear layer with its element-wise tail fused into one pass over the output (and one over the
// gradient in backward): y = (dropout(act(x W^T + b) * scale) + residual) * keep.
//
// The GEMMs are LibTorch's; what is fused is everything around them, which at the small widths
// of sequential recommenders (d = 50..64) costs more than the GEMMs when done op by op. Dropout
// masks are drawn per row from one seed (taken from torch's generator, so manual_seed reproduces
// them) and redrawn in backward instead of being stored.
#pragma once

#include <torch/types.h>

#include "seqrec/nn/cpu_kernels.h"

namespace seqrec::nn {

/// The tail of fused_linear.
struct FusedLinearOptions {
  cpu::Activation activation = cpu::Activation::kNone;
  double scale = 1.0;    ///< multiplies act(z)
  double dropout = 0.0;  ///< dropout probability on act(z) * scale (only when training)
  bool training = false;
};

/// x: [..., in]; weight: [out, in]; bias: [out] or undefined; residual: [..., out] or undefined;
/// keep: one 0/1 value per row (numel = rows of x, e.g. [B, W, 1]) or undefined. Returns
/// [..., out]. Differentiable in x, weight, bias and residual. CPU float32 runs the fused kernel;
/// anything else the same computation op by op (dropout then draws torch's own masks).
torch::Tensor fused_linear(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias,
                           const FusedLinearOptions& options, const torch::Tensor& residual = {},
                           const torch::Tensor& keep = {});

/// LLaMA's gated MLP activation SiLU(g) * u in one pass each way (g, u: same shape). CPU float32
/// runs the fused kernel; anything else silu(g) * u.
torch::Tensor swiglu(const torch::Tensor& g, const torch::Tensor& u);

}  // namespace seqrec::nn
