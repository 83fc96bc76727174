// Most-popular baseline: scores every item by its training count, the same for every user.
#pragma once

#include "seqrec/models/recommender.h"

namespace seqrec::models {

/// Most-popular baseline. Its "user state" is the constant 1 and its "item embedding" the item's
/// training count, so score = count and the shared scoring code needs no special case.
class MostPopImpl : public SequenceRecommenderImpl {
 public:
  /// counts: [V+1] training counts (may be all zero before loading a checkpoint).
  MostPopImpl(int64_t num_items, const std::vector<int64_t>& counts);
  torch::Tensor encode(const data::SequenceBatch& batch) override;
  torch::Tensor item_embeddings(const torch::Tensor& item_ids) override;
  torch::Tensor all_item_embeddings() override;
  bool trainable() const override { return false; }

 private:
  torch::Tensor item_counts;  // [V+1] float buffer
};

}  // namespace seqrec::models
