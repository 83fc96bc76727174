// HSTU: GR's research implementation, one code path for the GR and HLLM-IDNet variants.
#include "seqrec/models/hstu.h"

#include <ATen/Parallel.h>
#include <torch/nn/functional/normalization.h>
#include <torch/nn/init.h>

#include <algorithm>
#include <cmath>

#include "seqrec/common/error.h"
#include "seqrec/config/config_node.h"
#include "seqrec/config/validate.h"
#include "seqrec/nn/attention.h"
#include "seqrec/nn/dropout.h"
#include "seqrec/nn/fused_linear.h"
#include "seqrec/nn/layer_norm.h"

namespace seqrec::models {

namespace F = torch::nn::functional;

HstuOptions read_hstu_options(config::ConfigNode node, const ModelContext& context) {
  HstuOptions o;
  o.num_items = context.num_items;
  o.max_seq_len = context.max_seq_len;
  const std::string p = node.path();
  o.variant = config::parse_one_of<HstuVariant>(node.get<std::string>("variant", "gr"),
                                                {{HstuVariant::kGr, "gr"}, {HstuVariant::kHllm, "hllm"}},
                                                p + ".variant");
  const bool gr = o.variant == HstuVariant::kGr;
  o.hidden_dim = node.get<int64_t>("hidden_dim", o.hidden_dim);
  o.num_blocks = node.get<int64_t>("num_blocks", o.num_blocks);
  o.num_heads = node.get<int64_t>("num_heads", o.num_heads);
  if (o.hidden_dim < 1) throw ConfigError(p + ".hidden_dim", "must be >= 1");
  if (o.num_blocks < 1) throw ConfigError(p + ".num_blocks", "must be >= 1");
  if (o.num_heads < 1) throw ConfigError(p + ".num_heads", "must be >= 1");
  const int64_t per_head = o.hidden_dim / o.num_heads;
  o.attn_dim = node.get<int64_t>("attn_dim", per_head);
  o.linear_dim = node.get<int64_t>("linear_dim", per_head);
  o.dropout = node.get<double>("dropout", o.dropout);
  o.position_bias = node.get<bool>("position_bias", gr);
  o.time_bias = node.get<bool>("time_bias", gr);
  o.output_slots = node.get<int64_t>("output_slots", o.output_slots);
  o.jagged_attention = node.get<bool>("jagged_attention", o.jagged_attention);
  o.attention_norm_eps = node.get<double>("attention_norm_eps", o.attention_norm_eps);
  if (o.attn_dim < 1) throw ConfigError(p + ".attn_dim", "must be >= 1");
  if (o.linear_dim < 1) throw ConfigError(p + ".linear_dim", "must be >= 1");
  if (o.dropout < 0 || o.dropout >= 1) throw ConfigError(p + ".dropout", "must be in [0, 1)");
  if (o.output_slots < 0) throw ConfigError(p + ".output_slots", "must be >= 0");
  if (!(o.attention_norm_eps > 0 && o.attention_norm_eps < 1))
    throw ConfigError(p + ".attention_norm_eps", "must be in (0, 1)");
  if (o.num_items < 1) throw ConfigError(p, "the data has no items");
  return o;
}

torch::Tensor time_buckets(const torch::Tensor& dt) {
  auto gap = dt.abs().clamp_min(1).to(torch::kDouble);                         // |dt| >= 1
  return (gap.log() / 0.301).floor().clamp(0, 128).to(torch::kLong);
}

namespace {

// The bucket of one gap, computed exactly as time_buckets does (double log), with the gaps below
// 2^16 (every gap of sequences without timestamps, most gaps in seconds) from a table.
class TimeBucketer {
 public:
  TimeBucketer() {
    for (int64_t g = 0; g < kTable; ++g) table_[g] = exact(std::max<int64_t>(g, 1));
  }
  uint8_t operator()(int64_t dt) const {
    const int64_t g = dt < 0 ? -dt : dt;
    return g < kTable ? table_[g] : exact(g);
  }

 private:
  static constexpr int64_t kTable = 1 << 16;
  static uint8_t exact(int64_t g) {
    const double b = std::floor(std::log(static_cast<double>(g)) / 0.301);
    return static_cast<uint8_t>(std::min(128.0, std::max(0.0, b)));
  }
  uint8_t table_[kTable];
};

}  // namespace

torch::Tensor time_bucket_matrix(const torch::Tensor& ts_in, const torch::Tensor& next_in) {
  static const TimeBucketer bucket;
  auto ts = ts_in.to(torch::kCPU, torch::kLong).contiguous(), next = next_in.to(torch::kCPU, torch::kLong).contiguous();
  const int64_t b = ts.size(0), w = ts.size(1);
  auto out = torch::empty({b, w, w}, torch::kByte);                            // [B, W, W]
  const int64_t *tp = ts.data_ptr<int64_t>(), *np = next.data_ptr<int64_t>();
  uint8_t* op = out.data_ptr<uint8_t>();
  at::parallel_for(0, b * w, 64, [&](int64_t begin, int64_t end) {
    for (int64_t bi = begin; bi < end; ++bi) {  // row i of sequence b: bucket(next_i - ts_j)
      const int64_t row = bi / w, n = np[bi];
      const int64_t* t = tp + row * w;
      uint8_t* o = op + bi * w;
      for (int64_t j = 0; j < w; ++j) o[j] = bucket(n - t[j]);
    }
  });
  return out;
}

RelativeBiasImpl::RelativeBiasImpl(int64_t n, bool position, bool time) : n_(n) {
  if (position) position_weights = register_parameter("position_weights", torch::randn({2 * n - 1}) * 0.02);
  if (time) time_weights = register_parameter("time_weights", torch::randn({129}) * 0.02);
}

RelativeBiasImpl::Indices RelativeBiasImpl::indices(const torch::Tensor& ts, const torch::Tensor& next_ts,
                                                    int64_t width) const {
  Indices out;
  if (position_weights.defined()) {
    auto idx = torch::arange(width, torch::kLong);                             // [W]
    out.position = (n_ - 1) + idx.unsqueeze(0) - idx.unsqueeze(1);            // [W, W]: N-1 + j - i
  }
  if (time_weights.defined()) out.time = time_bucket_matrix(ts, next_ts).to(next_ts.device());  // [B, W, W] uint8
  return out;
}

nn::RelativeBiasTables RelativeBiasImpl::tables(const Indices& indices) const {
  nn::RelativeBiasTables t;
  t.position_weights = position_weights;  // rab^p(i, j) = w_p[N - 1 + j - i]
  t.position_origin = n_ - 1;
  if (time_weights.defined()) {
    t.time_weights = time_weights;
    t.time_buckets = indices.time;
  }
  return t;
}

torch::Tensor RelativeBiasImpl::forward(const Indices& indices) {
  torch::Tensor bias;
  if (indices.position.defined()) {
    const int64_t w = indices.position.size(0);
    bias = position_weights.index_select(0, indices.position.reshape({-1})).view({1, w, w});  // [1, W, W]
  }
  if (indices.time.defined()) {
    auto t = time_weights.index_select(0, indices.time.reshape({-1}).to(torch::kLong))
                 .view(indices.time.sizes());                                  // [B, W, W]
    bias = bias.defined() ? bias + t : t;
  }
  return bias;
}

HstuBlockImpl::HstuBlockImpl(const HstuOptions& o) : options_(o) {
  const int64_t h = o.num_heads;
  uvqk = register_module("uvqk", torch::nn::Linear(
                                     torch::nn::LinearOptions(o.hidden_dim, h * (2 * o.linear_dim + 2 * o.attn_dim)).bias(false)));
  output = register_module("output", torch::nn::Linear(h * o.linear_dim, o.hidden_dim));
  torch::NoGradGuard no_grad;
  uvqk->weight.normal_(0.0, 0.02);
  torch::nn::init::xavier_uniform_(output->weight);
}

torch::Tensor HstuBlockImpl::run(const torch::Tensor& x_all, const torch::Tensor& keep_all, const Attend& attend,
                                 bool last_only) {
  const auto& o = options_;
  const int64_t b = x_all.size(0), w = x_all.size(1), h = o.num_heads, dv = o.linear_dim, dqk = o.attn_dim;
  const int64_t nq = last_only ? 1 : w;  // query positions (the newest alone when last_only)
  const torch::Tensor x = last_only ? x_all.narrow(1, w - 1, 1) : x_all;          // [B, Q, D]
  const torch::Tensor keep = last_only && keep_all.defined() ? keep_all.narrow(1, w - 1, 1) : keep_all;
  auto normed = nn::layer_norm(x_all, {}, {}, 1e-6);                                      // [B, W, D]
  nn::FusedLinearOptions silu;
  silu.activation = nn::cpu::Activation::kSilu;
  auto proj = nn::fused_linear(normed, uvqk->weight, {}, silu);                           // [B, W, H(2dv+2dqk)]
  auto parts = proj.split_with_sizes({h * dv, h * dv, h * dqk, h * dqk}, -1);
  auto u = parts[0].narrow(1, w - nq, nq);                                                // [B, Q, H*dv]
  auto v = parts[1].view({b, w, h, dv}).transpose(1, 2);                                  // [B, H, W, dv]
  auto q = parts[2].narrow(1, w - nq, nq).reshape({b, nq, h, dqk}).transpose(1, 2);      // [B, H, Q, dqk]
  auto k = parts[3].view({b, w, h, dqk}).transpose(1, 2);                                 // [B, H, W, dqk]
  auto av = attend(q, k, v).transpose(1, 2).reshape({b, nq, h * dv});                    // [B, Q, H*dv]
  auto gated = u * nn::layer_norm(av, {}, {}, o.attention_norm_eps);                     // [B, Q, H*dv]
  // (x + W_o Dropout(gated) + b_o) * keep in one pass after the GEMM.
  return nn::fused_linear(nn::fast_dropout(gated, o.dropout, is_training()), output->weight, output->bias, {}, x,
                          keep);                                                          // [B, Q, D]
}

// HSTU eq. (2): pointwise SiLU, no softmax, divided by the padded length N (not the true one).
torch::Tensor HstuBlockImpl::forward(const torch::Tensor& x, const torch::Tensor& bias, const torch::Tensor& lengths,
                                     const torch::Tensor& keep) {
  const double n = static_cast<double>(options_.max_seq_len + options_.output_slots);
  return run(x, keep, [&](const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v) {
    const int64_t b = q.size(0), w = q.size(2);
    const torch::Tensor full_bias = bias.defined() ? bias.expand({b, w, w}) : bias;     // [B, W, W]
    return options_.jagged_attention ? nn::jagged_pointwise_attention(q, k, v, full_bias, lengths, n)
                                     : nn::padded_pointwise_attention(q, k, v, full_bias, lengths, n);
  });
}

torch::Tensor HstuBlockImpl::forward(const torch::Tensor& x, const nn::RelativeBiasTables& bias,
                                     const torch::Tensor& lengths, const torch::Tensor& keep) {
  const double n = static_cast<double>(options_.max_seq_len + options_.output_slots);
  return run(x, keep, [&](const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v) {
    return nn::jagged_pointwise_attention(q, k, v, bias, lengths, n);
  });
}

torch::Tensor HstuBlockImpl::forward_packed(const torch::Tensor& x, const nn::RelativeBiasTables& bias,
                                            const torch::Tensor& cu_seqlens, int64_t width,
                                            const HstuPackedExtras& extras) {
  const auto& o = options_;
  const int64_t t = x.size(0), h = o.num_heads, dv = o.linear_dim, dqk = o.attn_dim;
  const double n = static_cast<double>(o.max_seq_len + o.output_slots);
  auto normed = nn::layer_norm(x, {}, {}, 1e-6);                                          // [T, D]
  nn::FusedLinearOptions silu;
  silu.activation = nn::cpu::Activation::kSilu;
  auto proj = nn::fused_linear(normed, uvqk->weight, {}, silu);                           // [T, H(2dv+2dqk)]
  auto parts = proj.split_with_sizes({h * dv, h * dv, h * dqk, h * dqk}, -1);
  auto q = parts[2].view({t, h, dqk}), k = parts[3].view({t, h, dqk}), v = parts[1].view({t, h, dv});
  if (extras.keys_out) *extras.keys_out = k;
  if (extras.values_out) *extras.values_out = v;
  torch::Tensor av;
  if (!extras.prefix_keys.defined()) {
    av = nn::packed_pointwise_attention(q, k, v, bias, cu_seqlens, width, n, extras.segments);  // [T, H, dv]
  } else {
    // Sequence b's rows in the extended layout: its K prefix rows, then its own rows.
    const int64_t b = extras.prefix_keys.size(0), kp = extras.prefix_keys.size(2);
    auto lengths = cu_seqlens.narrow(0, 1, b) - cu_seqlens.narrow(0, 0, b) - kp;             // own rows [B]
    auto start = cu_seqlens.narrow(0, 0, b);                                                 // [B]
    auto seq = torch::repeat_interleave(torch::arange(b, torch::kLong), lengths);            // [T]
    auto own_cu = torch::cat({torch::zeros({1}, torch::kLong), lengths.cumsum(0)});          // [B + 1]
    auto own = (start.index_select(0, seq) + kp + torch::arange(t, torch::kLong) - own_cu.index_select(0, seq))
                   .to(x.device());                                                           // [T] extended row
    auto pre = (start.unsqueeze(1) + torch::arange(kp, torch::kLong).unsqueeze(0)).reshape({-1}).to(x.device());
    const int64_t te = t + b * kp;
    auto extend = [&](const torch::Tensor& rows, const torch::Tensor& prefix) {             // [Te, H, d]
      auto out = torch::zeros({te, h, rows.size(2)}, rows.options());
      out.index_copy_(0, own, rows);
      if (prefix.defined()) out.index_copy_(0, pre, prefix.transpose(1, 2).reshape({b * kp, h, rows.size(2)}));
      return out;
    };
    av = nn::packed_pointwise_attention(extend(q, {}), extend(k, extras.prefix_keys), extend(v, extras.prefix_values),
                                        bias, cu_seqlens, width, n, extras.segments)
             .index_select(0, own);                                                           // [T, H, dv]
  }
  auto gated = parts[0] * nn::layer_norm(av.reshape({t, h * dv}), {}, {}, o.attention_norm_eps);  // [T, H*dv]
  return nn::fused_linear(nn::fast_dropout(gated, o.dropout, is_training()), output->weight, output->bias, {}, x);
}

torch::Tensor HstuBlockImpl::forward_last(const torch::Tensor& x, const torch::Tensor& bias_row,
                                          const torch::Tensor& lengths, const torch::Tensor& keep) {
  TORCH_CHECK(!is_training(), "forward_last is for inference");
  const double n = static_cast<double>(options_.max_seq_len + options_.output_slots);
  return run(
      x, keep,
      [&](const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v) {
        return nn::last_query_pointwise_attention(q, k, v, bias_row, lengths, n);
      },
      /*last_only=*/true);
}

void trunc_normal(torch::Tensor t, double std) {
  auto x = torch::randn_like(t);
  for (auto out = x.abs().gt(2.0); out.any().item<bool>(); out = x.abs().gt(2.0))
    x = torch::where(out, torch::randn_like(x), x);
  t.copy_(x * std);
}

HstuModules register_hstu_modules(torch::nn::Module& owner, const HstuOptions& o) {
  const int64_t d = o.hidden_dim, n = o.max_seq_len + o.output_slots;
  HstuModules m;
  m.item_embedding = owner.register_module(
      "item_embedding", torch::nn::Embedding(torch::nn::EmbeddingOptions(o.num_items + 1, d).padding_idx(0)));
  m.position_embedding = owner.register_module("position_embedding", torch::nn::Embedding(n, d));
  m.blocks = owner.register_module("blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < o.num_blocks; ++i) m.blocks->push_back(HstuBlock(o));
  if (o.position_bias || o.time_bias) {
    m.relative_biases = owner.register_module("relative_biases", torch::nn::ModuleList());
    for (int64_t i = 0; i < o.num_blocks; ++i) m.relative_biases->push_back(RelativeBias(n, o.position_bias, o.time_bias));
  }
  torch::NoGradGuard no_grad;
  // Item embeddings trunc-normal(0.02) in both. GR's preprocessor draws the positions trunc-normal
  // (sqrt(1/d)), then HSTU.reset_params re-draws every parameter outside _hstu and _embedding_module,
  // which is only the position table, xavier-normal: std sqrt(2 / (N + d)), 0.0875 for ML-1M.
  trunc_normal(m.item_embedding->weight, 0.02);
  if (o.variant == HstuVariant::kGr) torch::nn::init::xavier_normal_(m.position_embedding->weight);
  else trunc_normal(m.position_embedding->weight, std::sqrt(1.0 / d));
  m.item_embedding->weight[0].zero_();
  return m;
}

HstuImpl::HstuImpl(const HstuOptions& o) : options_(o) {
  HstuModules m = register_hstu_modules(*this, o);
  item_embedding = m.item_embedding;
  position_embedding = m.position_embedding;
  blocks = m.blocks;
  relative_biases = m.relative_biases;
}

torch::Tensor next_timestamps(const data::SequenceBatch& batch, torch::Tensor* ts) {
  const auto& ids = batch.item_ids;                                            // [B, W]
  const int64_t w = ids.size(1);
  if (!batch.timestamps.defined()) {
    // No timestamps: event index as time (equal gaps), next item one step later.
    *ts = torch::arange(w, ids.options()).unsqueeze(0).expand_as(ids);
    return *ts + 1;
  }
  *ts = batch.timestamps;
  if (batch.target_timestamps.defined() && batch.target_timestamps.dim() == 2) return batch.target_timestamps;
  auto next = torch::empty_like(batch.timestamps);
  next.narrow(1, 0, w - 1).copy_(batch.timestamps.narrow(1, 1, w - 1));
  if (batch.target_timestamps.defined()) next.select(1, w - 1).copy_(batch.target_timestamps);
  else next.select(1, w - 1).copy_(batch.timestamps.select(1, w - 1));
  return next;
}

torch::Tensor HstuImpl::encode_packed(const data::SequenceBatch& batch, const RelativeBiasImpl::Indices& bias_indices) {
  const auto& o = options_;
  const auto& ids = batch.item_ids;                                            // [B, W]
  const int64_t w = ids.size(1), d = o.hidden_dim;
  const data::PackedPositions packed = data::pack_positions(ids);
  // GR positions count from the oldest item of the window: slot - (W - length) of the row's sequence.
  auto seq = packed.rows.div(w, "floor");                                      // [T]
  auto positions = packed.rows.remainder(w) - (w - packed.lengths).index_select(0, seq);  // [T]
  auto e = item_embedding(ids.reshape({-1}).index_select(0, packed.rows));     // [T, D]
  torch::Tensor x = o.variant == HstuVariant::kGr
                        ? nn::fast_dropout(e * std::sqrt(double(d)) + position_embedding(positions), o.dropout,
                                           is_training())
                        : e + position_embedding(positions);                   // [T, D]
  for (size_t i = 0; i < blocks->size(); ++i) {
    nn::RelativeBiasTables tables;
    if (relative_biases) tables = relative_biases[i]->as<RelativeBias>()->tables(bias_indices);
    x = blocks[i]->as<HstuBlock>()->forward_packed(x, tables, packed.cu_seqlens, w);
  }
  return packed.unpack(F::normalize(x, F::NormalizeFuncOptions().dim(-1).eps(1e-6)));  // [B, W, D], 0 at padding
}

torch::Tensor HstuImpl::encode(const data::SequenceBatch& batch) {
  const auto& o = options_;
  const auto& ids = batch.item_ids;                                            // [B, W]
  TORCH_CHECK(ids.dim() == 2, "item_ids must be [B, W]");
  const int64_t w = ids.size(1);
  RelativeBiasImpl::Indices bias_indices;  // shared by all layers: computed once
  if (relative_biases) {
    torch::Tensor ts;
    torch::Tensor next_ts = next_timestamps(batch, &ts);
    bias_indices = relative_biases[0]->as<RelativeBias>()->indices(ts, next_ts, w);
  }
  // The jagged CPU kernel reads the bias tables directly; otherwise the bias is built per layer.
  const bool tables = o.jagged_attention && ids.device().is_cpu() &&
                      item_embedding->weight.scalar_type() == torch::kFloat;
  const bool last_only = batch.last_only && !is_training();
  if (tables && !last_only) return encode_packed(batch, bias_indices);  // the real positions alone
  auto valid = ids.ne(0);                                                      // [B, W]
  auto keep = valid.unsqueeze(-1).to(torch::kFloat);                           // [B, W, 1]
  // GR positions count from the oldest item of the window (its sequences are right-padded).
  auto pad = w - valid.sum(1, /*keepdim=*/true);                               // [B, 1]
  auto positions = (torch::arange(w, ids.options()).unsqueeze(0) - pad).clamp_min(0);  // [B, W]
  auto e = item_embedding(ids);                                                // [B, W, D]
  torch::Tensor x;
  if (o.variant == HstuVariant::kGr) {
    x = nn::fast_dropout(e * std::sqrt(double(o.hidden_dim)) + position_embedding(positions), o.dropout,
                         is_training()) * keep;
  } else {
    x = (e + position_embedding(positions)) * keep;  // HLLM IDNet: no scaling, no input dropout
  }
  auto lengths = valid.sum(1);                                                 // [B] (left padding)
  for (size_t i = 0; i < blocks->size(); ++i) {
    auto* block = blocks[i]->as<HstuBlock>();
    if (last_only && i + 1 == blocks->size()) {  // inference reads the newest position only
      torch::Tensor row;
      if (relative_biases) {
        auto* rb = relative_biases[i]->as<RelativeBias>();
        row = nn::materialize_last_bias_row(rb->tables(bias_indices), ids.size(0), w);  // [B, W]
      }
      x = block->forward_last(x, row, lengths, keep);                                // [B, 1, D]
    } else if (relative_biases && tables) {
      x = block->forward(x, relative_biases[i]->as<RelativeBias>()->tables(bias_indices), lengths, keep);
    } else {
      torch::Tensor bias;
      if (relative_biases) bias = relative_biases[i]->as<RelativeBias>()->forward(bias_indices);
      x = block->forward(x, bias, lengths, keep);
    }
  }
  return F::normalize(x, F::NormalizeFuncOptions().dim(-1).eps(1e-6));          // [B, W or 1, D]
}

torch::Tensor HstuImpl::item_embeddings(const torch::Tensor& item_ids) {
  return F::normalize(item_embedding(item_ids), F::NormalizeFuncOptions().dim(-1).eps(1e-6));
}

torch::Tensor HstuImpl::all_item_embeddings() {
  return F::normalize(item_embedding->weight, F::NormalizeFuncOptions().dim(-1).eps(1e-6));
}

}  // namespace seqrec::models
