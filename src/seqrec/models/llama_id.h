// LLaMA-ID: a stack of LLaMA-2 decoder blocks (nn::LlamaBlock: RMSNorm, RoPE, SwiGLU, causal GQA
// attention) over item-ID embeddings, with the SASRec head (scores = dot products with the item
// table). systems.md §5 (Toy-RecLM's LLaMA2_SASRec) and §1.7 (HLLM's "SASRec-1B": item dim ->
// Linear -> model width).
#pragma once

#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>

#include "seqrec/models/recommender.h"
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
};

LlamaIdOptions read_llama_id_options(config::ConfigNode node, const ModelContext& context);

/// LLaMA-ID recommender.
class LlamaIdImpl : public SequenceRecommenderImpl {
 public:
  explicit LlamaIdImpl(const LlamaIdOptions& options);
  torch::Tensor encode(const data::SequenceBatch& batch) override;
  torch::Tensor item_embeddings(const torch::Tensor& item_ids) override;
  torch::Tensor all_item_embeddings() override;

 private:
  torch::Tensor project(const torch::Tensor& e);  // item_dim -> hidden_dim (+ l2)
  LlamaIdOptions options_;
  torch::nn::Embedding item_embedding{nullptr};
  torch::nn::Linear item_proj{nullptr};           // only when item_dim != hidden_dim
  torch::nn::ModuleList blocks{nullptr};
  nn::RmsNorm norm{nullptr};
  torch::Tensor inv_freq_;
};

}  // namespace seqrec::models
