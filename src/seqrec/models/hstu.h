// HSTU (Zhai et al. 2024, "Actions Speak Louder than Words"), as coded in generative-recommenders
// (systems.md §2.3): pointwise SiLU attention normalised by the padded length N, relative position
// and time-bucket biases, U-gating, l2-normalised output. HLLM's IDNet variant (§1.7: no relative
// bias, no sqrt(d) input scaling or input dropout, learnable absolute positions) is a
// configuration of the same code (`variant: hllm`).
#pragma once

#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>

#include <functional>
#include <string>

#include "seqrec/models/recommender.h"
#include "seqrec/nn/attention.h"

namespace seqrec::config {
class ConfigNode;
}

namespace seqrec::models {

/// `model.variant`: GR's HSTU or HLLM's IDNet configuration of it (see the top of this file).
enum class HstuVariant { kGr, kHllm };

/// HSTU options (the `model:` subtree).
struct HstuOptions {
  int64_t num_items = 0;            ///< V (from the data)
  int64_t max_seq_len = 200;        ///< L (from data.max_seq_len)
  int64_t hidden_dim = 50;          ///< D (item embedding and model width)
  int64_t num_blocks = 2;           ///< HSTU layers
  int64_t num_heads = 1;            ///< H
  int64_t attn_dim = 0;             ///< dqk per head (0 = D / H)
  int64_t linear_dim = 0;           ///< dv per head (0 = D / H)
  double dropout = 0.2;             ///< input dropout and the dropout before W_o
  HstuVariant variant = HstuVariant::kGr;  ///< gr | hllm
  bool position_bias = true;        ///< relative position bias rab^p (gr)
  bool time_bias = true;            ///< time-bucket bias rab^t (gr)
  int64_t output_slots = 11;        ///< GR gr_output_length + 1: N = L + output_slots
  bool jagged_attention = true;     ///< attention over real positions only (same result)
  double attention_norm_eps = 1e-6; ///< epsilon of the LayerNorm over A(X)V(X) before the U gate (GR's 1e-6)
};

/// Reads and validates HstuOptions from a `model:` node.
HstuOptions read_hstu_options(config::ConfigNode node, const ModelContext& context);

/// GR time bucket of a gap in seconds: clamp(floor(ln(max(|dt|, 1)) / 0.301), 0, 128).
torch::Tensor time_buckets(const torch::Tensor& dt);

/// The same for every pair of a batch: [B, W, W] uint8 with entry (b, i, j) = bucket(next_ts[b, i]
/// - ts[b, j]) (one pass, equal to time_buckets(next_ts.unsqueeze(2) - ts.unsqueeze(1))).
torch::Tensor time_bucket_matrix(const torch::Tensor& ts, const torch::Tensor& next_ts);

/// Relative attention bias of one layer (systems.md §2.3), shared by all heads.
class RelativeBiasImpl : public torch::nn::Module {
 public:
  /// n: the padded length N; position / time: which parts are on.
  RelativeBiasImpl(int64_t n, bool position, bool time);
  /// Table indices of a batch, the same for every layer (compute once per forward): position
  /// [W, W] = N-1 + j - i, time [B, W, W] = bucket(ts_{i+1} - ts_j); a part is undefined when off.
  /// next_ts: [B, W] timestamp of the item after each position; ts: [B, W] timestamps.
  struct Indices {
    torch::Tensor position;  ///< [W, W] int64
    torch::Tensor time;      ///< [B, W, W] uint8 (buckets are 0..128)
  };
  Indices indices(const torch::Tensor& ts, const torch::Tensor& next_ts, int64_t width) const;
  /// This layer's bias for precomputed indices: [B or 1, W, W] (rab^p + rab^t).
  torch::Tensor forward(const Indices& indices);
  /// The same bias as tables for the jagged kernel (nothing [B, W, W] is built).
  nn::RelativeBiasTables tables(const Indices& indices) const;

 private:
  int64_t n_;
  torch::Tensor position_weights;   // [2N-1] ~ N(0, 0.02)
  torch::Tensor time_weights;       // [129] ~ N(0, 0.02)
};
TORCH_MODULE(RelativeBias);

/// What HstuBlock::forward_packed can do besides plain causal rows (PerSRec).
struct HstuPackedExtras {
  torch::Tensor segments;       ///< [T] int32 segment codes (nn::packed_pointwise_attention), or undefined
  /// Keys and values [B, H, K, d] that every sequence attends to before its own rows, as K leading
  /// rows (PerSRec's cached tokens): cu_seqlens and width then count the K rows too, the bias
  /// tables' time buckets cover them, and x holds the sequences' own rows only.
  torch::Tensor prefix_keys, prefix_values;
  torch::Tensor* keys_out = nullptr;    ///< receives k [T, H, dqk] of x's rows
  torch::Tensor* values_out = nullptr;  ///< receives v [T, H, dv]
};

/// One HSTU layer.
class HstuBlockImpl : public torch::nn::Module {
 public:
  explicit HstuBlockImpl(const HstuOptions& options);
  /// x [B, W, D]; bias [B, W, W] (or [1, W, W]) or undefined; lengths [B] real items (left padding);
  /// keep [B, W, 1] zeroes the padding rows of the output (or undefined).
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& bias, const torch::Tensor& lengths,
                        const torch::Tensor& keep = {});
  /// The same with the bias as tables (jagged kernel only).
  torch::Tensor forward(const torch::Tensor& x, const nn::RelativeBiasTables& bias, const torch::Tensor& lengths,
                        const torch::Tensor& keep);
  /// Training over packed rows: x [T, D], sequence b's rows cu_seqlens[b] .. cu_seqlens[b + 1] - 1;
  /// the bias tables' time buckets in the padded batch's coordinates [B, width, width] -> [T, D].
  /// extras: PerSRec's segments, cached prefix rows and key/value capture (HstuPackedExtras).
  torch::Tensor forward_packed(const torch::Tensor& x, const nn::RelativeBiasTables& bias,
                               const torch::Tensor& cu_seqlens, int64_t width, const HstuPackedExtras& extras = {});
  /// The layer around a caller's attention: attend(q [B, H, Q, dqk], k [B, H, W, dqk], v [B, H, W, dv])
  /// -> [B, H, Q, dv], Q = W, or 1 (the newest position) with last_only. x [B, W, D]; keep [B, W, 1]
  /// or undefined. (PerSRec's cached inference attends to cached keys and values this way.)
  using Attend = std::function<torch::Tensor(const torch::Tensor&, const torch::Tensor&, const torch::Tensor&)>;
  torch::Tensor forward_with(const torch::Tensor& x, const torch::Tensor& keep, const Attend& attend,
                             bool last_only = false) {
    return run(x, keep, attend, last_only);
  }
  /// N, the length HSTU's attention divides by.
  double attention_norm() const { return static_cast<double>(options_.max_seq_len + options_.output_slots); }
  /// Inference for the newest position only (attending to all): bias_row [B, W] is the bias's last
  /// row (or undefined) -> [B, 1, D].
  torch::Tensor forward_last(const torch::Tensor& x, const torch::Tensor& bias_row, const torch::Tensor& lengths,
                             const torch::Tensor& keep);

 private:
  torch::Tensor run(const torch::Tensor& x, const torch::Tensor& keep, const Attend& attend, bool last_only = false);
  HstuOptions options_;
  torch::nn::Linear uvqk{nullptr};     // D -> H*(2*dv + 2*dqk), no bias
  torch::nn::Linear output{nullptr};   // H*dv -> D, with bias
};
TORCH_MODULE(HstuBlock);

/// Truncated normal on [-2 std, 2 std] by redrawing the outliers (torch.nn.init.trunc_normal_).
void trunc_normal(torch::Tensor t, double std);

/// The tables and layers of an HSTU encoder, registered on `owner` under their checkpoint names
/// (item_embedding, position_embedding [max_seq_len + output_slots], blocks, relative_biases) and
/// drawn as GR (variant gr) or HLLM's IDNet (hllm) draws them.
struct HstuModules {
  torch::nn::Embedding item_embedding{nullptr};
  torch::nn::Embedding position_embedding{nullptr};
  torch::nn::ModuleList blocks{nullptr};
  torch::nn::ModuleList relative_biases{nullptr};  ///< null without a relative bias
};
HstuModules register_hstu_modules(torch::nn::Module& owner, const HstuOptions& options);

/// The HSTU encoder with an item embedding table shared for input and scoring.
class HstuImpl : public SequenceRecommenderImpl {
 public:
  explicit HstuImpl(const HstuOptions& options);
  torch::Tensor encode(const data::SequenceBatch& batch) override;
  torch::Tensor item_embeddings(const torch::Tensor& item_ids) override;
  torch::Tensor all_item_embeddings() override;
  const HstuOptions& options() const { return options_; }

 private:
  /// Training-time encode on the real positions only (CPU float32, jagged attention).
  torch::Tensor encode_packed(const data::SequenceBatch& batch, const RelativeBiasImpl::Indices& bias_indices);
  HstuOptions options_;
  torch::nn::Embedding item_embedding{nullptr};
  torch::nn::Embedding position_embedding{nullptr};
  torch::nn::ModuleList blocks{nullptr};
  torch::nn::ModuleList relative_biases{nullptr};  // one per block (gr)
};

/// Timestamps of the item after each position, [B, W]: the batch's per-position targets when
/// training, otherwise the next column and, for the last column, the target (eval). Without
/// timestamps, positions stand in for time (equal gaps).
torch::Tensor next_timestamps(const data::SequenceBatch& batch, torch::Tensor* ts);

}  // namespace seqrec::models
