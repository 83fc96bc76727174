// LLaMA decoder block.
#include "seqrec/nn/llama_block.h"

#include <torch/torch.h>

#include <cmath>

#include "seqrec/nn/attention.h"
#include "seqrec/nn/dropout.h"
#include "seqrec/nn/fused_linear.h"
#include "seqrec/nn/layer_norm.h"

namespace seqrec::nn {

RmsNormImpl::RmsNormImpl(int64_t dim, double eps) : eps_(eps) {
  weight = register_parameter("weight", torch::ones({dim}));
}

torch::Tensor RmsNormImpl::forward(const torch::Tensor& x) { return rms_norm(x, weight, eps_); }

torch::Tensor rope_inverse_frequencies(int64_t head_dim, double theta) {
  auto i = torch::arange(0, head_dim, 2, torch::kDouble);                        // [hd/2]
  return torch::pow(theta, -i / static_cast<double>(head_dim)).to(torch::kFloat);
}

Rotary rotary_for_positions(const torch::Tensor& positions, const torch::Tensor& inv_freq) {
  auto freqs = positions.to(torch::kFloat).unsqueeze(-1) * inv_freq.to(positions.device());  // [.., T, hd/2]
  auto emb = torch::cat({freqs, freqs}, -1);                                                  // [.., T, hd]
  return {emb.cos(), emb.sin()};
}

torch::Tensor apply_rotary(const torch::Tensor& x, const Rotary& r) {
  const int64_t half = x.size(-1) / 2;
  auto rotated = torch::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);         // rotate_half
  auto cos = r.cos.dim() == 2 ? r.cos : r.cos.unsqueeze(1);                                   // broadcast over heads
  auto sin = r.sin.dim() == 2 ? r.sin : r.sin.unsqueeze(1);
  return x * cos.to(x.scalar_type()) + rotated * sin.to(x.scalar_type());
}

LlamaAttentionImpl::LlamaAttentionImpl(const LlamaBlockOptions& o) : options_(o) {
  auto lin = [&](int64_t in, int64_t out, bool bias) { return LoraLinear(in, out, bias); };
  q_proj = register_module("q_proj", lin(o.hidden_dim, o.num_heads * o.head_dim, o.qkv_bias));
  k_proj = register_module("k_proj", lin(o.hidden_dim, o.num_kv_heads * o.head_dim, o.qkv_bias));
  v_proj = register_module("v_proj", lin(o.hidden_dim, o.num_kv_heads * o.head_dim, o.qkv_bias));
  o_proj = register_module("o_proj", lin(o.num_heads * o.head_dim, o.hidden_dim, false));
}

PackedSegments pack_segments(const std::vector<int64_t>& lengths) {
  PackedSegments p;
  for (int64_t n : lengths) {
    TORCH_CHECK(n >= 1, "packed segments must not be empty");
    p.width = std::max(p.width, n);
  }
  int64_t total = 0;
  for (int64_t n : lengths) total += n;
  p.lengths = torch::tensor(lengths, torch::kLong);
  p.slots = torch::empty({total}, torch::kLong);
  auto* s = p.slots.data_ptr<int64_t>();
  for (size_t i = 0; i < lengths.size(); ++i) {
    const int64_t row = static_cast<int64_t>(i) * p.width + (p.width - lengths[i]);  // left padding
    for (int64_t j = 0; j < lengths[i]; ++j) *s++ = row + j;
  }
  return p;
}

namespace {

// Causal attention within the segments of a packed row. q, k, v: [1, H, T, hd] -> [1, T, H*hd].
torch::Tensor packed_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                               const PackedSegments& p, double dropout, bool training) {
  // The jagged kernel is float32 on the CPU: under bfloat16 autocast the attention core runs in
  // float32 here (softmax stays float32 either way), the projections around it in bfloat16.
  if (q.device().is_cpu() && q.scalar_type() != torch::kFloat)
    return packed_attention(q.to(torch::kFloat), k.to(torch::kFloat), v.to(torch::kFloat), p, dropout, training);
  const int64_t h = q.size(1), t = q.size(2), hd = q.size(3);
  const int64_t n = p.lengths.size(0), w = p.width;
  auto slots = p.slots.to(q.device());
  auto to_padded = [&](const torch::Tensor& z) {  // [1, H, T, hd] -> [N, H, W, hd], zeros in the padding
    auto flat = z.squeeze(0).transpose(0, 1);                                                // [T, H, hd]
    return torch::zeros({n * w, h, hd}, z.options()).index_copy(0, slots, flat).view({n, w, h, hd}).transpose(1, 2);
  };
  auto out = jagged_causal_attention(to_padded(q * (1.0 / std::sqrt(static_cast<double>(hd)))), to_padded(k),
                                     to_padded(v), p.lengths.to(q.device()), dropout, training);  // [N, H, W, hd]
  return out.transpose(1, 2).reshape({n * w, h * hd}).index_select(0, slots).view({1, t, h * hd});
}

}  // namespace

torch::Tensor LlamaAttentionImpl::forward(const torch::Tensor& x, const Rotary& rotary, const torch::Tensor& bias,
                                          KvCache* cache, const PackedSegments* packed) {
  const auto& o = options_;
  const int64_t b = x.size(0), t = x.size(1), hd = o.head_dim;
  auto q = apply_rotary(q_proj(x).view({b, t, o.num_heads, hd}).transpose(1, 2), rotary);     // [B, H, T, hd]
  auto k = apply_rotary(k_proj(x).view({b, t, o.num_kv_heads, hd}).transpose(1, 2), rotary);  // [B, Hkv, T, hd]
  auto v = v_proj(x).view({b, t, o.num_kv_heads, hd}).transpose(1, 2);                         // [B, Hkv, T, hd]
  if (packed) {
    TORCH_CHECK(b == 1 && !cache, "packed attention takes one packed row and no cache");
    const int64_t group = o.num_heads / o.num_kv_heads;
    if (group > 1) {
      k = k.repeat_interleave(group, 1);
      v = v.repeat_interleave(group, 1);
    }
    return o_proj(packed_attention(q, k, v, *packed, o.dropout, is_training()));
  }
  if (cache) {
    if (cache->k.defined()) {
      k = torch::cat({cache->k, k}, 2);                                                          // [B, Hkv, S, hd]
      v = torch::cat({cache->v, v}, 2);
    }
    cache->k = k;
    cache->v = v;
  }
  const int64_t group = o.num_heads / o.num_kv_heads;
  if (group > 1) {  // GQA: each key/value head serves `group` query heads
    k = k.repeat_interleave(group, 1);                                                           // [B, H, S, hd]
    v = v.repeat_interleave(group, 1);
  }
  auto scores = torch::matmul(q, k.transpose(-2, -1)) / std::sqrt(static_cast<double>(hd));      // [B, H, T, S]
  if (bias.defined()) scores = scores + bias.to(scores.scalar_type());
  auto probs = fast_dropout(torch::softmax(scores.to(torch::kFloat), -1).to(q.scalar_type()), o.dropout, is_training());
  auto out = torch::matmul(probs, v).transpose(1, 2).reshape({b, t, o.num_heads * hd});         // [B, T, H*hd]
  return o_proj(out);
}

LlamaMlpImpl::LlamaMlpImpl(const LlamaBlockOptions& o) {
  auto lin = [](int64_t in, int64_t out) { return LoraLinear(in, out, false); };
  gate_proj = register_module("gate_proj", lin(o.hidden_dim, o.ffn_dim));
  up_proj = register_module("up_proj", lin(o.hidden_dim, o.ffn_dim));
  down_proj = register_module("down_proj", lin(o.ffn_dim, o.hidden_dim));
}

torch::Tensor LlamaMlpImpl::forward(const torch::Tensor& x) {
  return down_proj(swiglu(gate_proj(x), up_proj(x)));
}

LlamaBlockImpl::LlamaBlockImpl(const LlamaBlockOptions& o) : options_(o) {
  TORCH_CHECK(o.num_kv_heads > 0 && o.num_heads % o.num_kv_heads == 0, "num_kv_heads must divide num_heads");
  input_layernorm = register_module("input_layernorm", RmsNorm(o.hidden_dim, o.rms_eps));
  self_attn = register_module("self_attn", LlamaAttention(o));
  post_attention_layernorm = register_module("post_attention_layernorm", RmsNorm(o.hidden_dim, o.rms_eps));
  mlp = register_module("mlp", LlamaMlp(o));
}

torch::Tensor LlamaBlockImpl::forward(const torch::Tensor& x, const Rotary& rotary, const torch::Tensor& bias,
                                      KvCache* cache, const PackedSegments* packed) {
  auto h = x + fast_dropout(self_attn(input_layernorm(x), rotary, bias, cache, packed), options_.dropout,
                            is_training());
  return h + fast_dropout(mlp(post_attention_layernorm(h)), options_.dropout, is_training());
}

torch::Tensor causal_bias(int64_t t, int64_t past, const torch::Tensor& key_valid, const torch::TensorOptions& options) {
  const int64_t s = past + t;
  auto rows = torch::arange(past, s, torch::kLong).unsqueeze(1);                    // [T, 1] absolute query position
  auto cols = torch::arange(s, torch::kLong).unsqueeze(0);                          // [1, S]
  auto allowed = cols.le(rows).unsqueeze(0);                                         // [1, T, S]
  if (key_valid.defined()) allowed = allowed.logical_and(key_valid.to(torch::kCPU).unsqueeze(1)).logical_or(cols.eq(rows).unsqueeze(0));
  auto bias = torch::zeros(allowed.sizes(), torch::kFloat).masked_fill_(allowed.logical_not(), -INFINITY);
  return bias.unsqueeze(1).to(options.device());                                      // [B or 1, 1, T, S]
}

}  // namespace seqrec::nn
