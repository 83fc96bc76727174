// Sinkhorn-Knopp uniform code assignment (LC-Rec's "uniform semantic mapping", systems.md §3.2):
// the codes of a batch are spread ~uniformly over the C codes of a level instead of each item taking
// its nearest code.
#pragma once

#include <torch/types.h>

#include <cstdint>

namespace seqrec::semantic_id {

/// LC-Rec's center_distance_for_constraint: (D - mid) / amp with mid = (max + min) / 2 and
/// amp = max - mid + 1e-5 over the whole matrix, so that values lie in [-1, 1]. d: [B, C].
torch::Tensor center_distances(const torch::Tensor& d);

/// Sinkhorn-Knopp on d [B, C]: Q = exp(-d / epsilon) normalised to sum 1, then `iters` rounds of
/// rows <- rows / (B * row sum) and columns <- columns / (C * column sum); returns B * Q (float64).
/// Columns of the result sum to B / C; rows sum to ~1.
torch::Tensor sinkhorn(const torch::Tensor& d, double epsilon, int64_t iters);

/// The uniform codes of a batch: argmax over C of sinkhorn(center_distances(d) in float64). [B] int64.
torch::Tensor sinkhorn_codes(const torch::Tensor& d, double epsilon, int64_t iters);

}  // namespace seqrec::semantic_id
