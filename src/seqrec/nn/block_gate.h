// The hook through which a model runs each block of its stack, so that a trainer can keep the
// blocks' parameters sharded across ranks (ZeRO-3, train/zero.h) and make them whole only while a
// block runs forward or autograd goes back through it.
#pragma once

#include <torch/types.h>

#include <cstddef>
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
};

}  // namespace seqrec::nn
