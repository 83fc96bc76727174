// AdamW (decoupled weight decay, exactly torch.optim.AdamW's update) and learning-rate schedules.
// Our own implementation so that its state is plain named tensors (checkpointable, resumable).
#pragma once

#include <torch/types.h>

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "seqrec/config/options.h"

namespace seqrec::train {

/// AdamW hyper-parameters.
struct AdamWOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
};

/// AdamW over a fixed list of named parameters, or (ZeRO stages 1-2) over the share of them this
/// process owns: moments exist for owned parameters only and only they are updated.
class AdamW {
 public:
  /// `owned[i]`: whether this process updates params[i] (empty: all of them).
  AdamW(std::vector<std::pair<std::string, torch::Tensor>> params, AdamWOptions options,
        std::vector<bool> owned = {});
  /// One update with learning rate `lr` (owned parameters without a gradient are skipped).
  void step(double lr);
  /// Zeroes the gradients of every parameter, owned or not.
  void zero_grad();
  /// Optimiser state of the owned parameters as named tensors ("<param>.exp_avg",
  /// "<param>.exp_avg_sq"), plus the step count.
  std::vector<std::pair<std::string, torch::Tensor>> state() const;
  int64_t step_count() const { return step_; }
  /// Restores the owned parameters' moments from `state` (which may hold others' too); throws
  /// CheckpointError when a tensor is missing or has the wrong shape.
  void load_state(const std::vector<std::pair<std::string, torch::Tensor>>& state, int64_t step_count);
  const std::vector<std::pair<std::string, torch::Tensor>>& params() const { return params_; }
  /// Whether this process updates params()[i].
  bool owns(size_t i) const { return owned_.empty() || owned_[i]; }

 private:
  std::vector<std::pair<std::string, torch::Tensor>> params_;
  std::vector<bool> owned_;
  std::vector<torch::Tensor> exp_avg_, exp_avg_sq_;  // undefined for parameters owned elsewhere
  AdamWOptions options_;
  int64_t step_ = 0;
};

/// Learning rate at `step` (0-based) of `total` steps: linear warm-up over `warmup` steps,
/// lr * (w + (1 - w) * (step + 1) / warmup) with w = warmup_min_ratio (DeepSpeed's WarmupCosineLR
/// name; 0: from 0), then constant or cosine decay to min_ratio * lr.
double scheduled_lr(config::Schedule schedule, double lr, int64_t step, int64_t total, int64_t warmup,
                    double min_ratio, double warmup_min_ratio = 0.0);

/// Scales gradients so that their global l2 norm is at most max_norm; returns the norm before.
/// `sum_over_ranks`, when given, adds up the squared norms of all processes (ZeRO: each holds the
/// gradients of its own parameters only).
double clip_grad_norm(const std::vector<std::pair<std::string, torch::Tensor>>& params, double max_norm,
                      const std::function<double(double)>& sum_over_ranks = nullptr);

}  // namespace seqrec::train
