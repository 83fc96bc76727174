// Gradient averaging for data parallelism: parameters are grouped into buckets of about
// `bucket_bytes`; a hook on each parameter copies its gradient into its bucket during backward, and
// a full bucket is all-reduced asynchronously while backward goes on (DDP's scheme). Written here
// rather than driving c10d::Reducer: that class is exported by LibTorch 1.13, but only
// torch/nn/parallel/distributed.py drives it (bucket assignment, prepare_for_backward every
// iteration, bucket rebuilds), an internal protocol that changes between releases. finish() waits,
// averages and writes the result into each parameter's .grad.
//
// Gradient accumulation (DDP's no_sync): with set_sync(false), backward leaves gradients in .grad and
// sends nothing; the next backward with sync on sends the sum of everything accumulated.
// ZeRO-2 (options.owners): each bucket holds the parameters of one rank and is reduced to that rank
// only; after finish() a rank holds the mean gradient of the parameters it owns and no gradient
// for the others (their .grad is released as soon as their bucket has been sent).
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace seqrec::dist {

class ProcessGroup;

/// Bucketing knobs.
struct GradientReducerOptions {
  int64_t bucket_bytes = 25 << 20;   ///< bucket size cap (PyTorch DDP's default, 25 MiB)
  /// ZeRO-2: the rank that owns each parameter (same order as the parameters; empty: every rank
  /// gets every mean gradient, plain all-reduce).
  std::vector<int64_t> owners;
};

/// Averages gradients across the ranks of `group`; one instance per model, alive while training.
class GradientReducer {
 public:
  /// Registers the hooks on `params` (the trainable parameters, same order on every rank).
  GradientReducer(std::shared_ptr<ProcessGroup> group, std::vector<std::pair<std::string, torch::Tensor>> params,
                  GradientReducerOptions options = {});
  ~GradientReducer();  ///< removes the hooks
  GradientReducer(const GradientReducer&) = delete;
  GradientReducer& operator=(const GradientReducer&) = delete;

  /// Call once after each backward: sends the buckets that are not sent yet (a parameter that got
  /// no gradient this step contributes zeros), waits for all, and sets every .grad to the mean over
  /// ranks.
  void finish();
  /// Off: the following backward passes only accumulate into .grad (no communication); turn it
  /// back on before the last backward of an optimiser step.
  void set_sync(bool sync);
  /// Number of buckets (in reduction order: last parameters first, as gradients become ready).
  int64_t num_buckets() const;
  /// Bytes all-reduced per step (the sum of the bucket sizes).
  int64_t bytes_per_step() const;
  /// Buckets sent from inside backward (overlapped) in the last step; the rest were sent by finish().
  int64_t buckets_sent_during_backward() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace seqrec::dist
