// LSVCR at inference (systems.md §4): the SR model alone, no LLM, answers the two questions of one
// user: which videos next (every video against the next-video user vector), and in which order to
// show the comments of the video being watched (its comment section against the comment-ranking user
// vector, the video as the query). Scores are the model's: cosine / temperature, as trained and
// evaluated. `seqrec recommend` on an LSVCR checkpoint prints these.
#pragma once

#include <cstdint>
#include <vector>

#include "seqrec/serve/query.h"

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

}  // namespace seqrec::serve
