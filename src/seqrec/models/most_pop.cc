// Most-popular baseline.
#include "seqrec/models/most_pop.h"

namespace seqrec::models {

MostPopImpl::MostPopImpl(int64_t num_items, const std::vector<int64_t>& counts) {
  auto c = torch::zeros({num_items + 1}, torch::kFloat);                  // [V+1]
  if (!counts.empty()) {
    TORCH_CHECK(static_cast<int64_t>(counts.size()) == num_items + 1, "counts must have V+1 entries");
    for (int64_t i = 0; i <= num_items; ++i) c[i] = static_cast<float>(counts[i]);
  }
  item_counts = register_buffer("item_counts", c);
}

torch::Tensor MostPopImpl::encode(const data::SequenceBatch& batch) {
  return torch::ones({batch.item_ids.size(0), batch.item_ids.size(1), 1}, item_counts.options());  // [B, W, 1]
}

torch::Tensor MostPopImpl::item_embeddings(const torch::Tensor& item_ids) {
  return item_counts.index_select(0, item_ids.reshape({-1})).view(item_ids.sizes()).unsqueeze(-1);  // [..., 1]
}

torch::Tensor MostPopImpl::all_item_embeddings() { return item_counts.unsqueeze(1); }  // [V+1, 1]

}  // namespace seqrec::models
