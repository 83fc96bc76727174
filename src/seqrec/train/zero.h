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

#include "seqrec/dist/process_group.h"
#include "seqrec/nn/block_gate.h"
#include "seqrec/train/checkpoint.h"
#include "seqrec/train/optim.h"

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
/// (a broadcast per owning rank) for the block's forward and again when backward reaches the
/// block's output; after the forward, and after backward has left the block (a hook on its input's
/// gradient), it is freed again, the block's gradients having been reduced to their owners.
/// Freeing the storage rather than replacing the tensor keeps autograd's saved references valid
/// (PyTorch FSDP's trick), so no recomputation is needed. Parameters outside the blocks (item
/// table, final norm) are handled as in ZeRO-2.
///
/// Prefetch (FSDP's forward and backward prefetch), on by default: the gate expects a forward pass
/// to run its blocks in the order of the previous forward pass (the first pass guesses nothing) and
/// backward to go back through them in the reverse order. While a block computes, the gather of the
/// next expected block is started; a block expected again within the next two uses is not freed in
/// between (a stack run twice, the last block of forward being the first of backward); a block's
/// gradient reduction is started when backward leaves it and waited for when the next one starts
/// (or the gradients are needed again), so one is in flight while the next block computes. The guesses come from the order of the gate's
/// own calls, so every rank makes the same ones, as it must (each gather is a collective); when a
/// pass departs from them the gate stops guessing for the rest of that pass. A wrong guess costs a
/// block's memory until the block is used or the step ends, never a wrong value. At most three
/// blocks are whole at a time when the guesses hold, and two blocks' gradients wait for their
/// reduction (one without prefetch).
class Zero3Gate : public nn::BlockGate {
 public:
  /// `params`: every trainable parameter with `plan`'s owners; `blocks`: the model's block stack;
  /// `prefetch`: overlap the gathers and reductions with compute (off: each is done when needed,
  /// blocking).
  Zero3Gate(std::shared_ptr<dist::ProcessGroup> group, const ShardPlan& plan, const NamedTensors& params,
            const std::vector<std::shared_ptr<torch::nn::Module>>& blocks, bool prefetch = true);
  ~Zero3Gate() override;
  torch::Tensor run(size_t index, const torch::Tensor& x,
                    const std::function<torch::Tensor(const torch::Tensor&)>& body) override;
  /// The maximum over the ranks (an all-reduce).
  int64_t most_passes(int64_t local) override;
  /// Frees every block parameter this rank does not own (the start of a training epoch).
  void shard();
  /// Makes every block whole on every rank (evaluation and checkpoints between epochs).
  void unshard();
  /// After the step's last backward: reduces the gradients of blocks backward did not leave through
  /// a hook (an input without gradient), waits for every reduction in flight, turns the owners'
  /// gradient sums into means and frees every block this rank does not own.
  void finish();
  /// Whether params[i] belongs to a block (and is therefore not handled by the gradient reducer).
  bool manages(size_t i) const { return managed_[i]; }
  /// Bytes of block parameters this rank holds now (owned, plus whatever is gathered).
  int64_t resident_bytes() const;
  /// Bytes of all block parameters (what every rank would hold without ZeRO-3).
  int64_t total_bytes() const;
  /// Times a block had to be whole (each forward run, each backward arrival) since construction,
  /// and how many of them found it neither whole nor arriving and gathered it on demand.
  int64_t block_uses() const { return uses_; }
  int64_t on_demand_gathers() const { return on_demand_; }

 private:
  enum class Held { kNo, kArriving, kYes };
  void prefetch(int64_t block);  // starts a gather (no-op for -1, a block held or arriving)
  void gather(size_t block);     // the block whole: waits for its gather, or does it now
  void release(size_t block);
  void reduce_gradients(size_t block);
  void wait_reduction(size_t block);
  // The expected order: expect_[pos_] is the block expected next (-1: no guess).
  int64_t expected(size_t ahead = 0) const;
  void advance(size_t block);                // a block is used: checks the guess, moves on
  void release_unless_expected(size_t block);  // frees it unless expected within the next two uses
  std::shared_ptr<dist::ProcessGroup> group_;
  ShardPlan plan_;
  NamedTensors params_;
  bool prefetch_ = true;
  std::vector<std::vector<size_t>> block_params_;  // indices into params_
  std::vector<bool> managed_;
  std::vector<Held> held_;
  std::vector<bool> reduce_pending_;
  std::vector<std::vector<dist::ProcessGroup::Pending>> arriving_, reducing_;  // per block, per owner
  bool in_forward_ = false;          // the gate's last call was a forward run
  std::vector<int64_t> forward_;     // this (or the last) forward pass's blocks, in order
  std::vector<int64_t> expect_;      // the expected uses: a forward's blocks, then in reverse for backward
  size_t pos_ = 0;
  bool sharded_ = false;
  int64_t uses_ = 0, on_demand_ = 0;
};

}  // namespace seqrec::train
