// SASRec: both variants share one block implementation; the variant only moves the LayerNorms.
#include "seqrec/models/sasrec.h"

#include <torch/nn/functional/activation.h>
#include <torch/nn/functional/normalization.h>
#include <torch/nn/init.h>

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

SasRecOptions read_sasrec_options(config::ConfigNode node, const ModelContext& context) {
  SasRecOptions o;
  o.num_items = context.num_items;
  o.max_seq_len = context.max_seq_len;
  o.variant = config::parse_one_of<SasRecVariant>(node.get<std::string>("variant", "gr"),
                                                  {{SasRecVariant::kGr, "gr"}, {SasRecVariant::kPostLn, "post_ln"}},
                                                  node.path() + ".variant");
  const bool gr = o.variant == SasRecVariant::kGr;
  o.hidden_dim = node.get<int64_t>("hidden_dim", o.hidden_dim);
  o.num_blocks = node.get<int64_t>("num_blocks", o.num_blocks);
  o.num_heads = node.get<int64_t>("num_heads", o.num_heads);
  o.ffn_dim = node.get<int64_t>("ffn_dim", o.hidden_dim);
  o.dropout = node.get<double>("dropout", o.dropout);
  o.l2_norm_output = node.get<bool>("l2_norm_output", o.l2_norm_output);
  o.layer_norm_eps = node.get<double>("layer_norm_eps", gr ? 1e-8 : 1e-12);
  o.jagged_attention = node.get<bool>("jagged_attention", o.jagged_attention);
  o.attention_out_proj = node.get<bool>("attention_out_proj", o.attention_out_proj);
  const std::string p = node.path();
  if (o.hidden_dim < 1) throw ConfigError(p + ".hidden_dim", "must be >= 1");
  if (o.num_blocks < 1) throw ConfigError(p + ".num_blocks", "must be >= 1");
  if (o.num_heads < 1 || o.hidden_dim % o.num_heads != 0)
    throw ConfigError(p + ".num_heads", "num_heads (" + std::to_string(o.num_heads) +
                                            ") must divide hidden_dim (" + std::to_string(o.hidden_dim) + ")");
  if (o.ffn_dim < 1) throw ConfigError(p + ".ffn_dim", "must be >= 1");
  if (o.dropout < 0 || o.dropout >= 1) throw ConfigError(p + ".dropout", "must be in [0, 1)");
  if (o.num_items < 1) throw ConfigError(p, "the data has no items");
  return o;
}

SasRecBlockImpl::SasRecBlockImpl(const SasRecOptions& options) : options_(options) {
  const int64_t d = options.hidden_dim;
  auto ln = torch::nn::LayerNormOptions({d}).eps(options.layer_norm_eps);
  attn_layer_norm = register_module("attn_layer_norm", torch::nn::LayerNorm(ln));
  q_proj = register_module("q_proj", torch::nn::Linear(d, d));
  kv_proj = register_module("kv_proj", torch::nn::Linear(d, 2 * d));
  if (options.attention_out_proj) out_proj = register_module("out_proj", torch::nn::Linear(d, d));
  ffn_layer_norm = register_module("ffn_layer_norm", torch::nn::LayerNorm(ln));
  const int64_t ffn = options.ffn_dim > 0 ? options.ffn_dim : d;  // 0 = hidden_dim
  ffn_in = register_module("ffn_in", torch::nn::Linear(d, ffn));
  ffn_out = register_module("ffn_out", torch::nn::Linear(ffn, d));
}

torch::Tensor SasRecBlockImpl::attend(const torch::Tensor& q_src, const torch::Tensor& kv_src,
                                      const torch::Tensor& lengths, const torch::Tensor& cu_seqlens) {
  const int64_t h = options_.num_heads, dh = options_.hidden_dim / h;
  // Scale q (B*W*dh values) rather than the scores (B*W*W): same result, far fewer operations.
  nn::FusedLinearOptions scaled;
  scaled.scale = 1.0 / std::sqrt(double(dh));
  if (cu_seqlens.defined()) {  // packed rows [T, D]
    const int64_t t = q_src.size(0);
    auto q = nn::fused_linear(q_src, q_proj->weight, q_proj->bias, scaled).view({t, h, dh});      // [T, H, dh]
    auto kv = nn::fused_linear(kv_src, kv_proj->weight, kv_proj->bias, {}).view({t, 2, h, dh});   // [T, 2, H, dh]
    return nn::packed_causal_attention(q, kv.select(1, 0), kv.select(1, 1), cu_seqlens, options_.dropout,
                                       is_training())
        .reshape({t, h * dh});                                                                     // [T, D]
  }
  const int64_t b = kv_src.size(0), w = kv_src.size(1), nq = q_src.size(1);
  auto q = nn::fused_linear(q_src, q_proj->weight, q_proj->bias, scaled).view({b, nq, h, dh}).transpose(1, 2);  // [B, H, Q, dh]
  auto kv = nn::fused_linear(kv_src, kv_proj->weight, kv_proj->bias, {}).view({b, w, 2, h, dh});  // [B, W, 2, H, dh]
  auto k = kv.select(2, 0).transpose(1, 2);                                      // [B, H, W, dh]
  auto v = kv.select(2, 1).transpose(1, 2);                                      // [B, H, W, dh]
  torch::Tensor out;
  if (nq != w) {
    TORCH_CHECK(nq == 1 && !is_training(), "only the newest position alone, and only at inference");
    out = nn::last_query_attention(q, k, v, lengths);                            // [B, H, 1, dh]
  } else {
    out = options_.jagged_attention ? nn::jagged_causal_attention(q, k, v, lengths, options_.dropout, is_training())
                                    : nn::padded_causal_attention(q, k, v, lengths, options_.dropout, is_training());
  }
  return out.transpose(1, 2).reshape({b, nq, h * dh});                          // [B, Q, D]
}

namespace {

// A LayerNorm module's parameters through the fused kernel (nn/layer_norm.h).
torch::Tensor norm(const torch::nn::LayerNorm& ln, const torch::Tensor& x) {
  return nn::layer_norm(x, ln->weight, ln->bias, ln->options.eps());
}

}  // namespace

torch::Tensor SasRecBlockImpl::drop(const torch::Tensor& x) {
  return nn::fast_dropout(x, options_.dropout, is_training());
}

torch::Tensor SasRecBlockImpl::layers(const torch::Tensor& x, const torch::Tensor& keep,
                                      const std::function<torch::Tensor(const torch::Tensor&)>& attend_fn) {
  // Linear layers carry their element-wise tails (bias, activation, dropout, residual, padding
  // mask) in one fused pass: nn/fused_linear.h.
  nn::FusedLinearOptions plain, dropped;
  dropped.dropout = options_.dropout;
  dropped.training = is_training();
  if (options_.variant == SasRecVariant::kGr) {
    // SASRec code: queries are normalised, keys/values are not; residuals add the normalised input.
    auto q = norm(attn_layer_norm, x);                                   // [.., D]
    auto o = attend_fn(q);                                               // [.., D]
    auto a = out_proj ? nn::fused_linear(o, out_proj->weight, out_proj->bias, plain, q) : o + q;
    auto n = norm(ffn_layer_norm, a);                                    // [.., D]
    nn::FusedLinearOptions relu_dropped = dropped;
    relu_dropped.activation = nn::cpu::Activation::kRelu;
    auto f = nn::fused_linear(n, ffn_in->weight, ffn_in->bias, relu_dropped);          // [.., F]
    return nn::fused_linear(f, ffn_out->weight, ffn_out->bias, dropped, n, keep);     // (Dropout(FFN) + n) * keep
  }
  // RecBole post-LN: LN(x + Dropout(MHA(x))), then LN(a + Dropout(FFN_gelu(a))).
  auto o = attend_fn(x);                                                               // [.., D]
  auto a = norm(attn_layer_norm, out_proj ? nn::fused_linear(o, out_proj->weight, out_proj->bias, dropped, x)
                                          : x + drop(o));                                    // [.., D]
  nn::FusedLinearOptions gelu;
  gelu.activation = nn::cpu::Activation::kGelu;
  auto f = nn::fused_linear(a, ffn_in->weight, ffn_in->bias, gelu);                    // [.., F]
  auto y = norm(ffn_layer_norm, nn::fused_linear(f, ffn_out->weight, ffn_out->bias, dropped, a));
  return keep.defined() ? y * keep : y;
}

torch::Tensor SasRecBlockImpl::forward(const torch::Tensor& x_all, const torch::Tensor& lengths,
                                       const torch::Tensor& keep_all, bool last_only) {
  // Keys and values always see every position; queries (and everything after attention) are the
  // newest position alone when last_only.
  const int64_t w = x_all.size(1);
  const torch::Tensor x = last_only ? x_all.narrow(1, w - 1, 1) : x_all;          // [B, Q, D]
  const torch::Tensor keep = last_only ? keep_all.narrow(1, w - 1, 1) : keep_all;  // [B, Q, 1]
  // gr: queries are LN(x) (given), keys/values x; post_ln: both x.
  return layers(x, keep, [&](const torch::Tensor& q_src) { return attend(q_src, x_all, lengths); });
}

torch::Tensor SasRecBlockImpl::forward_packed(const torch::Tensor& x, const torch::Tensor& cu_seqlens) {
  return layers(x, {}, [&](const torch::Tensor& q_src) { return attend(q_src, x, {}, cu_seqlens); });
}

SasRecImpl::SasRecImpl(const SasRecOptions& options) : options_(options) {
  const int64_t d = options.hidden_dim;
  item_embedding = register_module(
      "item_embedding",
      torch::nn::Embedding(torch::nn::EmbeddingOptions(options.num_items + 1, d).padding_idx(0)));
  position_embedding = register_module("position_embedding", torch::nn::Embedding(options.max_seq_len, d));
  auto ln = torch::nn::LayerNormOptions({d}).eps(options.layer_norm_eps);
  if (options.variant == SasRecVariant::kGr) {
    last_layer_norm = register_module("last_layer_norm", torch::nn::LayerNorm(ln));
  } else {
    emb_layer_norm = register_module("emb_layer_norm", torch::nn::LayerNorm(ln));
  }
  blocks = register_module("blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < options.num_blocks; ++i) blocks->push_back(SasRecBlock(options));
  reset_parameters();
}

void SasRecImpl::reset_parameters() {
  torch::NoGradGuard no_grad;
  for (auto& p : named_parameters()) {
    const std::string& name = p.key();
    torch::Tensor t = p.value();
    if (name.find("layer_norm") != std::string::npos) continue;  // LayerNorm keeps 1 / 0
    if (t.dim() < 2) {
      t.zero_();
      continue;
    }
    if (options_.variant == SasRecVariant::kGr) {
      torch::nn::init::xavier_normal_(t);  // SASRec code: xavier_normal_ on every matrix
    } else {
      t.normal_(0.0, 0.02);  // RecBole init
    }
  }
  item_embedding->weight[0].zero_();
}

torch::Tensor SasRecImpl::encode_packed(const data::SequenceBatch& batch) {
  const auto& ids = batch.item_ids;                                 // [B, W]
  const int64_t d = options_.hidden_dim;
  const data::PackedPositions packed = data::pack_positions(ids);
  auto ids_p = ids.reshape({-1}).index_select(0, packed.rows);      // [T]
  auto pos_p = packed.rows.remainder(packed.width) + batch.position_offset;  // [T] absolute positions
  torch::Tensor x;
  if (options_.variant == SasRecVariant::kGr) {
    x = nn::fast_dropout(item_embedding(ids_p) * std::sqrt(double(d)) + position_embedding(pos_p), options_.dropout,
                         is_training());                            // [T, D]
  } else {
    x = nn::fast_dropout(norm(emb_layer_norm, item_embedding(ids_p) + position_embedding(pos_p)), options_.dropout,
                         is_training());
  }
  for (const auto& block : *blocks) x = block->as<SasRecBlock>()->forward_packed(x, packed.cu_seqlens);
  if (options_.variant == SasRecVariant::kGr) x = norm(last_layer_norm, x);
  if (options_.l2_norm_output) x = F::normalize(x, F::NormalizeFuncOptions().dim(-1).eps(1e-6));
  return packed.unpack(x);                                          // [B, W, D], 0 at padding
}

torch::Tensor SasRecImpl::encode(const data::SequenceBatch& batch) {
  const auto& ids = batch.item_ids;                                 // [B, W]
  TORCH_CHECK(ids.dim() == 2, "item_ids must be [B, W]");
  const int64_t w = ids.size(1);
  TORCH_CHECK(batch.position_offset + w <= options_.max_seq_len, "sequence longer than max_seq_len");
  // The real positions alone, when the kernels allow it and every position is read.
  const bool last_only = batch.last_only && !is_training();
  if (options_.jagged_attention && !last_only && ids.device().is_cpu() &&
      item_embedding->weight.scalar_type() == torch::kFloat)
    return encode_packed(batch);
  auto positions = torch::arange(batch.position_offset, batch.position_offset + w,
                                 ids.options());                    // [W]
  auto keep = ids.ne(0).unsqueeze(-1).to(torch::kFloat);            // [B, W, 1]
  torch::Tensor x;
  if (options_.variant == SasRecVariant::kGr) {
    x = item_embedding(ids) * std::sqrt(double(options_.hidden_dim)) + position_embedding(positions);
    x = nn::fast_dropout(x, options_.dropout, is_training()) * keep;                                      // [B, W, D]
  } else {
    x = nn::fast_dropout(norm(emb_layer_norm, item_embedding(ids) + position_embedding(positions)), options_.dropout,
                         is_training());
  }
  auto lengths = ids.ne(0).sum(1);                                  // [B] (left padding)
  // Inference that reads only the newest position needs only it from the last block.
  for (size_t i = 0; i < blocks->size(); ++i)
    x = blocks[i]->as<SasRecBlock>()->forward(x, lengths, keep, last_only && i + 1 == blocks->size());
  if (options_.variant == SasRecVariant::kGr) x = norm(last_layer_norm, x);
  if (options_.l2_norm_output) x = F::normalize(x, F::NormalizeFuncOptions().dim(-1).eps(1e-6));
  return x;                                                         // [B, W or 1, D]
}

torch::Tensor SasRecImpl::item_embeddings(const torch::Tensor& item_ids) {
  auto e = item_embedding(item_ids);                                // [..., D]
  if (options_.l2_norm_output) e = F::normalize(e, F::NormalizeFuncOptions().dim(-1).eps(1e-6));
  return e;
}

torch::Tensor SasRecImpl::all_item_embeddings() {
  auto e = item_embedding->weight;                                  // [V+1, D]
  if (options_.l2_norm_output) e = F::normalize(e, F::NormalizeFuncOptions().dim(-1).eps(1e-6));
  return e;
}

}  // namespace seqrec::models
