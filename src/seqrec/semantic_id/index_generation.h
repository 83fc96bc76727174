// Semantic-id generation for all items (LC-Rec index/generate_indices.py): argmin codes, then rounds
// that re-encode each group of colliding items with Sinkhorn on the last level so the group spreads
// over different last codes. Collisions left after the rounds are tolerated (identical items).
#pragma once

#include <torch/types.h>

#include <cstdint>

#include "seqrec/semantic_id/item_index.h"
#include "seqrec/semantic_id/rqvae.h"

namespace seqrec::semantic_id {

/// Options of generate_index.
struct IndexGenerationOptions {
  int64_t max_rounds = 20;          ///< collision-resolution rounds at most
  double default_epsilon = 0.003;   ///< last level's epsilon when the model's is 0
  int64_t batch_size = 1024;        ///< items per forward in the first (argmin) pass
};

/// What generate_index produced.
struct IndexGenerationReport {
  ItemIndex index;                  ///< codes of every item row
  CollisionStats before;            ///< of the argmin codes
  CollisionStats after;             ///< after the rounds
  int64_t rounds = 0;               ///< rounds run
  std::vector<int64_t> used_codes;  ///< [M] distinct codes per level, after the rounds
};

/// The index of `embeddings` [V, d] under `model` (put in eval mode). In each round every group
/// of items sharing a code tuple is encoded again as one batch with argmin on levels 0..M-2 and
/// Sinkhorn on the last level (the model's last epsilon, or default_epsilon when that is 0); rounds
/// stop when no tuple is shared or after max_rounds.
IndexGenerationReport generate_index(RqVaeImpl& model, const torch::Tensor& embeddings,
                                     const IndexGenerationOptions& options);

}  // namespace seqrec::semantic_id
