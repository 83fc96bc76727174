// In-memory interaction stores for the tests of the split and the batchers (torch-free).
#pragma once

#include <cstdint>
#include <vector>

#include "seqrec/data/interaction_store.h"

namespace seqrec::data::testing {

/// A store from per-user item sequences (optionally with timestamps = 100*user + position).
inline InteractionStore make_store(const std::vector<std::vector<int32_t>>& seqs, int64_t num_items,
                                   bool timestamps = false) {
  StoreData d;
  d.num_items = num_items;
  d.has_timestamps = timestamps;
  d.user_offsets.push_back(0);
  for (size_t u = 0; u < seqs.size(); ++u) {
    for (size_t i = 0; i < seqs[u].size(); ++i) {
      d.item_ids.push_back(seqs[u][i]);
      if (timestamps) d.timestamps.push_back(static_cast<int64_t>(100 * u + i));
    }
    d.user_offsets.push_back(d.item_ids.size());
  }
  return InteractionStore::from_data(std::move(d));
}

}  // namespace seqrec::data::testing
