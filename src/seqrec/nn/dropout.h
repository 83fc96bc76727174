// Dropout with a fast parallel mask generator. torch's CPU bernoulli_ draws one mt19937 number per
// element, which made attention-probability dropout the single largest cost of SASRec training on
// 2 cores; this draws from xoshiro256** streams seeded from torch's generator, so runs stay
// reproducible under torch::manual_seed.
#pragma once

#include <torch/types.h>

namespace seqrec::nn {

/// Inverted dropout: zeroes elements with probability p and scales the rest by 1/(1-p) when
/// training; identity otherwise. Differentiable (the mask is a constant of the graph).
torch::Tensor fast_dropout(const torch::Tensor& x, double p, bool training);

/// The mask alone: values 0 or 1/(1-p), same shape and dtype as `like`.
torch::Tensor dropout_mask(const torch::Tensor& like, double p);

}  // namespace seqrec::nn
