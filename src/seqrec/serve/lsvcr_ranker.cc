#include "seqrec/serve/lsvcr_ranker.h"

#include <torch/torch.h>

#include <algorithm>

#include "seqrec/common/error.h"
#include "seqrec/data/lsvcr_data.h"
#include "seqrec/models/lsvcr.h"

namespace seqrec::serve {
namespace {

/// The newest `max_history` of `ids` as a [1, max(1, n)] right-padded row.
torch::Tensor history_row(const std::vector<int64_t>& ids, int64_t max_history) {
  const auto n = std::min<int64_t>(static_cast<int64_t>(ids.size()), max_history);
  torch::Tensor row = torch::zeros({1, std::max<int64_t>(n, 1)}, torch::kInt64);
  std::copy(ids.end() - n, ids.end(), row.data_ptr<int64_t>());
  return row;
}

/// The k best of `candidates` by `scores` (one per candidate), masked ones dropped; stable on ties
/// by candidate id.
Ranked top_k(const std::vector<int64_t>& candidates, const torch::Tensor& scores, int64_t k,
             std::vector<int64_t> masked) {
  std::sort(masked.begin(), masked.end());
  const torch::Tensor s = scores.to(torch::kFloat32).contiguous();
  const float* p = s.data_ptr<float>();
  std::vector<size_t> order;
  for (size_t i = 0; i < candidates.size(); ++i)
    if (!std::binary_search(masked.begin(), masked.end(), candidates[i])) order.push_back(i);
  const size_t n = std::min(order.size(), static_cast<size_t>(std::max<int64_t>(k, 0)));
  std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(n), order.end(), [&](size_t a, size_t b) {
    return p[a] != p[b] ? p[a] > p[b] : candidates[a] < candidates[b];
  });
  Ranked out;
  for (size_t i = 0; i < n; ++i) {
    out.ids.push_back(candidates[order[i]]);
    out.scores.push_back(p[order[i]]);
  }
  return out;
}

/// Runs `f` with the model in eval mode and without gradients, restoring its mode after.
template <typename F>
Ranked in_eval_mode(models::LsvcrImpl& model, F&& f) {
  torch::NoGradGuard no_grad;
  const bool was_training = model.is_training();
  model.eval();
  Ranked out = f();
  model.train(was_training);
  return out;
}

}  // namespace

models::LsvcrBatch lsvcr_history_batch(const LsvcrHistories& h, int64_t max_history) {
  if (h.videos.empty() && h.comments.empty()) throw RequestError("LSVCR needs a video or a comment history; both are empty");
  models::LsvcrBatch batch;
  batch.video_ids = history_row(h.videos, max_history);
  batch.comment_ids = history_row(h.comments, max_history);
  return batch;
}

Ranked lsvcr_next_videos(models::LsvcrImpl& model, const LsvcrHistories& h, int64_t k, const std::vector<int64_t>& masked) {
  return in_eval_mode(model, [&] {
    const int64_t V = model.options().num_videos;
    torch::Tensor user = model.video_user(model.encode(lsvcr_history_batch(h, model.options().max_history)));  // [1, D]
    torch::Tensor ids = torch::arange(1, V + 1, torch::kInt64);
    torch::Tensor scores = model.score(user, model.video_embedding(ids)).squeeze(0);                          // [V]
    return top_k(std::vector<int64_t>(ids.data_ptr<int64_t>(), ids.data_ptr<int64_t>() + V), scores, k, masked);
  });
}

Ranked lsvcr_rank_comments(models::LsvcrImpl& model, const data::LsvcrStore& store, const LsvcrHistories& h,
                           int64_t video, int64_t k, const std::vector<int64_t>& masked) {
  if (video < 1 || video > store.num_videos)
    throw RequestError("video " + std::to_string(video) + " is outside 1.." + std::to_string(store.num_videos));
  const std::vector<int64_t>& section = store.video_comments[static_cast<size_t>(video)];
  if (section.empty()) return Ranked{};
  return in_eval_mode(model, [&] {
    torch::Tensor current = torch::tensor({video}, torch::kInt64);
    torch::Tensor user = model.comment_user(model.encode(lsvcr_history_batch(h, model.options().max_history)), current);
    torch::Tensor scores = model.score(user, model.comment_text(torch::tensor(section, torch::kInt64))).squeeze(0);
    return top_k(section, scores, k, masked);
  });
}

}  // namespace seqrec::serve
