// Approximate top-k over the item table with faiss (inner product): HNSW, IVF-PQ or IVF-Flat,
// built from the item embeddings or read from a file. Exact top-k is not here: it is the
// service's blocked matrix product, the default.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "seqrec/serve/serve_options.h"

namespace faiss {
struct Index;
}

namespace seqrec::serve {

/// A faiss index over items 1..V (faiss label i = dense id i + 1). search() is thread-safe.
class ItemIndex {
 public:
  /// Builds `options.kind` (hnsw | ivfpq | ivfflat) over items [V+1, D] (row 0 = padding, skipped).
  /// Throws ConfigError naming serve.index.<key> for parameters that do not fit (pq_m not dividing D).
  static std::unique_ptr<ItemIndex> build(const torch::Tensor& items, const IndexOptions& options);
  /// Reads an index written by save(); throws CheckpointError when its size or dimension do not fit
  /// items [V+1, D].
  static std::unique_ptr<ItemIndex> load(const std::string& path, const torch::Tensor& items, const IndexOptions& options);
  ~ItemIndex();

  /// Writes the index (temp file + rename).
  void save(const std::string& path) const;
  /// Top-n candidates of each state [B, D] (float32 CPU): dense ids [B][<= n] by the index's score.
  std::vector<std::vector<int64_t>> search(const torch::Tensor& states, int64_t n) const;
  /// Items indexed (V).
  int64_t size() const;
  /// "hnsw(M=32, efSearch=128)" and the like.
  const std::string& description() const { return description_; }

 private:
  ItemIndex(std::unique_ptr<faiss::Index> index, std::string description);
  std::unique_ptr<faiss::Index> index_;
  std::string description_;
};

}  // namespace seqrec::serve
