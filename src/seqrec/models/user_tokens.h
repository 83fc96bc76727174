// PerSRec's user tokens (systems.md §6), shared by the models that insert them (PersonalizedHSTU,
// HLLM with `personalized:`): the options, the inserted layout of a batch, the segment mask, and
// the per-user token cache that `seqrec compress` writes.
//
// Layout. A window is data.max_seq_len = P + R slots, left-padded: slot s < P is old, s >= P
// recent. insert_method lists (offset, k) insertions: k tokens follow the items of slots < offset
// (default one insertion (P, K)); the last offset must be P. The inserted sequence of a user holds
// its real items and all K tokens in that order; padding and dropped items are left out. Position
// ids are the PerSRec slots of the inserted (P + K + R)-slot sequence: item slot s + the tokens
// before it, token j of insertion m at offset_m + (tokens before m) + j. A token's timestamp is
// that of the row before it (0 for none), its "next" timestamp its own; an item's next timestamp is
// the next row's, the last row's the target's. The prefix (old items and tokens) thus depends on
// the prefix alone, and a cache of it is exact.
#pragma once

#include <torch/types.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "seqrec/data/batcher.h"

namespace seqrec::config {
class ConfigNode;
}

namespace seqrec::nn {
struct KvCache;
}

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

/// Throws CheckpointError when a batch row's old items are not those its cache row was made from.
void check_old_items(const data::SequenceBatch& batch, const TokenCache& cache, const PersonalizedOptions& options);

/// What to lay out: the whole sequence, its prefix (old items and tokens) or its recent items.
enum class InsertedPart { kAll, kPrefix, kRecent };

/// The inserted sequences of a batch (CPU), packed row-major: per sequence its old segments, each
/// followed by its tokens, then the recent items (padding and dropped items left out).
struct InsertedLayout {
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

/// Lays out a left-padded batch [B, W <= P + R]; with_times fills the timestamps (the position ids
/// stand in for time when the batch has none).
InsertedLayout insert_user_tokens(const data::SequenceBatch& batch, const PersonalizedOptions& options,
                                  InsertedPart part, bool with_times);

/// Each token's row within its sequence in a prefix layout (every sequence holds all K): [B, K].
torch::Tensor token_rows(const InsertedLayout& prefix, int64_t k);

/// Fills a cache's distances (rows from each token to the first recent row), timestamps, old-item
/// hashes and user ids from the prefix layout it was computed on (keys and values are the model's).
void finish_token_cache(TokenCache* cache, const InsertedLayout& prefix, const data::SequenceBatch& batch,
                        const PersonalizedOptions& options);

/// Real rows of a left-padded [B, W] layout whose lengths cu (cu_seqlens) gives: [B, W] bool.
torch::Tensor valid_rows(const torch::Tensor& cu, int64_t width);
/// Packed rows [T, D] -> left-padded [B, W, D] (zeros at the padding).
torch::Tensor pad_rows(const torch::Tensor& x, const torch::Tensor& cu, int64_t width);
/// The segment mask of the left-padded inserted sequences (systems.md §6.1): causal, real rows,
/// and an item column visible only to rows of its own segment. codes [T] packed -> [B, W, W] bool.
torch::Tensor segment_mask(const torch::Tensor& codes, const torch::Tensor& cu, int64_t width);

// ---- For models whose blocks take an additive mask and a per-layer KV cache (HLLM's user LLM,
// LLaMA-ID): the dense inserted inputs, the masks of the full and the cached forward, and the
// token rows of the keys and values.

/// Additive attention mask [B, 1, T, S] from an allowed-mask [B, T, S] whose first `past` key
/// columns are cached rows; a padded row that would see nothing sees itself (never read).
torch::Tensor additive_mask(torch::Tensor allowed, int64_t past);

/// The inserted inputs of a layout: items from `inputs` [B, W, D] (the batch's embeddings) and
/// tokens from `tokens` [K, D], left-padded -> {[B, Wc, D], position ids [B, Wc]} on inputs' device.
std::pair<torch::Tensor, torch::Tensor> inserted_inputs(const InsertedLayout& lay, const torch::Tensor& inputs,
                                                        const torch::Tensor& tokens);

/// Outputs [B, Wc, D] of an inserted forward back at the batch's item slots: [B, W, D] (zeros at
/// padding and dropped slots), or with last_only each row's newest state [B, 1, D].
torch::Tensor outputs_at_items(const torch::Tensor& hidden, const InsertedLayout& lay, int64_t b, int64_t w,
                               bool last_only);

/// The cache of a prefix forward: each layer's keys and values [B, H, Wc, hd] (after RoPE) cut to
/// the K token rows [B, H, K, hd], then finish_token_cache.
TokenCache token_cache_from_layers(const std::vector<nn::KvCache>& layers, const InsertedLayout& prefix,
                                   const data::SequenceBatch& batch, const PersonalizedOptions& options);

/// A cache's keys and values as the per-layer caches the decoder blocks extend.
std::vector<nn::KvCache> layer_caches(const TokenCache& cache);

/// The additive mask of the cached forward of a recent layout: keys [K tokens | recent], every real
/// row sees the tokens, recent rows causally: [B, 1, Wr, K + Wr].
torch::Tensor cached_recent_mask(const InsertedLayout& recent, int64_t k);

/// A model with user tokens: what `seqrec compress`, `eval` and `recommend` need from it.
class UserTokenModel {
 public:
  virtual ~UserTokenModel() = default;
  /// Runs the old items and tokens of each row once; what the recent rows need from the tokens.
  virtual TokenCache compress(const data::SequenceBatch& batch) = 0;
  /// Installs (or with nullptr removes) the cache that last-only inference then uses.
  virtual void set_token_cache(std::shared_ptr<const TokenCache> cache) = 0;
  virtual const PersonalizedOptions& personalized() const = 0;
};

}  // namespace seqrec::models
