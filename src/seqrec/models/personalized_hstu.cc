// PerSRec's PersonalizedHSTU: inserted user tokens, the segment mask, compress and cached predict.
#include "seqrec/models/personalized_hstu.h"

#include <torch/nn/functional/normalization.h>
#include <torch/torch.h>

#include <cmath>

#include "seqrec/common/error.h"
#include "seqrec/nn/attention.h"
#include "seqrec/nn/dropout.h"

namespace seqrec::models {

namespace F = torch::nn::functional;

namespace {

torch::Tensor l2(const torch::Tensor& x) { return F::normalize(x, F::NormalizeFuncOptions().dim(-1).eps(1e-6)); }

// SiLU(q k^T + bias) / n * mask, times v: the dense pointwise attention with an explicit mask.
// q [B, H, Q, dqk], k [B, H, J, dqk], v [B, H, J, dv], bias [B, Q, J] (or undefined), mask [B, Q, J].
torch::Tensor dense_pointwise(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                              const torch::Tensor& bias, const torch::Tensor& mask, double n) {
  auto scores = torch::matmul(q, k.transpose(-2, -1));                                  // [B, H, Q, J]
  if (bias.defined()) scores = scores + bias.unsqueeze(1);
  return torch::matmul(torch::silu(scores) * (mask.unsqueeze(1).to(q.scalar_type()) / n), v);  // [B, H, Q, dv]
}

}  // namespace

PersonalizedHstuImpl::PersonalizedHstuImpl(const HstuOptions& hstu, const PersonalizedOptions& personalized)
    : hstu_(hstu), personalized_(personalized) {
  const auto& pz = personalized_;
  // The blocks see the inserted sequence: N = P + K + R + output_slots.
  hstu_.max_seq_len = pz.pretrain_item_num + pz.number_of_user_tokens + pz.recent_item_num;
  HstuModules m = register_hstu_modules(*this, hstu_);
  item_embedding = m.item_embedding;
  position_embedding = m.position_embedding;
  blocks = m.blocks;
  relative_biases = m.relative_biases;
  const auto& o = hstu_;
  user_tokens = register_parameter("user_tokens", torch::empty({1, pz.number_of_user_tokens, o.hidden_dim}));
  torch::NoGradGuard no_grad;
  trunc_normal(user_tokens, 0.02);  // PerSRec's reset_params re-draws it trunc-normal(0.02)
  batch_layout_.recent_item_num = pz.recent_item_num;
  batch_layout_.boundary_target = pz.boundary_target == "token" ? o.num_items + 1 : 0;
  batch_layout_.recent_item_dropout = pz.item_dropout;
}

PersonalizedHstuImpl::Layout PersonalizedHstuImpl::layout(const data::SequenceBatch& batch, Part part) const {
  return insert_user_tokens(batch, personalized_, part, hstu_.time_bias);
}

torch::Tensor PersonalizedHstuImpl::embed(const data::SequenceBatch& batch, const Layout& lay) {
  const auto dev = item_embedding->weight.device();
  auto source = lay.source.to(dev);
  auto is_token = source.lt(0).unsqueeze(1);                                             // [T, 1]
  auto items = item_embedding(batch.item_ids.reshape({-1}).to(dev).index_select(0, source.clamp_min(0)));  // [T, D]
  auto tokens = user_tokens[0].index_select(0, lay.token.to(dev));                       // [T, D]
  auto e = torch::where(is_token, tokens, items);                                        // [T, D]
  auto pos = position_embedding(lay.positions.to(dev));                                  // [T, D]
  if (hstu_.variant != HstuVariant::kGr) return e + pos;  // HLLM IDNet: no scaling, no input dropout
  return nn::fast_dropout(e * std::sqrt(double(hstu_.hidden_dim)) + pos, hstu_.dropout, is_training());
}

RelativeBiasImpl::Indices PersonalizedHstuImpl::bias_indices(const Layout& lay) const {
  RelativeBiasImpl::Indices idx;  // positions come from the kernels' row differences
  if (relative_biases && lay.timestamps.defined())
    idx.time = time_bucket_matrix(lay.timestamps, lay.next_timestamps).to(item_embedding->weight.device());
  return idx;
}

nn::RelativeBiasTables PersonalizedHstuImpl::bias_tables(size_t block, const RelativeBiasImpl::Indices& idx) {
  if (!relative_biases) return {};
  return relative_biases[block]->as<RelativeBias>()->tables(idx);
}

torch::Tensor PersonalizedHstuImpl::encode(const data::SequenceBatch& batch) {
  TORCH_CHECK(batch.item_ids.dim() == 2, "item_ids must be [B, W]");
  const bool last_only = batch.last_only && !is_training();
  const bool full = is_training() || personalized_.predict_with_full_item_seq;
  if (last_only && full && token_cache_) return predict(batch, token_cache_->rows(batch.user_ids));
  const Layout lay = layout(batch, full ? Part::kAll : Part::kRecent);
  auto x = embed(batch, lay);                                                            // [T, D]
  const bool on_packed_rows = packed(x);
  const RelativeBiasImpl::Indices idx = bias_indices(lay);  // shared by all layers
  for (size_t i = 0; i < blocks->size(); ++i) {
    const nn::RelativeBiasTables tables = bias_tables(i, idx);
    auto* block = blocks[i]->as<HstuBlock>();
    if (on_packed_rows) {
      HstuPackedExtras extras;
      extras.segments = lay.segments;
      x = block->forward_packed(x, tables, lay.cu_seqlens, lay.width, extras);            // [T, D]
      continue;
    }
    // Other devices: the same computation on the left-padded layout with a dense mask.
    auto xp = pad_rows(x, lay.cu_seqlens, lay.width);                                    // [B, Wc, D]
    auto valid = valid_rows(lay.cu_seqlens, lay.width).to(x.device());
    auto mask = segment_mask(lay.segments, lay.cu_seqlens, lay.width).to(x.device());
    auto bias = tables.empty() ? torch::Tensor() : nn::materialize_bias(tables, xp.size(0), lay.width);
    xp = block->forward_with(xp, valid.unsqueeze(-1).to(xp.scalar_type()),
                             [&](const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v) {
                               return dense_pointwise(q, k, v, bias, mask, block->attention_norm());
                             });
    x = xp.reshape({-1, xp.size(-1)}).index_select(0, valid.reshape({-1}).nonzero().squeeze(1));  // [T, D]
  }
  x = l2(x);
  const int64_t b = batch.item_ids.size(0), w = batch.item_ids.size(1);
  if (last_only) return x.index_select(0, (lay.cu_seqlens.narrow(0, 1, b) - 1).to(x.device())).unsqueeze(1);  // [B, 1, D]
  auto is_item = lay.source.ge(0).nonzero().squeeze(1);                                  // item rows
  auto out = torch::zeros({b * w, x.size(1)}, x.options());
  out.index_copy_(0, lay.source.index_select(0, is_item).to(x.device()), x.index_select(0, is_item.to(x.device())));
  return out.view({b, w, x.size(1)});                                                    // [B, W, D]
}

bool PersonalizedHstuImpl::packed(const torch::Tensor& x) const {
  return hstu_.jagged_attention && x.device().is_cpu() && x.scalar_type() == torch::kFloat;
}

TokenCache PersonalizedHstuImpl::compress(const data::SequenceBatch& batch) {
  TORCH_CHECK(!is_training(), "compress is for inference");
  torch::NoGradGuard no_grad;
  const Layout lay = layout(batch, Part::kPrefix);
  const int64_t b = batch.item_ids.size(0), k = personalized_.number_of_user_tokens;
  auto x = embed(batch, lay);                                                            // [T, D]
  TokenCache cache;
  if (!packed(x)) {
    cache = compress_dense(lay, x);
  } else {
    const RelativeBiasImpl::Indices idx = bias_indices(lay);
    // Every sequence's prefix holds its K tokens: their packed rows, [B * K], in order.
    auto rows = lay.source.lt(0).nonzero().squeeze(1).to(x.device());
    for (size_t i = 0; i < blocks->size(); ++i) {
      torch::Tensor keys, values;
      HstuPackedExtras extras;
      extras.segments = lay.segments;
      extras.keys_out = &keys;
      extras.values_out = &values;
      x = blocks[i]->as<HstuBlock>()->forward_packed(x, bias_tables(i, idx), lay.cu_seqlens, lay.width, extras);
      auto to_bhkd = [&](const torch::Tensor& t) {                                      // [T, H, d] -> [B, H, K, d]
        return t.index_select(0, rows).view({b, k, t.size(1), t.size(2)}).permute({0, 2, 1, 3}).contiguous();
      };
      cache.keys.push_back(to_bhkd(keys));
      cache.values.push_back(to_bhkd(values));
    }
  }
  finish_token_cache(&cache, lay, batch, personalized_);
  return cache;
}

torch::Tensor PersonalizedHstuImpl::predict(const data::SequenceBatch& batch, const TokenCache& cache) {
  TORCH_CHECK(!is_training(), "predict is for inference");
  torch::NoGradGuard no_grad;
  check_old_items(batch, cache, personalized_);
  const Layout lay = layout(batch, Part::kRecent);
  const int64_t b = batch.item_ids.size(0), k = personalized_.number_of_user_tokens;
  // The packed kernel sees the tokens as K leading rows, so its relative positions are right when
  // token j sits K - j rows before the first recent row (one insertion) or when there are none.
  const bool leading = !hstu_.position_bias ||
                       torch::equal(cache.distances, (k - torch::arange(k, torch::kLong)).unsqueeze(0).expand({b, k}));
  auto x = embed(batch, lay);                                                            // [T, D]
  if (!packed(x) || !leading) return predict_dense(cache, lay, x);
  auto lengths = lay.cu_seqlens.narrow(0, 1, b) - lay.cu_seqlens.narrow(0, 0, b);      // [B] recent rows
  auto cu = torch::cat({torch::zeros({1}, torch::kLong), (lengths + k).cumsum(0)});      // with the K token rows
  const int64_t width = lay.width + k;
  RelativeBiasImpl::Indices idx;
  if (lay.timestamps.defined()) {
    // [tokens | recent] per sequence, left-padded; a token's next time is its own (as in layout()).
    auto ts = torch::zeros({b, width}, torch::kLong), next = torch::zeros({b, width}, torch::kLong);
    for (int64_t r = 0; r < b; ++r) {
      const int64_t l = lengths[r].item<int64_t>(), at = lay.width - l;  // the tokens go right before the items
      ts[r].narrow(0, at, k).copy_(cache.timestamps[r]);
      next[r].narrow(0, at, k).copy_(cache.timestamps[r]);
      ts[r].narrow(0, at + k, l).copy_(lay.timestamps[r].narrow(0, lay.width - l, l));
      next[r].narrow(0, at + k, l).copy_(lay.next_timestamps[r].narrow(0, lay.width - l, l));
    }
    idx.time = time_bucket_matrix(ts, next).to(x.device());
  }
  for (size_t i = 0; i < blocks->size(); ++i) {
    HstuPackedExtras extras;
    extras.prefix_keys = cache.keys[i];
    extras.prefix_values = cache.values[i];
    x = blocks[i]->as<HstuBlock>()->forward_packed(x, bias_tables(i, idx), cu, width, extras);  // [T, D]
  }
  return l2(x.index_select(0, (lay.cu_seqlens.narrow(0, 1, b) - 1).to(x.device()))).unsqueeze(1);  // [B, 1, D]
}

TokenCache PersonalizedHstuImpl::compress_dense(const Layout& lay, const torch::Tensor& x) {
  const int64_t b = lay.cu_seqlens.size(0) - 1, wc = lay.width, k = personalized_.number_of_user_tokens;
  auto xp = pad_rows(x, lay.cu_seqlens, wc);                             // [B, Wc, D]
  const auto dev = xp.device();
  auto valid = valid_rows(lay.cu_seqlens, wc);
  auto keep = valid.unsqueeze(-1).to(dev, xp.scalar_type());
  auto mask = segment_mask(lay.segments, lay.cu_seqlens, wc).to(dev);
  // Padded index of every token row: [B, K] (the prefix holds all K tokens of every row).
  auto lengths = lay.cu_seqlens.narrow(0, 1, b) - lay.cu_seqlens.narrow(0, 0, b);
  auto padded_rows = token_rows(lay, k) + (wc - lengths).unsqueeze(1);                   // [B, K]
  TokenCache cache;
  const RelativeBiasImpl::Indices idx = bias_indices(lay);
  for (size_t i = 0; i < blocks->size(); ++i) {
    auto tables = bias_tables(i, idx);
    auto bias = tables.empty() ? torch::Tensor() : nn::materialize_bias(tables, b, wc);
    auto* block = blocks[i]->as<HstuBlock>();
    xp = block->forward_with(xp, keep, [&](const torch::Tensor& q, const torch::Tensor& kk, const torch::Tensor& v) {
      auto rows = padded_rows.to(dev).view({b, 1, k, 1});
      cache.keys.push_back(kk.gather(2, rows.expand({b, kk.size(1), k, kk.size(3)})).contiguous());  // [B, H, K, dqk]
      cache.values.push_back(v.gather(2, rows.expand({b, v.size(1), k, v.size(3)})).contiguous());   // [B, H, K, dv]
      return dense_pointwise(q, kk, v, bias, mask, block->attention_norm());
    });
  }
  return cache;
}

torch::Tensor PersonalizedHstuImpl::predict_dense(const TokenCache& cache, const Layout& lay, const torch::Tensor& x) {
  const int64_t b = lay.cu_seqlens.size(0) - 1, wr = lay.width, k = personalized_.number_of_user_tokens;
  auto xp = pad_rows(x, lay.cu_seqlens, wr);                             // [B, Wr, D]
  const auto dev = xp.device();
  auto valid = valid_rows(lay.cu_seqlens, wr);                                            // [B, Wr]
  // Keys are [K tokens | Wr recent]. Tokens: seen by every real row; recent: causal.
  auto recent_mask = segment_mask(lay.segments, lay.cu_seqlens, wr);                     // [B, Wr, Wr]
  auto mask = torch::cat({valid.unsqueeze(2).expand({b, wr, k}), recent_mask}, 2).to(dev);  // [B, Wr, K+Wr]
  // Relative positions j - i in compact rows: token k sits distances[k] rows before the first
  // recent row; real recent row t is t rows after it.
  auto t_idx = torch::arange(wr, torch::kLong).unsqueeze(0) -
               (wr - (lay.cu_seqlens.narrow(0, 1, b) - lay.cu_seqlens.narrow(0, 0, b))).unsqueeze(1);  // [B, Wr]
  auto rel_tok = -(cache.distances.unsqueeze(1) + t_idx.unsqueeze(2));                   // [B, Wr, K]
  auto col = torch::arange(wr, torch::kLong);
  auto rel_rec = (col.unsqueeze(0) - col.unsqueeze(1)).unsqueeze(0).expand({b, wr, wr});  // [B, Wr, Wr]
  auto rel = torch::cat({rel_tok, rel_rec}, 2);                                          // [B, Wr, K+Wr]
  torch::Tensor buckets;
  if (lay.timestamps.defined()) {
    auto tok = time_buckets(lay.next_timestamps.unsqueeze(2) - cache.timestamps.unsqueeze(1));  // [B, Wr, K]
    auto rec = time_bucket_matrix(lay.timestamps, lay.next_timestamps).to(torch::kLong);        // [B, Wr, Wr]
    buckets = torch::cat({tok, rec}, 2).to(dev);                                               // [B, Wr, K+Wr]
  }
  const int64_t last = static_cast<int64_t>(blocks->size()) - 1;
  for (int64_t i = 0; i <= last; ++i) {
    torch::Tensor bias;
    if (relative_biases) {
      auto* rb = relative_biases[i]->as<RelativeBias>();
      auto t = rb->tables({});
      if (t.position_weights.defined())
        bias = t.position_weights.index_select(0, (rel + t.position_origin).reshape({-1}).to(dev)).view(rel.sizes());
      if (buckets.defined()) {
        auto tb = t.time_weights.index_select(0, buckets.reshape({-1})).view(buckets.sizes());
        bias = bias.defined() ? bias + tb : tb;
      }
    }
    auto* block = blocks[i]->as<HstuBlock>();
    const bool last_only = i == last;
    xp = block->forward_with(
        xp, valid.unsqueeze(-1).to(dev, xp.scalar_type()),
        [&](const torch::Tensor& q, const torch::Tensor& kk, const torch::Tensor& v) {
          const int64_t nq = q.size(2);
          auto keys = torch::cat({cache.keys[i], kk}, 2), vals = torch::cat({cache.values[i], v}, 2);
          auto rows_bias = bias.defined() ? bias.narrow(1, wr - nq, nq) : bias;
          return dense_pointwise(q, keys, vals, rows_bias, mask.narrow(1, wr - nq, nq), block->attention_norm());
        },
        last_only);
  }
  return l2(xp);                                                                         // [B, 1, D]
}

torch::Tensor PersonalizedHstuImpl::item_embeddings(const torch::Tensor& item_ids) {
  const int64_t v = hstu_.num_items;
  auto table = torch::cat({item_embedding->weight, user_tokens[0]}, 0);                  // [V+1+K, D]
  TORCH_CHECK(item_ids.numel() == 0 || item_ids.max().item<int64_t>() <= v + personalized_.number_of_user_tokens,
              "item id out of range");
  return l2(F::embedding(item_ids, table));
}

torch::Tensor PersonalizedHstuImpl::all_item_embeddings() { return l2(item_embedding->weight); }

}  // namespace seqrec::models
