// LSVCR's loss terms (definitions in lsvcr_losses.h).
#include "seqrec/train/lsvcr_losses.h"

#include <torch/torch.h>

#include "seqrec/train/losses.h"

namespace seqrec::train {
namespace {

namespace F = torch::nn::functional;

torch::Tensor unit(const torch::Tensor& x) { return F::normalize(x, F::NormalizeFuncOptions().dim(-1)); }

}  // namespace

torch::Tensor lsvcr_video_loss(const torch::Tensor& users, const torch::Tensor& videos, const torch::Tensor& targets,
                               double temperature) {
  return full_softmax_loss(unit(users), unit(videos), targets, temperature);
}

torch::Tensor lsvcr_comment_loss(const torch::Tensor& users, const torch::Tensor& candidates, double temperature) {
  auto logits = torch::bmm(unit(candidates), unit(users).unsqueeze(-1)).squeeze(-1) / temperature;  // [B, 1 + n]
  return F::cross_entropy(logits, torch::zeros({logits.size(0)}, users.options().dtype(torch::kInt64)));
}

torch::Tensor info_nce(const torch::Tensor& a, const torch::Tensor& b, double temperature, const NegativePool& pool) {
  auto logits = torch::matmul(unit(a), unit(pool(b)).t()) / temperature;                     // [N, pool rows]
  return F::cross_entropy(logits, torch::arange(pool.offset, pool.offset + a.size(0), a.options().dtype(torch::kInt64)));
}

torch::Tensor lsvcr_id_text_loss(const torch::Tensor& id_embeddings, const torch::Tensor& text_embeddings,
                                 double temperature) {
  return 0.5 * (info_nce(id_embeddings, text_embeddings, temperature) +
                info_nce(text_embeddings, id_embeddings, temperature));
}

torch::Tensor lsvcr_alignment_contrast_loss(const torch::Tensor& sr_task, const torch::Tensor& sr_other,
                                            const torch::Tensor& llm, double temperature, const NegativePool& pool) {
  auto l = unit(llm);
  auto two = torch::stack({(unit(sr_task) * l).sum(-1), (unit(sr_other) * l).sum(-1)}, 1) / temperature;  // [B, 2]
  auto behaviour = F::cross_entropy(two, torch::zeros({two.size(0)}, llm.options().dtype(torch::kInt64)));
  return behaviour + 0.5 * info_nce(sr_task, llm, temperature, pool) + 0.5 * info_nce(llm, sr_task, temperature, pool);
}

}  // namespace seqrec::train
