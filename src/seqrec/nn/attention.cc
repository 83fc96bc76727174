// Jagged causal softmax attention: per (sequence, head) blocks, fused softmax + dropout.
#include "seqrec/nn/attention.h"

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <cmath>
#include <vector>

#include "seqrec/common/random.h"
#include "seqrec/nn/dropout.h"

namespace seqrec::nn {
namespace {

// Dropout keep-mask of one (sequence, head) block, as 0 or 1/(1-p), from its own stream.
void fill_dropout(float* m, int64_t n, double p, uint64_t seed) {
  Rng rng(seed);
  const uint64_t threshold = static_cast<uint64_t>(p * 4294967296.0);
  const float keep = static_cast<float>(1.0 / (1.0 - p));
  for (int64_t i = 0; i < n; ++i) m[i] = (rng.next() >> 32) < threshold ? 0.f : keep;
}

struct JaggedAttention : public torch::autograd::Function<JaggedAttention> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& q_in,
                               const torch::Tensor& k_in, const torch::Tensor& v_in, const torch::Tensor& lengths,
                               double p, bool training) {
    auto q = q_in.contiguous(), k = k_in.contiguous(), v = v_in.contiguous();
    const int64_t b = q.size(0), h = q.size(1), w = q.size(2), dh = q.size(3);
    const bool drop = training && p > 0;
    auto out = torch::zeros_like(q);                                          // [B, H, W, dh]
    auto probs = torch::empty({b, h, w, w}, q.options());                     // only l x l blocks used
    torch::Tensor mask = drop ? torch::empty({b, h, w, w}, q.options()) : torch::Tensor();
    const uint64_t seed =
        drop ? static_cast<uint64_t>(torch::randint(1LL << 62, {1}, torch::kLong).item<int64_t>()) : 0;
    const int64_t* len = lengths.data_ptr<int64_t>();
    at::parallel_for(0, b * h, 1, [&](int64_t begin, int64_t end) {
      for (int64_t bh = begin; bh < end; ++bh) {
        const int64_t bi = bh / h, hi = bh % h, l = len[bi], off = w - l;
        if (l == 0) continue;
        auto qb = q[bi][hi].narrow(0, off, l), kb = k[bi][hi].narrow(0, off, l), vb = v[bi][hi].narrow(0, off, l);
        auto pb = probs[bi][hi].narrow(0, 0, l).narrow(1, 0, l);               // [l, l] view (stride w)
        torch::mm_out(pb, qb, kb.t());
        float* pp = pb.data_ptr<float>();
        for (int64_t i = 0; i < l; ++i) {  // causal softmax over j <= i
          float* row = pp + i * w;
          float mx = row[0];
          for (int64_t j = 1; j <= i; ++j) mx = std::max(mx, row[j]);
          float sum = 0;
          for (int64_t j = 0; j <= i; ++j) sum += (row[j] = std::exp(row[j] - mx));
          const float inv = 1.f / sum;
          for (int64_t j = 0; j <= i; ++j) row[j] *= inv;
          for (int64_t j = i + 1; j < l; ++j) row[j] = 0.f;
        }
        auto ob = out[bi][hi].narrow(0, off, l);
        if (drop) {
          auto mb = mask[bi][hi].narrow(0, 0, l).narrow(1, 0, l);
          float* mp = mb.data_ptr<float>();
          for (int64_t i = 0; i < l; ++i) fill_dropout(mp + i * w, l, p, derive_seed({seed, uint64_t(bh), uint64_t(i)}));
          torch::mm_out(ob, pb * mb, vb);
        } else {
          torch::mm_out(ob, pb, vb);
        }
      }
    });
    ctx->save_for_backward({q, k, v, probs, drop ? mask : torch::Tensor(), lengths});
    ctx->saved_data["drop"] = drop;
    return out;
  }

  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grads) {
    auto s = ctx->get_saved_variables();
    const auto &q = s[0], &k = s[1], &v = s[2], &probs = s[3], &mask = s[4], &lengths = s[5];
    const bool drop = ctx->saved_data["drop"].toBool();
    auto g = grads[0].contiguous();                                             // [B, H, W, dh]
    const int64_t b = q.size(0), h = q.size(1), w = q.size(2);
    auto gq = torch::zeros_like(q), gk = torch::zeros_like(k), gv = torch::zeros_like(v);
    const int64_t* len = lengths.data_ptr<int64_t>();
    at::parallel_for(0, b * h, 1, [&](int64_t begin, int64_t end) {
      for (int64_t bh = begin; bh < end; ++bh) {
        const int64_t bi = bh / h, hi = bh % h, l = len[bi], off = w - l;
        if (l == 0) continue;
        auto qb = q[bi][hi].narrow(0, off, l), kb = k[bi][hi].narrow(0, off, l), vb = v[bi][hi].narrow(0, off, l);
        auto gb = g[bi][hi].narrow(0, off, l);
        auto pb = probs[bi][hi].narrow(0, 0, l).narrow(1, 0, l);               // [l, l]
        torch::Tensor pd = drop ? pb * mask[bi][hi].narrow(0, 0, l).narrow(1, 0, l) : pb;
        auto gvb = gv[bi][hi].narrow(0, off, l);
        torch::mm_out(gvb, pd.t(), gb);                                         // dV = Pd^T dO
        auto dp = torch::mm(gb, vb.t());                                        // [l, l] dPd
        if (drop) dp.mul_(mask[bi][hi].narrow(0, 0, l).narrow(1, 0, l));        // dP
        // dS = P * (dP - rowsum(dP * P)); masked entries have P = 0.
        float* dpp = dp.data_ptr<float>();
        const float* pp = pb.data_ptr<float>();
        for (int64_t i = 0; i < l; ++i) {
          float dot = 0;
          for (int64_t j = 0; j <= i; ++j) dot += dpp[i * l + j] * pp[i * w + j];
          for (int64_t j = 0; j <= i; ++j) dpp[i * l + j] = pp[i * w + j] * (dpp[i * l + j] - dot);
          for (int64_t j = i + 1; j < l; ++j) dpp[i * l + j] = 0.f;
        }
        auto gqb = gq[bi][hi].narrow(0, off, l), gkb = gk[bi][hi].narrow(0, off, l);
        torch::mm_out(gqb, dp, kb);                                             // dQ = dS K
        torch::mm_out(gkb, dp.t(), qb);                                         // dK = dS^T Q
      }
    });
    return {gq, gk, gv, torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

// Scores of one (sequence, head) block: q_b k_b^T (+ bias block), [l, l] contiguous.
torch::Tensor block_scores(const torch::Tensor& qb, const torch::Tensor& kb, const torch::Tensor& bias, int64_t bi,
                           int64_t off, int64_t l) {
  auto s = torch::mm(qb, kb.t());
  if (bias.defined()) s.add_(bias[bi].narrow(0, off, l).narrow(1, off, l));
  return s;
}

struct JaggedPointwise : public torch::autograd::Function<JaggedPointwise> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& q_in,
                               const torch::Tensor& k_in, const torch::Tensor& v_in, const torch::Tensor& bias_in,
                               const torch::Tensor& lengths, double n) {
    auto q = q_in.contiguous(), k = k_in.contiguous(), v = v_in.contiguous();
    // An empty bias stands for "no bias" (autograd arguments must be defined tensors).
    auto bias = bias_in.numel() > 0 ? bias_in.contiguous() : torch::Tensor();
    const int64_t b = q.size(0), h = q.size(1), w = q.size(2);
    auto out = torch::zeros({b, h, w, v.size(3)}, q.options());
    const int64_t* len = lengths.data_ptr<int64_t>();
    const float inv_n = static_cast<float>(1.0 / n);
    at::parallel_for(0, b * h, 1, [&](int64_t begin, int64_t end) {
      for (int64_t bh = begin; bh < end; ++bh) {
        const int64_t bi = bh / h, hi = bh % h, l = len[bi], off = w - l;
        if (l == 0) continue;
        auto s = block_scores(q[bi][hi].narrow(0, off, l), k[bi][hi].narrow(0, off, l), bias, bi, off, l);
        float* sp = s.data_ptr<float>();
        for (int64_t i = 0; i < l; ++i)
          for (int64_t j = 0; j < l; ++j) {
            const float x = sp[i * l + j];
            sp[i * l + j] = j <= i ? x / (1.f + std::exp(-x)) * inv_n : 0.f;  // SiLU / N, causal
          }
        auto ob = out[bi][hi].narrow(0, off, l);
        torch::mm_out(ob, s, v[bi][hi].narrow(0, off, l));
      }
    });
    ctx->save_for_backward({q, k, v, bias.defined() ? bias : torch::Tensor(), lengths});
    ctx->saved_data["n"] = n;
    ctx->saved_data["has_bias"] = bias.defined();
    return out;
  }

  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grads) {
    auto s = ctx->get_saved_variables();
    const auto &q = s[0], &k = s[1], &v = s[2], &lengths = s[4];
    const bool has_bias = ctx->saved_data["has_bias"].toBool();
    const torch::Tensor bias = has_bias ? s[3] : torch::Tensor();
    const float inv_n = static_cast<float>(1.0 / ctx->saved_data["n"].toDouble());
    auto g = grads[0].contiguous();
    const int64_t b = q.size(0), h = q.size(1), w = q.size(2);
    auto gq = torch::zeros_like(q), gk = torch::zeros_like(k), gv = torch::zeros_like(v);
    auto gbias = has_bias ? torch::zeros_like(bias) : torch::Tensor();
    const int64_t* len = lengths.data_ptr<int64_t>();
    // Parallel over sequences only: the heads of one sequence add into the same bias gradient.
    at::parallel_for(0, b, 1, [&](int64_t begin, int64_t end) {
      for (int64_t bi = begin; bi < end; ++bi) {
        const int64_t l = len[bi], off = w - l;
        if (l == 0) continue;
        for (int64_t hi = 0; hi < h; ++hi) {
          auto qb = q[bi][hi].narrow(0, off, l), kb = k[bi][hi].narrow(0, off, l), vb = v[bi][hi].narrow(0, off, l);
          auto gb = g[bi][hi].narrow(0, off, l);
          auto sc = block_scores(qb, kb, bias, bi, off, l);                      // [l, l] pre-activation
          auto da = torch::mm(gb, vb.t());                                       // [l, l] dA
          float* sp = sc.data_ptr<float>();
          float* dp = da.data_ptr<float>();
          for (int64_t i = 0; i < l; ++i)
            for (int64_t j = 0; j < l; ++j) {
              const int64_t ij = i * l + j;
              if (j > i) {
                sp[ij] = 0.f;
                dp[ij] = 0.f;
                continue;
              }
              const float x = sp[ij], sig = 1.f / (1.f + std::exp(-x));
              sp[ij] = x * sig * inv_n;                                          // A
              dp[ij] *= sig * (1.f + x * (1.f - sig)) * inv_n;                   // dS = dA SiLU'(S) / N
            }
          auto gvb = gv[bi][hi].narrow(0, off, l);
          torch::mm_out(gvb, sc.t(), gb);                                        // dV = A^T dO
          auto gqb = gq[bi][hi].narrow(0, off, l), gkb = gk[bi][hi].narrow(0, off, l);
          torch::mm_out(gqb, da, kb);                                            // dQ = dS K
          torch::mm_out(gkb, da.t(), qb);                                        // dK = dS^T Q
          if (has_bias) gbias[bi].narrow(0, off, l).narrow(1, off, l).add_(da);
        }
      }
    });
    return {gq, gk, gv, gbias, torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor padded_pointwise_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                         const torch::Tensor& bias, const torch::Tensor& lengths, double n) {
  const int64_t w = q.size(2);
  auto pos = torch::arange(w, lengths.options());                                     // [W]
  auto valid = pos.unsqueeze(0).ge((w - lengths).unsqueeze(1));                      // [B, W]
  auto causal = torch::ones({w, w}, torch::kBool).tril();                            // [W, W]
  auto mask = causal.unsqueeze(0).logical_and(valid.unsqueeze(1)).logical_and(valid.unsqueeze(2));
  auto scores = torch::matmul(q, k.transpose(-2, -1));                                // [B, H, W, W]
  if (bias.defined()) scores = scores + bias.unsqueeze(1);
  auto attn = torch::silu(scores) * (mask.unsqueeze(1).to(q.scalar_type()) / n);
  return torch::matmul(attn, v);                                                      // [B, H, W, dv]
}

torch::Tensor jagged_pointwise_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                         const torch::Tensor& bias, const torch::Tensor& lengths, double n) {
  TORCH_CHECK(q.dim() == 4 && k.sizes() == q.sizes() && v.dim() == 4, "q, k, v must be [B, H, W, d]");
  TORCH_CHECK(lengths.dim() == 1 && lengths.size(0) == q.size(0) && lengths.scalar_type() == torch::kInt64,
              "lengths must be [B] int64");
  if (!q.device().is_cpu() || q.scalar_type() != torch::kFloat)
    return padded_pointwise_attention(q, k, v, bias, lengths, n);
  return JaggedPointwise::apply(q, k, v, bias.defined() ? bias : torch::zeros({0}, q.options()),
                                lengths.contiguous(), n);
}

torch::Tensor padded_causal_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                      const torch::Tensor& lengths, double dropout_p, bool training) {
  const int64_t w = q.size(2);
  auto pos = torch::arange(w, lengths.options());                                     // [W]
  auto key_valid = pos.unsqueeze(0).ge((w - lengths).unsqueeze(1));                  // [B, W]
  auto causal = torch::ones({w, w}, torch::kBool).tril();                            // [W, W]
  auto allowed = causal.unsqueeze(0).logical_and(key_valid.unsqueeze(1)).unsqueeze(1);  // [B, 1, W, W]
  auto scores = torch::matmul(q, k.transpose(-2, -1)).masked_fill(allowed.logical_not(), -INFINITY);
  auto probs = torch::softmax(scores, -1).nan_to_num(0.0);                            // padded rows -> 0
  probs = fast_dropout(probs, dropout_p, training);
  return torch::matmul(probs, v) * key_valid.unsqueeze(1).unsqueeze(-1);             // [B, H, W, dh]
}

torch::Tensor jagged_causal_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                      const torch::Tensor& lengths, double dropout_p, bool training) {
  TORCH_CHECK(q.dim() == 4 && k.sizes() == q.sizes() && v.sizes() == q.sizes(), "q, k, v must be [B, H, W, dh]");
  TORCH_CHECK(lengths.dim() == 1 && lengths.size(0) == q.size(0) && lengths.scalar_type() == torch::kInt64,
              "lengths must be [B] int64");
  if (!q.device().is_cpu() || q.scalar_type() != torch::kFloat)
    return padded_causal_attention(q, k, v, lengths, dropout_p, training);
  auto len = lengths.contiguous();
  return JaggedAttention::apply(q, k, v, len, dropout_p, training);
}

}  // namespace seqrec::nn
