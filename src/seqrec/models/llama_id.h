// LLaMA-ID: a stack of LLaMA-2 decoder blocks (nn::LlamaBlock: RMSNorm, RoPE, SwiGLU, causal GQA
// attention) over item-ID embeddings, with the SASRec head (scores = dot products with the item
// table). systems.md §5 (Toy-RecLM's LLaMA2_SASRec) and §1.7 (HLLM's "SASRec-1B": item dim ->
// Linear -> model width).
#pragma once

#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>

#include <memory>
#include <vector>

#include "seqrec/models/recommender.h"
#include "seqrec/models/user_tokens.h"
#include "seqrec/nn/llama_block.h"

namespace seqrec::config {
class ConfigNode;
}

namespace seqrec::models {

/// LLaMA-ID options (the `model:` subtree).
struct LlamaIdOptions {
  int64_t num_items = 0;          ///< V (from the data)
  int64_t max_seq_len = 200;      ///< L (from data.max_seq_len)
  int64_t item_dim = 64;          ///< item embedding size
  int64_t hidden_dim = 64;        ///< model width (a Linear maps item_dim to it when they differ)
  int64_t num_blocks = 2;
  int64_t num_heads = 2;
  int64_t num_kv_heads = 0;       ///< 0 = num_heads (no grouping)
  int64_t ffn_dim = 0;            ///< SwiGLU inner size (0 = LLaMA's 8/3 * hidden rounded to 8)
  double dropout = 0.1;
  double rms_eps = 1e-6;
  double rope_theta = 10000;
  bool l2_norm_output = true;     ///< cosine scoring (pairs with sampled softmax + temperature)
  bool personalized = false;      ///< PerSRec's user tokens (`personalized:`, as on hstu and hllm)
  PersonalizedOptions user_tokens;
};

LlamaIdOptions read_llama_id_options(config::ConfigNode node, const ModelContext& context);

/// LLaMA-ID recommender. With `personalized:` PerSRec's user tokens enter the decoder stack as in
/// HLLM's user LLM (user_tokens.h): the segment mask as an additive bias, RoPE over the PerSRec
/// position ids, and per-layer token keys/values (after RoPE) as the cache.
class LlamaIdImpl : public SequenceRecommenderImpl, public UserTokenModel {
 public:
  explicit LlamaIdImpl(const LlamaIdOptions& options);
  torch::Tensor encode(const data::SequenceBatch& batch) override;
  /// Item ids 1..V; with user tokens also V+1..V+K (the tokens, the last old item's target).
  torch::Tensor item_embeddings(const torch::Tensor& item_ids) override;
  torch::Tensor all_item_embeddings() override;

  /// PerSRec (personalized): each layer's keys and values of the tokens after each row's old items.
  TokenCache compress(const data::SequenceBatch& batch) override;
  /// The newest position's state [B, 1, D] from the recent items and the users' cache rows.
  torch::Tensor predict(const data::SequenceBatch& batch, const TokenCache& cache);
  void set_token_cache(std::shared_ptr<const TokenCache> cache) override { token_cache_ = std::move(cache); }
  const PersonalizedOptions& personalized() const override { return options_.user_tokens; }
  /// The decoder blocks (ZeRO-3 shards their parameters).
  std::vector<std::shared_ptr<torch::nn::Module>> shardable_blocks() override;
  torch::Tensor user_tokens;  ///< [1, K, hidden_dim] (personalized only)

 private:
  torch::Tensor project(const torch::Tensor& e);  // item_dim -> hidden_dim (+ l2)
  torch::Tensor inputs(const torch::Tensor& ids);  // [B, W] -> [B, W, hidden_dim] (dropout in training)
  // The blocks and the final norm over x [B, T, D] at positions [B, T]; caches filled when given.
  torch::Tensor run(torch::Tensor x, const torch::Tensor& positions, const torch::Tensor& bias,
                    std::vector<nn::KvCache>* caches);
  torch::Tensor output(const torch::Tensor& x);   // l2 when l2_norm_output
  torch::Tensor encode_personalized(const data::SequenceBatch& batch);
  std::shared_ptr<const TokenCache> token_cache_;
  LlamaIdOptions options_;
  torch::nn::Embedding item_embedding{nullptr};
  torch::nn::Linear item_proj{nullptr};           // only when item_dim != hidden_dim
  torch::nn::ModuleList blocks{nullptr};
  nn::RmsNorm norm{nullptr};
  torch::Tensor inv_freq_;
};

}  // namespace seqrec::models
