// Training objectives.
#include "seqrec/train/losses.h"

#include <torch/nn/functional/activation.h>
#include <torch/nn/functional/loss.h>
#include <torch/nn/functional/normalization.h>

#include <atomic>
#include <cmath>
#include <limits>

#include "seqrec/common/error.h"
#include "seqrec/common/log.h"
#include "seqrec/dist/all_gather.h"
#include "seqrec/models/molar.h"
#include "seqrec/nn/gathered_dot.h"

namespace seqrec::train {

namespace F = torch::nn::functional;

torch::Tensor bce_from_logits(const torch::Tensor& pos_logits, const torch::Tensor& neg_logits) {
  // -log sigmoid(x) = softplus(-x); -log(1 - sigmoid(x)) = softplus(x) (stable forms).
  return (F::softplus(-pos_logits) + F::softplus(neg_logits)).mean();
}

torch::Tensor bce_loss(const torch::Tensor& h, const torch::Tensor& pos, const torch::Tensor& neg) {
  return bce_from_logits((h * pos).sum(-1), (h * neg).sum(-1));          // [N], [N]
}

torch::Tensor sampled_softmax_loss(const torch::Tensor& pos_logits, const torch::Tensor& neg_logits,
                                   const torch::Tensor& pos_ids, const torch::Tensor& neg_ids,
                                   double temperature) {
  auto masked = neg_logits.masked_fill(neg_ids.eq(pos_ids.unsqueeze(-1)), -5e4 * temperature);  // [N, R]
  auto logits = torch::cat({pos_logits.unsqueeze(1), masked}, 1) / temperature;                  // [N, R+1]
  return -torch::log_softmax(logits, 1).select(1, 0).mean();
}

torch::Tensor item_logits(models::SequenceRecommenderImpl& model, const torch::Tensor& h, const torch::Tensor& ids) {
  const int64_t n = h.size(0);
  const int64_t per_row = ids.dim() == 2 ? ids.size(1) : 1;
  auto flat = ids.reshape({n, per_row});                                              // [N, R]
  auto table = model.all_item_embeddings();                                           // [V+1, D], once per step
  // Ids past the catalogue name model-specific targets (PerSRec's user tokens), which only
  // item_embeddings knows: their rows are appended to the table.
  const int64_t max_id = flat.numel() ? flat.max().item<int64_t>() : 0;
  if (max_id >= table.size(0))
    table = torch::cat({table, model.item_embeddings(torch::arange(table.size(0), max_id + 1, flat.options()))});
  if (table.size(0) <= 64 * std::max<int64_t>(per_row, 16))
    return nn::gathered_dot(h, table, flat).view(ids.sizes());                        // [N, R]
  auto emb = model.item_embeddings(flat);                                             // [N, R, D]
  return torch::matmul(emb, h.unsqueeze(-1)).squeeze(-1).view(ids.sizes());
}

torch::Tensor full_softmax_loss(const torch::Tensor& h, const torch::Tensor& items, const torch::Tensor& targets,
                                double temperature) {
  auto logits = torch::matmul(h, items.t()) / temperature;               // [N, V+1]
  logits.select(1, 0).fill_(-std::numeric_limits<float>::infinity());    // never predict padding
  return F::cross_entropy(logits, targets);
}

torch::Tensor nce_loss(const torch::Tensor& q, const torch::Tensor& p, const torch::Tensor& neg,
                       const torch::Tensor& scale, double dedup_threshold, double* dropped_share) {
  auto pos = (q * p).sum(-1, /*keepdim=*/true);                                 // [N, 1]
  torch::Tensor logits, near;
  if (neg.dim() == 2) {                                                         // shared pool [M, D]
    logits = torch::matmul(q, neg.t());                                         // [N, M]
    near = torch::matmul(p, neg.t()).gt(dedup_threshold);
  } else {                                                                      // per position [N, R, D]
    logits = torch::matmul(neg, q.unsqueeze(-1)).squeeze(-1);                  // [N, R]
    near = torch::matmul(neg, p.unsqueeze(-1)).squeeze(-1).gt(dedup_threshold);
  }
  if (dropped_share != nullptr) *dropped_share = near.numel() > 0 ? near.to(torch::kFloat).mean().item<double>() : 0.0;
  // Mask after scaling: d(scale * -inf)/d(scale) would be 0 * -inf = NaN.
  logits = (logits * scale).masked_fill(near, -std::numeric_limits<float>::infinity());
  auto all = torch::cat({pos * scale, logits}, 1);                              // [N, 1 + M]
  return -torch::log_softmax(all, 1).select(1, 0).mean();
}

torch::Tensor clamped_scale(const torch::Tensor& log_scale, double max_scale) {
  return log_scale.clamp(0.0, std::log(max_scale)).exp();
}

namespace {

torch::Tensor nce_from_batch(models::SequenceRecommenderImpl& model, const torch::Tensor& h, const torch::Tensor& pos_ids,
                             const torch::Tensor& neg_ids, const config::LossOptions& options) {
  auto l2 = [](const torch::Tensor& x) { return F::normalize(x, F::NormalizeFuncOptions().dim(-1).eps(1e-6)); };
  torch::Tensor scale;
  if (options.learnable_scale) {
    auto* log_scale = model.named_parameters(/*recurse=*/false).find("logit_scale");
    if (!log_scale)
      throw ConfigError("train.loss.scale", "'learnable' needs a model with a logit_scale parameter (hllm); give a "
                                            "fixed number such as 20 for ID models");
    scale = clamped_scale(*log_scale, options.max_scale);
  } else {
    scale = torch::tensor(options.scale, h.options());
  }
  auto q = l2(h), p = l2(model.item_embeddings(pos_ids));
  // Shared: every position scores against the negatives drawn for all positions of the batch, and
  // in a data-parallel job of all ranks (gathered with gradient: pool = world x positions x R).
  auto neg = options.shared_pool ? dist::gather_across_ranks(l2(model.item_embeddings(neg_ids.reshape({-1}))))
                                 : l2(model.item_embeddings(neg_ids));
  double dropped = 0;
  auto loss = nce_loss(q, p, neg, scale, options.dedup_threshold, &dropped);
  if (dropped > kNceCollapseShare) {
    static std::atomic<int64_t> seen{0};  // the first time, then every 100th step it happens
    if (seen++ % 100 == 0)
      log_warn("nce: %.0f%% of the negatives lie within train.loss.dedup_threshold (%.3g) of their positive and are "
               "dropped: the item embeddings are collapsing (all items alike drop every negative and the loss goes "
               "to 0 while nothing is learnt); lower the learning rate or set train.loss.dedup_threshold: 1.0",
               100 * dropped, options.dedup_threshold);
  }
  return loss;
}

}  // namespace

namespace {

torch::Tensor configured_loss(models::SequenceRecommenderImpl& model, const data::SequenceBatch& batch,
                              const torch::Tensor& hidden, const config::LossOptions& options) {
  const int64_t d = hidden.size(-1);
  auto valid = batch.targets.reshape({-1}).ne(0).nonzero().squeeze(1);   // [N]
  auto h = hidden.reshape({-1, d}).index_select(0, valid);               // [N, D]
  auto pos_ids = batch.targets.reshape({-1}).index_select(0, valid);     // [N]
  if (options.name == config::LossName::kSoftmax)
    return full_softmax_loss(h, model.all_item_embeddings(), pos_ids, options.temperature);
  TORCH_CHECK(batch.negatives.defined(), "this loss needs sampled negatives");
  const int64_t r = batch.negatives.size(-1);
  auto neg_ids = batch.negatives.reshape({-1, r}).index_select(0, valid);  // [N, R]
  if (options.name == config::LossName::kNce) return nce_from_batch(model, h, pos_ids, neg_ids, options);
  auto logits = item_logits(model, h, torch::cat({pos_ids.unsqueeze(1), neg_ids}, 1));  // [N, R+1]
  if (options.name == config::LossName::kBce) return bce_from_logits(logits.select(1, 0), logits.select(1, 1));
  return sampled_softmax_loss(logits.select(1, 0), logits.narrow(1, 1, r), pos_ids, neg_ids,
                              options.temperature);
}

}  // namespace

torch::Tensor compute_loss(models::SequenceRecommenderImpl& model, const data::SequenceBatch& batch,
                           const config::LossOptions& options) {
  auto hidden = model.encode(batch);                                     // [B, W, D]
  auto loss = configured_loss(model, batch, hidden, options);
  // Molar's post-alignment (and any model's own extra objective) rides on the same encode().
  if (auto* aux = dynamic_cast<models::AuxiliaryLossModel*>(&model)) {
    auto extra = aux->auxiliary_loss(batch, hidden);
    if (extra.defined()) loss = loss + extra;
  }
  return loss;
}

}  // namespace seqrec::train
