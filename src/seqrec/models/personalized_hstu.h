// PerSRec (systems.md §6; facebookresearch/PerSRec `PersonalizedHSTU`): HSTU over a long window
// of P old and R recent items with K learnable user tokens inserted after the old items. A segment
// mask lets recent items see old ones only through the tokens, so the tokens' per-layer keys and
// values can be computed once per user (compress) and cached; a request then runs the R recent
// items alone against that cache (predict), exactly equal to the uncached forward.
//
// Layout. A window is data.max_seq_len = P + R slots, left-padded: slot s < P is old, s >= P
// recent. insert_method lists (offset, k) insertions: k tokens follow the items of slots < offset
// (default one insertion (P, K)); the last offset must be P. The inserted sequence of a user holds
// its real items and all K tokens in that order; padding and dropped items are left out (no
// compute). Position ids are the PerSRec slots of the inserted (P + K + R)-slot sequence: item slot
// s + the tokens before it, token j of insertion m at offset_m + (tokens before m) + j. HSTU's
// relative position bias (gr variant) is taken between rows of the inserted sequence (the number
// of real items and tokens between two rows); a token's timestamp for the time bias is that of the
// row before it (0 when none), and each row's "next" timestamp is that of the row after it, the
// last row's the target's. Both rules depend on nothing the cache does not store.
//
// Differences from the PerSRec code: its HSTU divides SiLU attention by the current query length,
// so its cached predict (divided by R) is not equal to its uncached one (divided by P + K + R); we
// keep HSTU's fixed N (here P + K + R + output_slots), and the two are equal. Its recent-only
// baseline restarts recent positions at 0; ours keeps the positions the model was trained with.
#pragma once

#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/embedding.h>

#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "seqrec/models/hstu.h"

namespace seqrec::models {

/// PerSRec options (the `model.personalized:` subtree of an hstu model).
struct PersonalizedOptions {
  int64_t number_of_user_tokens = 4;       ///< K (shared by all users: one (1, K, D) parameter)
  int64_t pretrain_item_num = 0;           ///< P: old slots of the window
  int64_t recent_item_num = 0;             ///< R: recent slots (P + R = data.max_seq_len)
  std::vector<int64_t> insert_method;      ///< flat (offset, k) pairs in window slots; default [P, K]
  double item_dropout = 0.0;               ///< share of recent inputs dropped in training
  bool predict_with_full_item_seq = true;  ///< false: the recent-only baseline at inference (no old items, no tokens)
  std::string boundary_target = "token";   ///< target of the last old item: token (as coded: the first token) | none
};

/// Reads and validates PersonalizedOptions (max_seq_len: the window, data.max_seq_len).
PersonalizedOptions read_personalized_options(config::ConfigNode node, int64_t max_seq_len);

/// What each layer's attention needs from the K token rows of some users (PerSRec's KV cache).
struct TokenCache {
  std::vector<torch::Tensor> keys;    ///< per layer [U, H, K, dqk]
  std::vector<torch::Tensor> values;  ///< per layer [U, H, K, dv]
  torch::Tensor distances;            ///< [U, K] int64: rows from each token to the first recent row (rab^p)
  torch::Tensor timestamps;           ///< [U, K] int64: the tokens' timestamps (rab^t)
  torch::Tensor old_hashes;           ///< [U] int64: hash of the old items the cache was computed from
  torch::Tensor user_ids;             ///< [U] int64: dense user index of each row
  /// The rows of `users` [B] (throws if a user is missing).
  TokenCache rows(const torch::Tensor& users) const;
};

/// Hash of the old items (window slots < P) of each row of a left-padded batch [B, W] -> [B] int64.
torch::Tensor old_item_hashes(const torch::Tensor& item_ids, int64_t window, int64_t pretrain_item_num);

/// HSTU with PerSRec's user tokens.
class PersonalizedHstuImpl : public SequenceRecommenderImpl {
 public:
  PersonalizedHstuImpl(const HstuOptions& hstu, const PersonalizedOptions& personalized);
  /// Uncached forward with the segment mask ([B, W, D] at the items; [B, 1, D] with last_only);
  /// with last_only, in eval mode and with a cache installed, the cached predict.
  torch::Tensor encode(const data::SequenceBatch& batch) override;
  torch::Tensor item_embeddings(const torch::Tensor& item_ids) override;  ///< ids V+1..V+K: the tokens
  torch::Tensor all_item_embeddings() override;

  /// Runs the old items and tokens of each row once (plain causal within the prefix) and returns
  /// what the recent rows need from the tokens. Inference only.
  TokenCache compress(const data::SequenceBatch& batch);
  /// The newest position's state [B, 1, D] from the recent items alone and the batch users' cache
  /// rows. Inference only.
  torch::Tensor predict(const data::SequenceBatch& batch, const TokenCache& cache);
  /// Installs (or with nullptr removes) the cache encode uses for last-only inference.
  void set_token_cache(std::shared_ptr<const TokenCache> cache) { token_cache_ = std::move(cache); }

  const HstuOptions& options() const { return hstu_; }
  const PersonalizedOptions& personalized() const { return personalized_; }

  /// The inserted sequences of a batch (CPU), packed row-major.
  struct Layout {
    torch::Tensor source;       ///< [T] int64: index into the flattened [B * W] batch, -1 for a token
    torch::Tensor token;        ///< [T] int64: token index (0 for items)
    torch::Tensor positions;    ///< [T] int64: position ids
    torch::Tensor segments;     ///< [T] int32: nn::packed_pointwise_attention's segment codes
    torch::Tensor cu_seqlens;   ///< [B + 1] int64
    torch::Tensor timestamps;   ///< [B, Wc] left-padded (time bias only)
    torch::Tensor next_timestamps;  ///< [B, Wc] left-padded (time bias only)
    torch::Tensor prefix;       ///< [B] int64: rows before the recent items (old items and tokens)
    int64_t width = 0;          ///< Wc: the longest sequence
  };
  /// What to lay out: the whole sequence, its prefix (old items and tokens) or its recent items.
  enum class Part { kAll, kPrefix, kRecent };
  Layout layout(const data::SequenceBatch& batch, Part part) const;

 private:
  torch::Tensor embed(const data::SequenceBatch& batch, const Layout& layout);  // [T, D]
  bool packed(const torch::Tensor& x) const;  // the packed CPU kernels apply (else the dense paths)
  // Dense equivalents of compress (keys and values only) and predict: other devices, and several
  // insertions with the position bias (the packed kernel sees the tokens as leading rows).
  TokenCache compress_dense(const data::SequenceBatch& batch, const Layout& layout);
  torch::Tensor predict_dense(const data::SequenceBatch& batch, const TokenCache& cache, const Layout& layout);
  RelativeBiasImpl::Indices bias_indices(const Layout& layout) const;  // the time buckets, once per batch
  nn::RelativeBiasTables bias_tables(size_t block, const RelativeBiasImpl::Indices& indices);
  HstuOptions hstu_;  // the blocks' options: max_seq_len = P + K + R
  PersonalizedOptions personalized_;
  std::vector<int64_t> offsets_, counts_;  // insertions
  std::shared_ptr<const TokenCache> token_cache_;
  torch::nn::Embedding item_embedding{nullptr};
  torch::nn::Embedding position_embedding{nullptr};
  torch::nn::ModuleList blocks{nullptr};
  torch::nn::ModuleList relative_biases{nullptr};
  torch::Tensor user_tokens;  // [1, K, D]
};

}  // namespace seqrec::models
