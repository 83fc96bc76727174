// The hook through which a model runs each block of its stack, so that a trainer can keep the
// blocks' parameters sharded across ranks (ZeRO-3, train/zero.h) and make them whole only while a
// block runs forward or autograd goes back through it.
#pragma once

#include <torch/types.h>

#include <cstddef>
#include <cstdint>
#include <functional>

namespace seqrec::nn {

/// Runs the blocks of a model's stack.
class BlockGate {
 public:
  virtual ~BlockGate() = default;
  /// Runs block `index` as `body(x)`; the block's parameters are whole inside `body` and while
  /// backward goes through it.
  virtual torch::Tensor run(size_t index, const torch::Tensor& x,
                            const std::function<torch::Tensor(const torch::Tensor&)>& body) = 0;
  /// The largest `local` over the processes that share the blocks' parameters (a collective under
  /// ZeRO-3: every rank must call it at the same point). A model that runs its stack a number of
  /// times that differs between ranks (HLLM's item LLM: one pass per chunk of the step's items)
  /// asks it and runs the missing passes with zero weight, because every run is a collective too.
  virtual int64_t most_passes(int64_t local) { return local; }
};

/// Several stacks behind one gate: block `index` of this stack is block `offset + index` of
/// `inner`'s (HLLM's item LLM blocks first, then its user LLM blocks).
class OffsetBlockGate : public BlockGate {
 public:
  OffsetBlockGate(BlockGate* inner, size_t offset) : inner_(inner), offset_(offset) {}
  torch::Tensor run(size_t index, const torch::Tensor& x,
                    const std::function<torch::Tensor(const torch::Tensor&)>& body) override {
    return inner_->run(offset_ + index, x, body);
  }
  int64_t most_passes(int64_t local) override { return inner_->most_passes(local); }

 private:
  BlockGate* inner_;
  size_t offset_;
};

}  // namespace seqrec::nn
