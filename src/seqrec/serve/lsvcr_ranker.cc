#include "seqrec/serve/lsvcr_ranker.h"

#include <torch/torch.h>

#include <algorithm>

#include "seqrec/common/error.h"
#include "seqrec/data/lsvcr_data.h"
#include "seqrec/models/lsvcr.h"

namespace seqrec::serve {
namespace {

models::LsvcrHistoryView view(const std::vector<int64_t>& ids) {
  return {ids.data(), static_cast<int64_t>(ids.size())};
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
  batch.video_ids = models::lsvcr_history_rows({view(h.videos)}, max_history);
  batch.comment_ids = models::lsvcr_history_rows({view(h.comments)}, max_history);
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

LsvcrBackend::LsvcrBackend(std::shared_ptr<models::LsvcrImpl> model, std::shared_ptr<const data::LsvcrStore> store,
                           data::ItemCatalog comments)
    : model_(std::move(model)), store_(std::move(store)), comments_(std::move(comments)) {
  model_->eval();
}

int64_t LsvcrBackend::num_videos() const { return model_->options().num_videos; }

int64_t LsvcrBackend::max_history() const { return model_->options().max_history; }

bool LsvcrBackend::has_comment_history(int64_t user) const {
  return user >= 0 && user < store_->num_users() && !store_->comment_histories[static_cast<size_t>(user)].ids.empty();
}

torch::Tensor LsvcrBackend::item_table() const {
  torch::NoGradGuard no_grad;
  torch::Tensor table = model_->video_embedding(torch::arange(num_videos() + 1, torch::kInt64));  // [V+1, D]
  table = torch::nn::functional::normalize(table, torch::nn::functional::NormalizeFuncOptions().dim(1));
  table[0].zero_();
  return table.to(torch::kCPU, torch::kFloat32).contiguous();
}

models::LsvcrBatch LsvcrBackend::batch_of(const std::vector<const Query*>& queries) const {
  std::vector<std::vector<int64_t>> videos;  // Query::history holds int32 ids
  std::vector<models::LsvcrHistoryView> video_rows, comment_rows;
  videos.reserve(queries.size());
  for (const Query* q : queries) {
    videos.emplace_back(q->history.begin(), q->history.end());
    video_rows.push_back(view(videos.back()));
    comment_rows.push_back(
        view(q->video > 0 || !q->by_user ? q->comments : store_->comment_histories.at(static_cast<size_t>(q->user)).ids));
  }
  models::LsvcrBatch batch;
  batch.video_ids = models::lsvcr_history_rows(video_rows, max_history());
  batch.comment_ids = models::lsvcr_history_rows(comment_rows, max_history());
  return batch;
}

torch::Tensor LsvcrBackend::user_states(const std::vector<const Query*>& queries) const {
  torch::NoGradGuard no_grad;
  torch::Tensor user = model_->video_user(model_->encode(batch_of(queries)));  // [B, D]
  user = torch::nn::functional::normalize(user, torch::nn::functional::NormalizeFuncOptions().dim(1));
  return (user / model_->options().temperature).to(torch::kCPU, torch::kFloat32).contiguous();
}

Query LsvcrBackend::resolve_comments(const CommentRequest& r, const data::ItemCatalog& videos,
                                     const data::UserMap& users) const {
  auto dense = [](const std::vector<std::string>& raw, const data::ItemCatalog& catalog, const std::string& field) {
    std::vector<int64_t> out;
    for (size_t i = 0; i < raw.size(); ++i) {
      const int64_t id = catalog.find(raw[i]);
      if (id < 0) throw not_found(field + "[" + std::to_string(i) + "]: unknown id '" + raw[i] + "'");
      out.push_back(id);
    }
    return out;
  };
  Query q;
  q.k = r.k;
  std::vector<int64_t> watched;
  if (!r.user.empty()) {
    const int64_t u = users.find(r.user);
    if (u < 0) throw not_found("user: unknown user id '" + r.user + "'");
    q.user = u;
    q.by_user = true;
    watched = store_->video_histories.at(static_cast<size_t>(u)).ids;
    q.comments = store_->comment_histories.at(static_cast<size_t>(u)).ids;
    if (watched.empty() && q.comments.empty()) throw invalid_request("user: user '" + r.user + "' has no history");
  } else {
    watched = dense(r.history, videos, "history");
    q.comments = dense(r.comment_history, comments_, "comment_history");
  }
  q.history.assign(watched.begin(), watched.end());
  q.video = videos.find(r.video);
  if (q.video < 0) throw not_found("video: unknown video id '" + r.video + "'");
  if (r.exclude_history) {
    q.masked = q.comments;
    std::sort(q.masked.begin(), q.masked.end());
    q.masked.erase(std::unique(q.masked.begin(), q.masked.end()), q.masked.end());
  }
  return q;
}

std::vector<Ranked> LsvcrBackend::rank_comments(const std::vector<const Query*>& queries) const {
  torch::NoGradGuard no_grad;
  std::vector<int64_t> current;
  for (const Query* q : queries) current.push_back(q->video);
  const torch::Tensor users =
      model_->comment_user(model_->encode(batch_of(queries)), torch::tensor(current, torch::kInt64));  // [B, D]
  std::vector<Ranked> out(queries.size());
  for (size_t i = 0; i < queries.size(); ++i) {
    const std::vector<int64_t>& section = store_->video_comments.at(static_cast<size_t>(current[i]));
    if (section.empty()) continue;
    const auto row = static_cast<int64_t>(i);
    const torch::Tensor scores =
        model_->score(users.slice(0, row, row + 1), model_->comment_text(torch::tensor(section, torch::kInt64))).squeeze(0);
    out[i] = top_k(section, scores, queries[i]->k, queries[i]->masked);
  }
  return out;
}

RecommendResult LsvcrBackend::render_comments(const Ranked& ranked) const {
  RecommendResult out;
  for (size_t i = 0; i < ranked.ids.size(); ++i) out.items.push_back({comments_.raw_id(ranked.ids[i]), ranked.scores[i]});
  out.model_version = ranked.model_version;
  return out;
}

}  // namespace seqrec::serve
