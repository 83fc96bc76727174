// PerSRec (systems.md §6; facebookresearch/PerSRec `PersonalizedHSTU`): HSTU over a long window
// of P old and R recent items with K learnable user tokens inserted after the old items. A segment
// mask lets recent items see old ones only through the tokens, so the tokens' per-layer keys and
// values can be computed once per user (compress) and cached; a request then runs the R recent
// items alone against that cache (predict), exactly equal to the uncached forward.
//
// The inserted layout (segments, positions, token times) is user_tokens.h's. HSTU's relative
// position bias is taken between rows of the inserted sequence (the number of real items and
// tokens between two rows), which the cache stores per token with its timestamp.
//
// Differences from the PerSRec code: its HSTU divides SiLU attention by the current query length
// (R in its cached predict, P + K + R uncached), ours by HSTU's fixed N (here P + K + R +
// output_slots); the layer norm of the attention output cancels either factor up to its epsilon.
// Its recent-only baseline restarts recent positions at 0; ours keeps the trained positions.
#pragma once

#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/embedding.h>

#include <memory>
#include <string>
#include <vector>

#include "seqrec/models/hstu.h"
#include "seqrec/models/user_tokens.h"

namespace seqrec::models {

/// HSTU with PerSRec's user tokens.
class PersonalizedHstuImpl : public SequenceRecommenderImpl, public UserTokenModel {
 public:
  PersonalizedHstuImpl(const HstuOptions& hstu, const PersonalizedOptions& personalized);
  /// Uncached forward with the segment mask ([B, W, D] at the items; [B, 1, D] with last_only);
  /// with last_only, in eval mode and with a cache installed, the cached predict.
  torch::Tensor encode(const data::SequenceBatch& batch) override;
  torch::Tensor item_embeddings(const torch::Tensor& item_ids) override;  ///< ids V+1..V+K: the tokens
  torch::Tensor all_item_embeddings() override;

  /// Runs the old items and tokens of each row once (plain causal within the prefix) and returns
  /// what the recent rows need from the tokens. Inference only.
  TokenCache compress(const data::SequenceBatch& batch) override;
  /// The newest position's state [B, 1, D] from the recent items alone and the batch users' cache
  /// rows. Inference only.
  torch::Tensor predict(const data::SequenceBatch& batch, const TokenCache& cache);
  /// Installs (or with nullptr removes) the cache encode uses for last-only inference.
  void set_token_cache(std::shared_ptr<const TokenCache> cache) override { token_cache_ = std::move(cache); }

  const HstuOptions& options() const { return hstu_; }
  const PersonalizedOptions& personalized() const override { return personalized_; }

  using Part = InsertedPart;
  using Layout = InsertedLayout;
  /// insert_user_tokens with this model's options (timestamps when the time bias is on).
  Layout layout(const data::SequenceBatch& batch, Part part) const;

 private:
  torch::Tensor embed(const data::SequenceBatch& batch, const Layout& layout);  // [T, D]
  bool packed(const torch::Tensor& x) const;  // the packed CPU kernels apply (else the dense paths)
  // Dense equivalents of compress (keys and values only) and predict: other devices, and several
  // insertions with the position bias (the packed kernel sees the tokens as leading rows).
  // x: the layout's embedded rows [T, D] (embed()).
  TokenCache compress_dense(const Layout& layout, const torch::Tensor& x);
  torch::Tensor predict_dense(const TokenCache& cache, const Layout& layout, const torch::Tensor& x);
  RelativeBiasImpl::Indices bias_indices(const Layout& layout) const;  // the time buckets, once per batch
  nn::RelativeBiasTables bias_tables(size_t block, const RelativeBiasImpl::Indices& indices);
  HstuOptions hstu_;  // the blocks' options: max_seq_len = P + K + R
  PersonalizedOptions personalized_;
  std::shared_ptr<const TokenCache> token_cache_;
  torch::nn::Embedding item_embedding{nullptr};
  torch::nn::Embedding position_embedding{nullptr};
  torch::nn::ModuleList blocks{nullptr};
  torch::nn::ModuleList relative_biases{nullptr};
  torch::Tensor user_tokens;  // [1, K, D]
};

}  // namespace seqrec::models
