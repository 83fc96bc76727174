// A request with its ids resolved to dense ones (what the scorer sees), and a ranked answer.
// Torch-free, so that the micro-batcher and the HTTP layer can pass them around.
#pragma once

#include <cstdint>
#include <vector>

namespace seqrec::serve {

/// One resolved query.
struct Query {
  std::vector<int32_t> history;     ///< dense item ids 1..V, oldest first (never empty)
  std::vector<int64_t> history_ts;  ///< their timestamps (user requests with a timed store; else empty)
  int64_t user = 0;                 ///< dense user index (0 for history requests), for per-user model state
  bool by_user = false;             ///< a "user" request: `history` is the user's row of the store
  int64_t k = 10;                   ///< items wanted
  std::vector<int64_t> masked;      ///< sorted unique dense ids never returned (history if excluded, deny list)
  std::vector<int64_t> allow;       ///< sorted unique dense ids: only these (empty = every item)
  int64_t video = 0;                ///< LSVCR comment ranking: the current video (0: not a comment query)
  std::vector<int64_t> comments;    ///< LSVCR comment ranking: the comment history (dense ids, oldest first)
};

/// A ranked answer: dense ids, best first, and their scores.
struct Ranked {
  std::vector<int64_t> ids;
  std::vector<float> scores;
  int64_t model_version = 0;  ///< the model that ranked
};

}  // namespace seqrec::serve
