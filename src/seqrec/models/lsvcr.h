// LSVCR's sequential model RecCom (systems.md §4.1): two histories per user (videos watched,
// comments engaged with), each encoded by its own causal post-LN transformer, mixed by one cross
// block each way, fused 128 -> 64; a user vector for next-video recommendation (additive attention
// pooling over the video states) and one for comment ranking (multi-head attention with the
// current video as query over the comment states); scores are cosine / temperature.
//
// Inputs per history position t:  x_t = LN(g * E_id[video_t] + T_t + P_t), then dropout, where
//   - a video position's text is T = text_fusion([A(mlp(title)), A(mlp(hot comment))]);
//   - a comment position's text is T = text_fusion([A(mlp(its video's title)), A(mlp(comment))]) and
//     its ID term is the ID embedding of the comment's video (comments have no ID embedding);
//   - mlp = llm_emb_mlp (D_text -> text_hidden_dim -> GELU -> text_dim) over the precomputed LLM text
//     embeddings, A = llm_adapter (text_dim -> D), text_fusion (2D -> D);
//   - g = id_gate (a learnable scalar, initialised 1.0); without ID embeddings (the alignment stage,
//     use_id_embeddings false) the term is absent.
// Candidates: a video is g * E_id + T (as its input, without position); a comment is its T.
//
// Histories are right-padded (real events first, oldest first, id 0 = padding); positions default to
// 0..L-1, the alignment stage passes sorted random positions (LsvcrBatch). A row with an empty
// history attends to its first (padding) slot so that nothing is undefined.
//
// Not a SequenceRecommender: LSVCR has two tasks and two histories; train/lsvcr_trainer drives it.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/types.h>

#include <cstdint>
#include <vector>

namespace seqrec::config {
class ConfigNode;
}

namespace seqrec::models {

/// RecCom architecture options (the `model:` subtree with name: lsvcr).
struct LsvcrOptions {
  int64_t num_videos = 0;          ///< V (from the data)
  int64_t num_comments = 0;        ///< C (from the data)
  int64_t text_input_dim = 0;      ///< D_text of the precomputed text embeddings (from the files)
  int64_t max_history = 50;        ///< events kept per history (the newest)
  int64_t max_position = 50;       ///< rows of each position table (>= max_history)
  int64_t hidden_dim = 64;         ///< D
  int64_t num_heads = 2;           ///< attention heads (divide hidden_dim)
  int64_t num_layers = 2;          ///< transformer layers per history
  int64_t ffn_dim = 256;           ///< FFN inner size
  double dropout = 0.3;            ///< input, attention and FFN dropout
  int64_t text_hidden_dim = 1024;  ///< llm_emb_mlp hidden size
  int64_t text_dim = 256;          ///< llm_emb_mlp output size
  double temperature = 0.07;       ///< scores are cosine / temperature
  bool use_id_embeddings = true;   ///< add g * E_id (stage 2); false in the alignment stage
  bool use_comment_history = true; ///< false: the video-only ablation (no comment encoder or mix;
                                   ///< comment ranking attends over the video states)
};

/// Reads and validates LsvcrOptions (num_videos / num_comments / text_input_dim are set by the caller).
LsvcrOptions read_lsvcr_options(config::ConfigNode node);

/// Per-item data the model reads but does not learn: the precomputed text embeddings and the
/// video <-> comment links (rows 0 are padding: zero embeddings, links 0).
struct LsvcrTextTables {
  torch::Tensor video_title;        ///< [V+1, D_text] float
  torch::Tensor comment_text;       ///< [C+1, D_text] float
  torch::Tensor comment_video;      ///< [C+1] int64, the video of each comment
  torch::Tensor video_hot_comment;  ///< [V+1] int64, 0 = none
};

/// One batch of samples.
struct LsvcrBatch {
  torch::Tensor video_ids;          ///< [B, Lv] int64, right-padded
  torch::Tensor comment_ids;        ///< [B, Lc] int64, right-padded
  torch::Tensor video_positions;    ///< [B, Lv] int64 or undefined (0..Lv-1)
  torch::Tensor comment_positions;  ///< [B, Lc] int64 or undefined (0..Lc-1)
};

/// Encoded histories.
struct LsvcrStates {
  torch::Tensor video;          ///< [B, Lv, D] fused video-history states
  torch::Tensor video_keys;     ///< [B, Lv] bool, positions a pooling may attend to
  torch::Tensor comment;        ///< [B, Lc, D] fused comment-history states (undefined in the video-only ablation)
  torch::Tensor comment_keys;   ///< [B, Lc] bool
};

/// Causal (or cross) multi-head attention over batch-first tensors with an explicit mask.
class LsvcrAttentionImpl : public torch::nn::Module {
 public:
  LsvcrAttentionImpl(int64_t dim, int64_t num_heads, double dropout);
  /// q [B, Q, D], kv [B, K, D], allowed [B, Q, K] bool (true = may attend; every row needs one) -> [B, Q, D].
  torch::Tensor forward(const torch::Tensor& q, const torch::Tensor& kv, const torch::Tensor& allowed);

 private:
  int64_t num_heads_;
  double dropout_;
  torch::nn::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, out_proj{nullptr};
};
TORCH_MODULE(LsvcrAttention);

/// Post-LN transformer layer: x = LN(x + attn(x, kv)); x = LN(x + FFN(x)), FFN with GELU.
class LsvcrLayerImpl : public torch::nn::Module {
 public:
  explicit LsvcrLayerImpl(const LsvcrOptions& options);
  /// x [B, Q, D] attends to kv [B, K, D] where allowed [B, Q, K] -> [B, Q, D].
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& kv, const torch::Tensor& allowed);

 private:
  double dropout_;
  LsvcrAttention attention{nullptr};
  torch::nn::LayerNorm attention_norm{nullptr};
  torch::nn::Linear ffn_in{nullptr}, ffn_out{nullptr};
  torch::nn::LayerNorm ffn_norm{nullptr};
};
TORCH_MODULE(LsvcrLayer);

/// One history as the model reads it: `count` ids at `ids`, oldest first.
struct LsvcrHistoryView {
  const int64_t* ids = nullptr;
  int64_t count = 0;
};
/// Right-padded rows of the newest `max_history` ids of each history -> [B, W] int64, W the longest
/// row kept (at least 1: an empty history is one padding slot).
torch::Tensor lsvcr_history_rows(const std::vector<LsvcrHistoryView>& histories, int64_t max_history);

/// The masks of a right-padded history of ids [B, L]: which keys may be attended to (real events,
/// plus slot 0 of an empty row) -> [B, L] bool.
torch::Tensor lsvcr_key_mask(const torch::Tensor& ids);
/// Causal self-attention mask from a key mask [B, L] -> [B, L, L] (query i sees keys j <= i).
torch::Tensor lsvcr_causal_mask(const torch::Tensor& keys);

/// RecCom.
class LsvcrImpl : public torch::nn::Module {
 public:
  explicit LsvcrImpl(const LsvcrOptions& options);
  const LsvcrOptions& options() const { return options_; }

  /// Installs the text tables (moved to the module's device by the caller; not saved).
  void set_text_tables(LsvcrTextTables tables) { tables_ = std::move(tables); }
  const LsvcrTextTables& text_tables() const { return tables_; }

  /// Projected text of videos [...] -> [..., D] (the 2 x 64 -> 64 fusion of title and hot comment).
  torch::Tensor video_text(const torch::Tensor& video_ids);
  /// Projected text of comments [...] -> [..., D] (its video's title and the comment).
  torch::Tensor comment_text(const torch::Tensor& comment_ids);
  /// The ID term g * E_id[ids] [..., D] (zeros without ID embeddings).
  torch::Tensor id_term(const torch::Tensor& video_ids);
  /// Candidate embedding of videos: g * E_id + text [..., D].
  torch::Tensor video_embedding(const torch::Tensor& video_ids);
  /// The ID embeddings E_id[ids] [..., D] alone (the ID-text contrastive loss).
  torch::Tensor video_id_embedding(const torch::Tensor& video_ids);

  /// Encodes both histories (the mix blocks and the fusion included).
  LsvcrStates encode(const LsvcrBatch& batch);
  /// Next-video user vector: additive attention pooling over the video states -> [B, D].
  torch::Tensor video_user(const LsvcrStates& states);
  /// Comment-ranking user vector: attention with the current video [B] as query -> [B, D].
  torch::Tensor comment_user(const LsvcrStates& states, const torch::Tensor& current_video);
  /// cosine(user [B, D], candidates [B, N, D] or [N, D]) / temperature -> [B, N].
  torch::Tensor score(const torch::Tensor& user, const torch::Tensor& candidates) const;

 private:
  torch::Tensor embed_history(const torch::Tensor& id_term, const torch::Tensor& text, const torch::Tensor& positions,
                              torch::nn::Embedding& table, torch::nn::LayerNorm& norm);
  torch::Tensor run_encoder(torch::nn::ModuleList& layers, torch::Tensor x, const torch::Tensor& keys);
  torch::Tensor project_texts(const torch::Tensor& first, const torch::Tensor& second);

  LsvcrOptions options_;
  LsvcrTextTables tables_;
  torch::nn::Embedding id_embedding{nullptr};
  torch::Tensor id_gate;
  torch::nn::Sequential llm_emb_mlp{nullptr};
  torch::nn::Linear llm_adapter{nullptr};
  torch::nn::Linear text_fusion{nullptr};
  torch::nn::Embedding video_position{nullptr}, comment_position{nullptr};
  torch::nn::LayerNorm video_input_norm{nullptr}, comment_input_norm{nullptr};
  torch::nn::ModuleList video_encoder{nullptr}, comment_encoder{nullptr};
  LsvcrLayer video_mix{nullptr}, comment_mix{nullptr};
  torch::nn::Linear video_fusion{nullptr}, comment_fusion{nullptr};
  torch::nn::Linear pooling_proj{nullptr}, pooling_score{nullptr};
  LsvcrAttention comment_attention{nullptr};
};
TORCH_MODULE(Lsvcr);

}  // namespace seqrec::models
