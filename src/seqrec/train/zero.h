// ZeRO stages 1 and 2 (Rajbhandari et al., 2020) on c10d: each trainable parameter belongs to one
// rank, which alone keeps its AdamW moments (stage 1) and receives its mean gradient (stage 2,
// through dist::GradientReducer's owners); after the update every rank gets every parameter back
// from its owner (one broadcast per rank).
//
// Whole parameters are sharded, not slices of one flat buffer as DeepSpeed does: the optimizer
// state stays keyed by parameter name, so the consolidated state file rank 0 writes is the same file
// at any world size and a run resumes at another one; the price is a less even split when one tensor
// is a large share of the model (the largest parameter bounds a rank's share from below).
#pragma once

#include <cstdint>
#include <vector>

#include "seqrec/train/checkpoint.h"
#include "seqrec/train/optim.h"

namespace seqrec::dist {
class ProcessGroup;
}

namespace seqrec::train {

/// Which rank owns each trainable parameter.
struct ShardPlan {
  std::vector<int64_t> owner;  ///< per parameter, in the order of the parameter list
  int64_t world_size = 1;

  /// Contiguous runs of parameters in reverse order (the order backward produces gradients, so that
  /// a gradient bucket holds one owner's parameters), balanced by element count.
  static ShardPlan balanced(const NamedTensors& params, int64_t world_size);
  /// owned[i]: whether `rank` owns parameter i.
  std::vector<bool> owned_by(int64_t rank) const;
  /// Elements of the parameters `rank` owns.
  int64_t numel_owned_by(int64_t rank, const NamedTensors& params) const;
};

/// After each rank updated the parameters it owns: every rank receives every parameter's value from
/// its owner.
void broadcast_from_owners(dist::ProcessGroup& group, const ShardPlan& plan, const NamedTensors& params);

/// The AdamW moments of every parameter, gathered to rank 0 from their owners (in the order
/// AdamW::state() of an unsharded optimizer lists them), for a consolidated checkpoint. Other ranks
/// get an empty list; each holds one rank's share of extra memory while it passes through.
NamedTensors consolidate_optimizer_state(dist::ProcessGroup& group, const ShardPlan& plan, const AdamW& optimizer);

/// The reverse, for a resume: rank 0 holds `full` (the whole optimizer state, as read from the
/// consolidated file); every rank loads its own parameters' moments into `optimizer`.
void distribute_optimizer_state(dist::ProcessGroup& group, const ShardPlan& plan, const NamedTensors& full,
                                int64_t step_count, AdamW& optimizer);

}  // namespace seqrec::train
