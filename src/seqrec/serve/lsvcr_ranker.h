// LSVCR at inference (systems.md §4): the SR model alone, no LLM, answers the two questions of one
// user: which videos next (every video against the next-video user vector), and in which order to
// show the comments of the video being watched (its comment section against the comment-ranking user
// vector, the video as the query). Scores are the model's: cosine / temperature, as trained and
// evaluated. `seqrec recommend` on an LSVCR checkpoint prints these.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "seqrec/data/item_catalog.h"
#include "seqrec/serve/query.h"
#include "seqrec/serve/request.h"

namespace seqrec::models {
class LsvcrImpl;
struct LsvcrBatch;
}  // namespace seqrec::models
namespace seqrec::data {
struct LsvcrStore;
}

namespace seqrec::serve {

/// One user's two histories: dense ids, oldest first (the model reads the newest max_history of
/// each). Either may be empty, not both.
struct LsvcrHistories {
  std::vector<int64_t> videos;    ///< videos watched, 1..V
  std::vector<int64_t> comments;  ///< comments engaged with, 1..C
};

/// The model input of one user (a batch of 1; an empty history is one padding slot, as in training).
models::LsvcrBatch lsvcr_history_batch(const LsvcrHistories& histories, int64_t max_history);

/// The k best videos of the whole catalogue for the user, best first (equal scores: lower id first),
/// `masked` (sorted or not) never returned. Runs the model in eval mode without gradients.
Ranked lsvcr_next_videos(models::LsvcrImpl& model, const LsvcrHistories& histories, int64_t k,
                         const std::vector<int64_t>& masked);

/// The comments of `video`'s section ranked for the user, the k best first (equal scores: lower id
/// first), `masked` never returned. Throws RequestError for a video outside 1..V.
Ranked lsvcr_rank_comments(models::LsvcrImpl& model, const data::LsvcrStore& store, const LsvcrHistories& histories,
                           int64_t video, int64_t k, const std::vector<int64_t>& masked);

/// LSVCR behind RecommenderService (`seqrec serve`): the next-video task as a ranking model whose
/// item table is the l2-normalised video embeddings and whose user state is the l2-normalised
/// next-video user vector / temperature, so that their dot product is the model's score and the
/// service's exact or index top-k, masks and allow lists apply unchanged. A query's video history
/// is its history; its comment history is the user's row of the store for a "user" request, empty
/// for a "history" one. Thread-safe (the model runs in eval mode without gradients).
class LsvcrBackend {
 public:
  /// `comments`: the store's comments/items.tsv (raw comment ids of /v1/comments).
  LsvcrBackend(std::shared_ptr<models::LsvcrImpl> model, std::shared_ptr<const data::LsvcrStore> store,
               data::ItemCatalog comments);
  /// V.
  int64_t num_videos() const;
  /// The newest events of each history the model reads.
  int64_t max_history() const;
  /// Whether dense user `user` engaged with a comment (a user without videos is still answered).
  bool has_comment_history(int64_t user) const;
  /// [V+1, D] float32 CPU, row 0 zeros.
  torch::Tensor item_table() const;
  /// [B, D] float32 CPU user states of the queries (one forward).
  torch::Tensor user_states(const std::vector<const Query*>& queries) const;
  /// A comment request as a query: `history` the video history, `comments` the comment history
  /// (a "user" request: both from the store), `video` the current video, `masked` the comments
  /// engaged with (unless exclude_history is false). `videos` and `users` are the service's maps; an
  /// unknown id throws ApiError 404 naming the field, a user without any history 400.
  Query resolve_comments(const CommentRequest& request, const data::ItemCatalog& videos,
                         const data::UserMap& users) const;
  /// The comment sections of a batch of comment queries, ranked as lsvcr_rank_comments ranks one
  /// (one forward for the batch; `masked` left out, k best first).
  std::vector<Ranked> rank_comments(const std::vector<const Query*>& queries) const;
  /// Raw comment ids of a ranked answer.
  RecommendResult render_comments(const Ranked& ranked) const;

 private:
  std::shared_ptr<models::LsvcrImpl> model_;
  std::shared_ptr<const data::LsvcrStore> store_;
  // The model input of a batch: each query's videos and its comments (q.comments, or for a "user"
  // next-video query the user's row of the store).
  models::LsvcrBatch batch_of(const std::vector<const Query*>& queries) const;

  data::ItemCatalog comments_;
};

}  // namespace seqrec::serve
