// Batches of tokenised fine-tuning examples and their loss: packed (all examples of a micro-batch in
// one row, each attending only to itself, positions restarting, no padding) or padded (one row per
// example, right padding). Only supervised positions reach the output layer.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <vector>

#include "seqrec/llm/decoder_lm.h"
#include "seqrec/llm/sft_data.h"
#include "seqrec/nn/llama_block.h"

namespace seqrec::dist {
class GradientReducer;
class ProcessGroup;
}  // namespace seqrec::dist

namespace seqrec::train {

/// How a micro-batch lays out its examples.
enum class SftLayout { kPacked, kPadded };

/// One micro-batch. Each example's last token is not fed (nothing follows it to predict).
struct SftBatch {
  torch::Tensor input_ids;     ///< [1, T] packed or [B, L] padded, int64 (padding: id 0)
  torch::Tensor positions;     ///< like input_ids; 0, 1, ... within each example
  torch::Tensor key_valid;     ///< padded: [B, L] bool, false on padding; packed: undefined
  nn::PackedSegments packed;   ///< packed: one segment per example
  bool is_packed = false;
  torch::Tensor target_index;  ///< [N] int64: flat position (into the B*L or T inputs) of each trained prediction
  torch::Tensor target_ids;    ///< [N] int64: the token to predict there
  int64_t num_tokens = 0;      ///< real input tokens (padding excluded)
};

/// Collates examples (each with >= 2 tokens) into one micro-batch.
SftBatch collate_sft(const std::vector<const llm::TokenizedExample*>& examples, SftLayout layout);

/// Sum over the batch's trained positions of -log p(target), from float32 log-softmax: a scalar
/// (0 without targets). Runs on the model's device.
torch::Tensor sft_loss_sum(llm::DecoderLmImpl& lm, const SftBatch& batch);

/// Loss of one optimiser step.
struct StepLoss {
  double mean = 0;      ///< token-mean cross-entropy over all micro-batches of the step
  int64_t targets = 0;  ///< trained positions in the step
  int64_t tokens = 0;   ///< real input tokens in the step
};

/// Data parallelism: this rank's place in a step shared by the ranks of `group`, whose `reducer`
/// averages the trainable parameters' gradients. Both null: one process.
struct StepShare {
  dist::ProcessGroup* group = nullptr;
  dist::GradientReducer* reducer = nullptr;
  /// ZeRO-3 (finetune.zero_stage 3): the blocks' gathers are collectives, so every rank must run
  /// them as often as the others. With a filler (a micro-batch with trained positions), a rank with
  /// fewer micro-batches to train on first runs the filler forward and backward at weight 0 until
  /// its passes equal the busiest rank's. Give it on every rank or on none: it widens the ranks'
  /// all-reduce of counts (a rank that could not fall short still needs one; collating it is cheap).
  const SftBatch* filler = nullptr;
};

/// Forward and backward over the micro-batches of one optimiser step. Each micro-batch's loss sum
/// is divided by the trained positions of all of them, so the accumulated gradient equals that of
/// one batch holding every example (the token mean, not a mean of micro-batch means). With a share,
/// "all of them" are every rank's micro-batches: the ranks first sum their trained positions, each
/// scales its loss sums by world size / that total so that the reducer's mean is the gradient of
/// the whole step, and the reducer communicates only after the last backward (gradient
/// accumulation without per-micro-batch traffic); a rank without micro-batches still takes part.
/// The returned loss and counts are then the whole step's.
StepLoss accumulate_gradients(llm::DecoderLmImpl& lm, const std::vector<SftBatch>& micro_batches,
                              const StepShare& share = {});

}  // namespace seqrec::train
