// Training of the RQ-VAE (LC-Rec index/trainer.py + main.py) and its checkpoint file.
//
// Per epoch: shuffled batches, forward with Sinkhorn on the levels that have an epsilon, loss
// recon + quant, backward, gradient-norm clip 1.0, AdamW, a step of the linear (or constant)
// schedule with warm-up (transformers' get_linear_schedule_with_warmup, stepped per batch). Every
// min(eval_every, epochs) epochs the collision rate of the argmin codes of all items is measured
// (eval mode, no Sinkhorn; epochs after the last multiple are not evaluated, as upstream); the
// checkpoint with the lowest collision rate so far is kept (only a strictly lower one replaces it).
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "seqrec/semantic_id/rqvae.h"

namespace seqrec::semantic_id {

/// The training run's options (not saved with the model).
struct RqVaeTrainOptions {
  double lr = 1e-3;                  ///< peak learning rate (AdamW)
  double weight_decay = 1e-4;        ///< AdamW decoupled weight decay
  int64_t batch_size = 1024;         ///< items per step
  int64_t epochs = 10000;            ///< epochs
  std::string schedule = "linear";   ///< linear (decay to 0 at the end) | constant, both after warm-up
  int64_t warmup_epochs = 50;        ///< linear warm-up from 0 over this many epochs' steps
  double clip_norm = 1.0;            ///< global gradient-norm clip
  int64_t eval_every = 50;           ///< collision rate every N epochs
  uint64_t seed = 2024;              ///< batch order (the caller seeds torch for the initial weights)
  std::string checkpoint_path;       ///< best-collision checkpoint ("" = keep none)
  std::string metrics_path;          ///< metrics.jsonl, one line per evaluation ("" = none)
  int64_t log_every_evals = 1;       ///< log one line every N evaluations
};

/// One evaluation.
struct RqVaeEvalRecord {
  int64_t epoch = 0;                 ///< 1-based epoch just finished
  double loss = 0;                   ///< mean training loss over the epoch's batches
  double recon = 0;                  ///< mean reconstruction loss over the epoch's batches
  double lr = 0;                     ///< learning rate of the epoch's last step
  double collision_rate = 0;         ///< (V - distinct tuples) / V of the argmin codes
  std::vector<int64_t> used_codes;   ///< [M] distinct codes per level
};

/// What a run did.
struct RqVaeTrainSummary {
  std::vector<RqVaeEvalRecord> evals;  ///< every evaluation, in order
  int64_t best_epoch = 0;              ///< epoch of the kept checkpoint
  double best_collision_rate = 1.0;    ///< its collision rate
  double seconds = 0;                  ///< wall time
};

/// Learning-rate factor at optimiser step `step` (0-based) of `total`, transformers' schedules:
/// step / warmup during warm-up, then 1 (constant) or (total - step) / (total - warmup) (linear).
double rqvae_lr_factor(const std::string& schedule, int64_t step, int64_t total, int64_t warmup);

/// Argmin codes [V, M] of all rows of `embeddings` (eval mode, batches of `batch_size`).
torch::Tensor all_codes(RqVaeImpl& model, const torch::Tensor& embeddings, int64_t batch_size);

/// Trains `model` on `embeddings` [V, d] (on the model's device) and writes the best checkpoint
/// and metrics as the options say. Leaves the model in eval mode with the weights of the last epoch.
RqVaeTrainSummary train_rqvae(RqVaeImpl& model, const torch::Tensor& embeddings, const RqVaeTrainOptions& options);

/// Format tag in an RQ-VAE checkpoint's metadata.
constexpr const char* kRqVaeFormat = "seqrec-rqvae-1";

/// Writes the model's weights (upstream names) and its options (JSON in metadata "config") plus
/// `extra` metadata, atomically.
void save_rqvae(const std::string& path, const RqVaeImpl& model, const std::map<std::string, std::string>& extra = {});

/// Rebuilds an RQ-VAE from a checkpoint of save_rqvae (CPU, eval mode, codebooks initialised).
/// Throws CheckpointError naming the file for a foreign format or mismatching tensors.
RqVae load_rqvae(const std::string& path, std::map<std::string, std::string>* metadata = nullptr);

}  // namespace seqrec::semantic_id
