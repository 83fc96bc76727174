// Training objectives over the supervised (non-padding) positions of a batch.
#pragma once

#include <torch/types.h>

#include "seqrec/config/options.h"
#include "seqrec/data/batcher.h"
#include "seqrec/models/recommender.h"

namespace seqrec::train {

/// SASRec paper: mean over positions of -log sigmoid(q.p) - log(1 - sigmoid(q.n)).
/// h, pos, neg: [N, D].
torch::Tensor bce_loss(const torch::Tensor& h, const torch::Tensor& pos, const torch::Tensor& neg);
/// The same from the logits q.p [N] and q.n [N].
torch::Tensor bce_from_logits(const torch::Tensor& pos_logits, const torch::Tensor& neg_logits);

/// GR sampled softmax (systems.md §2.4) from raw logits: [q.p, q.n_1..q.n_R] / T, negatives equal
/// to the positive id masked to -5e4, cross-entropy with label 0, mean over positions.
/// pos_logits [N]; neg_logits [N, R]; pos_ids [N]; neg_ids [N, R].
torch::Tensor sampled_softmax_loss(const torch::Tensor& pos_logits, const torch::Tensor& neg_logits,
                                   const torch::Tensor& pos_ids, const torch::Tensor& neg_ids,
                                   double temperature);

/// Logits of h [N, D] against items[ids] for ids [N] or [N, R]. Exact either way: with a small
/// catalogue it takes the whole (normalised) table once and computes only the N x R products
/// (nn::gathered_dot: no [N, R, D] gather, no [N, V] product); otherwise it gathers the
/// embeddings of the ids from the model.
torch::Tensor item_logits(models::SequenceRecommenderImpl& model, const torch::Tensor& h, const torch::Tensor& ids);

/// Full softmax cross-entropy over all items (padding column excluded): h [N, D], items [V+1, D],
/// targets [N] -> mean over positions.
torch::Tensor full_softmax_loss(const torch::Tensor& h, const torch::Tensor& items, const torch::Tensor& targets,
                                double temperature);

/// HLLM's nce loss (systems.md §1.6) on l2-normalised q [N, D] and p [N, D]: logits
/// scale * [q.p, q.n_1..q.n_M], where negatives with p.n_j > dedup_threshold are dropped (-inf), and
/// cross-entropy with label 0, averaged over positions. neg: [M, D] one pool shared by every
/// position, or [N, R, D] per position. `scale` is a scalar tensor (learnable or constant).
/// `dropped_share`, when given, receives the share of all (position, negative) pairs dropped.
torch::Tensor nce_loss(const torch::Tensor& q, const torch::Tensor& p, const torch::Tensor& neg,
                       const torch::Tensor& scale, double dedup_threshold, double* dropped_share = nullptr);

/// compute_loss warns when nce drops more than this share of the negatives as near-duplicates of
/// their positives: the sign of a collapsing item tower (every item alike drops every negative and
/// leaves a loss of 0), seen with HLLM's trainable item LLM (docs/benchmarks.md).
constexpr double kNceCollapseShare = 0.5;

/// The learnable scale exp(clamp(log_scale, 0, ln max_scale)).
torch::Tensor clamped_scale(const torch::Tensor& log_scale, double max_scale);

/// Encodes `batch` with `model` and applies the configured loss to positions with a target. For
/// nce with a shared pool the negatives of all positions form one pool, gathered across ranks in a
/// data-parallel job (dist::gather_across_ranks: pool = world x positions x R).
torch::Tensor compute_loss(models::SequenceRecommenderImpl& model, const data::SequenceBatch& batch,
                           const config::LossOptions& options);

}  // namespace seqrec::train
