// LSVCR's loss terms (systems.md §4.2, §4.3); every score is cosine / temperature.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <functional>

namespace seqrec::train {

/// The negatives of an in-batch contrastive loss when the batch is split over ranks: `gather(x)`
/// concatenates every rank's rows of x in rank order (differentiable: dist::all_gather_with_grad),
/// and this rank's rows start at row `offset` of the result. Default: one process, the batch itself.
struct NegativePool {
  std::function<torch::Tensor(const torch::Tensor&)> gather;
  int64_t offset = 0;
  torch::Tensor operator()(const torch::Tensor& x) const { return gather ? gather(x) : x; }
};

/// Next-video loss, full softmax over all videos: users [B, D], videos [V+1, D] (row 0 padding, never
/// a class), targets [B] in 1..V -> mean CE of cos(user, video) / temperature.
torch::Tensor lsvcr_video_loss(const torch::Tensor& users, const torch::Tensor& videos, const torch::Tensor& targets,
                               double temperature);

/// Comment-ranking loss: users [B, D], candidates [B, 1 + n, D] with the positive first -> mean CE
/// (label 0) of cos / temperature.
torch::Tensor lsvcr_comment_loss(const torch::Tensor& users, const torch::Tensor& candidates, double temperature);

/// InfoNCE of row i of a [N, D] against row i of b [N, D] among all rows of b:
/// mean_i -log softmax_j(cos(a_i, b_j) / temperature)_i. With a pool, the columns are pool(b) and
/// row i's positive is column pool.offset + i (the mean is still over a's N rows).
torch::Tensor info_nce(const torch::Tensor& a, const torch::Tensor& b, double temperature,
                       const NegativePool& pool = {});

/// Stage 2's ID-text contrastive loss: ID embeddings [N, D] against the same videos' text [N, D]
/// (each row's negatives are the other N - 1 rows), both ways: (info_nce(id, text) + info_nce(text, id)) / 2.
torch::Tensor lsvcr_id_text_loss(const torch::Tensor& id_embeddings, const torch::Tensor& text_embeddings,
                                 double temperature);

/// Stage 1's L_contrast: CE (label 0) over {task SR vector, other-behaviour SR vector} scored against
/// the LLM user vector, + 1/2 info_nce(SR -> LLM) + 1/2 info_nce(LLM -> SR) over the batch (the
/// info_nce negatives from `pool` when given). sr_task, sr_other, llm: [B, D].
torch::Tensor lsvcr_alignment_contrast_loss(const torch::Tensor& sr_task, const torch::Tensor& sr_other,
                                            const torch::Tensor& llm, double temperature,
                                            const NegativePool& pool = {});

}  // namespace seqrec::train
