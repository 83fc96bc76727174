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
#include <memory>
#include <vector>

#include "seqrec/nn/block_gate.h"
#include "seqrec/train/checkpoint.h"
#include "seqrec/train/optim.h"

namespace seqrec::dist {
class ProcessGroup;
}
namespace torch::nn {
class Module;
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

/// ZeRO-3 over a model's block stack: a block parameter lives only on its owner; on the other ranks
/// its storage is freed (the tensor keeps its shape) and is re-allocated and filled from the owner
/// (a broadcast per owning rank) just before the block runs forward and again when backward reaches
/// the block's output; after the forward, and after backward has left the block (a hook on its
/// input's gradient), it is freed again, the block's gradients having been reduced to their owners.
/// Freeing the storage rather than replacing the tensor keeps autograd's saved references valid
/// (PyTorch FSDP's trick), so no recomputation is needed. Parameters outside the blocks (item
/// table, final norm) are handled as in ZeRO-2.
class Zero3Gate : public nn::BlockGate {
 public:
  /// `params`: every trainable parameter with `plan`'s owners; `blocks`: the model's block stack.
  Zero3Gate(std::shared_ptr<dist::ProcessGroup> group, const ShardPlan& plan, const NamedTensors& params,
            const std::vector<std::shared_ptr<torch::nn::Module>>& blocks);
  torch::Tensor run(size_t index, const torch::Tensor& x,
                    const std::function<torch::Tensor(const torch::Tensor&)>& body) override;
  /// The maximum over the ranks (an all-reduce).
  int64_t most_passes(int64_t local) override;
  /// Frees every block parameter this rank does not own (the start of a training epoch).
  void shard();
  /// Makes every block whole on every rank (evaluation and checkpoints between epochs).
  void unshard();
  /// After the step's last backward: reduces the gradients of blocks backward did not leave through
  /// a hook (an input without gradient), then turns the owners' gradient sums into means.
  void finish();
  /// Whether params[i] belongs to a block (and is therefore not handled by the gradient reducer).
  bool manages(size_t i) const { return managed_[i]; }
  /// Bytes of block parameters this rank holds now (owned, plus whatever is gathered).
  int64_t resident_bytes() const;
  /// Bytes of all block parameters (what every rank would hold without ZeRO-3).
  int64_t total_bytes() const;

 private:
  void gather(size_t block);
  void release(size_t block);
  void reduce_gradients(size_t block);
  std::shared_ptr<dist::ProcessGroup> group_;
  ShardPlan plan_;
  NamedTensors params_;
  std::vector<std::vector<size_t>> block_params_;  // indices into params_
  std::vector<bool> managed_;
  std::vector<bool> gathered_, reduce_pending_;
  bool sharded_ = false;
};

}  // namespace seqrec::train
