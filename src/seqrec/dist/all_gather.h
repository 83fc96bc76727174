// All-gather with gradient, for losses whose negatives are shared by all ranks (HLLM's nce loss:
// pool = world x batch x (S+1) item embeddings, systems.md §1.6).
//
// Forward: every rank gets the rows of all ranks, rank 0's first. Backward: each rank's gradient
// w.r.t. the whole pool is summed over ranks and this rank keeps the rows it contributed, so the
// loss of every rank reaches every rank's item embeddings (torch.distributed.nn.all_gather's rule).
// Combined with the gradient reducer's mean over ranks, the update is that of the mean loss.
#pragma once

#include <torch/types.h>

#include <memory>

namespace seqrec::dist {

class ProcessGroup;

/// Concatenation over the ranks of `group` along dim 0 (row counts may differ between ranks):
/// [sum_r rows_r, ...], differentiable in x.
torch::Tensor all_gather_with_grad(const torch::Tensor& x, const std::shared_ptr<ProcessGroup>& group);

/// The accessor for losses: all_gather_with_grad over the default group when the process is part of
/// a job of more than one process (see set_default_group), otherwise x itself.
torch::Tensor gather_across_ranks(const torch::Tensor& x);

}  // namespace seqrec::dist
