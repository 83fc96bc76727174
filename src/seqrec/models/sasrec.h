// SASRec (Kang & McAuley 2018) in its two published shapes:
//  - variant "gr": the SASRec paper / generative-recommenders form (pre-LN queries:
//    Q = LN(x); a = MHA(Q, x, x) + Q; x = FFN(LN(a)) + LN(a); final LN), ReLU FFN, inputs scaled by
//    sqrt(D); GR additionally l2-normalises the output (`l2_norm_output: true`, systems.md §2.3 end);
//  - variant "post_ln": the RecBole / HLLM IDNet form (x = Dropout(LN(E + P)); post-LN blocks,
//    GELU FFN, init N(0, 0.02)), systems.md §1.7.
#pragma once

#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>

#include <functional>
#include <string>

#include "seqrec/models/recommender.h"

namespace seqrec::config {
class ConfigNode;
}

namespace seqrec::models {

/// `model.variant`: which published SASRec shape (see the top of this file).
enum class SasRecVariant { kGr, kPostLn };

/// SASRec architecture options (the `model:` subtree).
struct SasRecOptions {
  int64_t num_items = 0;           ///< V (from the data)
  int64_t max_seq_len = 200;       ///< L (from data.max_seq_len)
  int64_t hidden_dim = 50;         ///< D
  int64_t num_blocks = 2;          ///< transformer blocks
  int64_t num_heads = 1;           ///< must divide hidden_dim
  int64_t ffn_dim = 0;             ///< FFN inner size (0 = hidden_dim)
  double dropout = 0.2;            ///< embedding, attention and FFN dropout
  SasRecVariant variant = SasRecVariant::kGr;  ///< gr | post_ln
  bool l2_norm_output = false;     ///< l2-normalise hidden states and item embeddings (GR)
  double layer_norm_eps = 1e-8;    ///< LayerNorm epsilon (RecBole: 1e-12)
  bool jagged_attention = true;    ///< attention over real positions only (same result, tested;
                                   ///< false: the padded ATen computation)
  bool attention_out_proj = true;  ///< output projection after attention (PyTorch MHA, RecBole);
                                   ///< the original TF SASRec code has none
};

/// Reads and validates SasRecOptions from a `model:` node (num_items / max_seq_len from context).
SasRecOptions read_sasrec_options(config::ConfigNode node, const ModelContext& context);

/// One SASRec block.
class SasRecBlockImpl : public torch::nn::Module {
 public:
  explicit SasRecBlockImpl(const SasRecOptions& options);
  /// x [B, W, D], lengths [B] real items per row (left padding), keep [B, W, 1] -> [B, W, D]; with
  /// last_only (inference) only the newest position is computed (it still attends to all): [B, 1, D].
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& lengths, const torch::Tensor& keep,
                        bool last_only = false);
  /// The same over packed rows: x [T, D], the rows of sequence b being cu_seqlens[b] ..
  /// cu_seqlens[b + 1] - 1 ([B + 1] int64) -> [T, D]. No padding is computed anywhere.
  torch::Tensor forward_packed(const torch::Tensor& x, const torch::Tensor& cu_seqlens);

 private:
  /// q_src [B, Q, D] (Q = W, or 1 for the newest position only), kv_src [B, W, D] -> [B, Q, D];
  /// packed (cu_seqlens defined): q_src, kv_src [T, D] -> [T, D].
  torch::Tensor attend(const torch::Tensor& q_src, const torch::Tensor& kv_src, const torch::Tensor& lengths,
                       const torch::Tensor& cu_seqlens = {});
  /// The block's layers after the input x [.., D] (rows; Q rows of queries), attention by attend_fn.
  torch::Tensor layers(const torch::Tensor& x, const torch::Tensor& keep,
                       const std::function<torch::Tensor(const torch::Tensor&)>& attend_fn);
  torch::Tensor drop(const torch::Tensor& x);
  SasRecOptions options_;
  torch::nn::LayerNorm attn_layer_norm{nullptr};
  torch::nn::Linear q_proj{nullptr};
  torch::nn::Linear kv_proj{nullptr};
  torch::nn::Linear out_proj{nullptr};
  torch::nn::LayerNorm ffn_layer_norm{nullptr};
  torch::nn::Linear ffn_in{nullptr};
  torch::nn::Linear ffn_out{nullptr};
};
TORCH_MODULE(SasRecBlock);

/// SASRec.
class SasRecImpl : public SequenceRecommenderImpl {
 public:
  explicit SasRecImpl(const SasRecOptions& options);
  torch::Tensor encode(const data::SequenceBatch& batch) override;
  torch::Tensor item_embeddings(const torch::Tensor& item_ids) override;
  torch::Tensor all_item_embeddings() override;
  const SasRecOptions& options() const { return options_; }

 private:
  void reset_parameters();
  /// Training-time encode on the real positions only (CPU float32, jagged attention).
  torch::Tensor encode_packed(const data::SequenceBatch& batch);
  SasRecOptions options_;
  torch::nn::Embedding item_embedding{nullptr};
  torch::nn::Embedding position_embedding{nullptr};
  torch::nn::LayerNorm emb_layer_norm{nullptr};   // post_ln only
  torch::nn::LayerNorm last_layer_norm{nullptr};  // gr only
  torch::nn::ModuleList blocks{nullptr};
};

}  // namespace seqrec::models
