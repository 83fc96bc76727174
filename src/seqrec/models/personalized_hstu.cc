// PerSRec's PersonalizedHSTU: inserted user tokens, the segment mask, compress and cached predict.
#include "seqrec/models/personalized_hstu.h"

#include <torch/nn/functional/normalization.h>
#include <torch/torch.h>

#include <cmath>

#include "seqrec/common/error.h"
#include "seqrec/config/config_node.h"
#include "seqrec/nn/attention.h"
#include "seqrec/nn/dropout.h"

namespace seqrec::models {

namespace F = torch::nn::functional;

PersonalizedOptions read_personalized_options(config::ConfigNode node, int64_t max_seq_len) {
  PersonalizedOptions o;
  const std::string p = node.path();
  o.number_of_user_tokens = node.get<int64_t>("number_of_user_tokens", o.number_of_user_tokens);
  o.pretrain_item_num = node.require<int64_t>("pretrain_item_num");
  o.recent_item_num = node.get<int64_t>("recent_item_num", max_seq_len - o.pretrain_item_num);
  const int64_t k = o.number_of_user_tokens, pn = o.pretrain_item_num, rn = o.recent_item_num;
  if (k < 1) throw ConfigError(p + ".number_of_user_tokens", "must be >= 1");
  if (pn < 1) throw ConfigError(p + ".pretrain_item_num", "must be >= 1");
  if (rn < 1) throw ConfigError(p + ".recent_item_num", "must be >= 1");
  if (pn + rn != max_seq_len)
    throw ConfigError(p, "pretrain_item_num + recent_item_num = " + std::to_string(pn + rn) +
                             " must equal data.max_seq_len = " + std::to_string(max_seq_len) + " (the window)");
  o.insert_method = node.get<std::vector<int64_t>>("insert_method", {pn, k});
  const auto& m = o.insert_method;
  const std::string mp = p + ".insert_method";
  if (m.empty() || m.size() % 2 != 0) throw ConfigError(mp, "must be a flat list of (offset, k) pairs");
  int64_t sum = 0;
  for (size_t i = 0; i < m.size(); i += 2) {
    if (m[i] < 1 || (i > 0 && m[i] <= m[i - 2]))
      throw ConfigError(mp, "offsets must be increasing and >= 1, got " + std::to_string(m[i]));
    if (m[i + 1] < 1) throw ConfigError(mp, "every k must be >= 1, got " + std::to_string(m[i + 1]));
    sum += m[i + 1];
  }
  if (sum != k)
    throw ConfigError(mp, "the k sum to " + std::to_string(sum) + ", not number_of_user_tokens = " + std::to_string(k));
  if (m[m.size() - 2] != pn)
    throw ConfigError(mp, "the last offset must be pretrain_item_num = " + std::to_string(pn) +
                              " (the tokens before the recent items are what the cache holds), got " +
                              std::to_string(m[m.size() - 2]));
  o.item_dropout = node.get<double>("item_dropout", o.item_dropout);
  if (o.item_dropout < 0 || o.item_dropout >= 1) throw ConfigError(p + ".item_dropout", "must be in [0, 1)");
  o.predict_with_full_item_seq = node.get<bool>("predict_with_full_item_seq", o.predict_with_full_item_seq);
  o.boundary_target = node.get<std::string>("boundary_target", o.boundary_target);
  if (o.boundary_target != "token" && o.boundary_target != "none")
    throw ConfigError(p + ".boundary_target", "'" + o.boundary_target + "' is not one of: token, none");
  return o;
}

TokenCache TokenCache::rows(const torch::Tensor& users) const {
  auto u = users.to(torch::kCPU, torch::kLong).contiguous();
  auto idx = torch::searchsorted(user_ids, u).clamp_max(std::max<int64_t>(user_ids.size(0) - 1, 0));  // [B]
  auto found = user_ids.size(0) > 0 ? user_ids.index_select(0, idx).eq(u) : torch::zeros_like(u, torch::kBool);
  if (!found.all().item<bool>()) {
    const int64_t missing = u.masked_select(found.logical_not())[0].item<int64_t>();
    throw CheckpointError("token cache: no entry for user " + std::to_string(missing) +
                          " (run seqrec compress for this split and data)");
  }
  TokenCache out;
  auto dev = keys.empty() ? torch::Device(torch::kCPU) : keys[0].device();
  auto idx_dev = idx.to(dev);
  for (size_t l = 0; l < keys.size(); ++l) {
    out.keys.push_back(keys[l].index_select(0, idx_dev));
    out.values.push_back(values[l].index_select(0, idx_dev));
  }
  out.distances = distances.index_select(0, idx);
  out.timestamps = timestamps.index_select(0, idx);
  out.old_hashes = old_hashes.index_select(0, idx);
  out.user_ids = u;
  return out;
}

torch::Tensor old_item_hashes(const torch::Tensor& item_ids, int64_t window, int64_t pretrain_item_num) {
  auto ids = item_ids.to(torch::kCPU, torch::kLong).contiguous();
  const int64_t b = ids.size(0), w = ids.size(1), shift = window - w;
  auto out = torch::empty({b}, torch::kLong);
  const int64_t* p = ids.data_ptr<int64_t>();
  for (int64_t r = 0; r < b; ++r) {
    uint64_t h = 1469598103934665603ULL;  // FNV-1a over (slot, id) of the real old items
    for (int64_t c = 0; c < w && c + shift < pretrain_item_num; ++c) {
      if (p[r * w + c] == 0) continue;
      for (uint64_t v : {static_cast<uint64_t>(c + shift), static_cast<uint64_t>(p[r * w + c])})
        h = (h ^ v) * 1099511628211ULL;
    }
    out[r] = static_cast<int64_t>(h);
  }
  return out;
}

namespace {

torch::Tensor l2(const torch::Tensor& x) { return F::normalize(x, F::NormalizeFuncOptions().dim(-1).eps(1e-6)); }

// Real rows of a left-padded [B, W] layout with the lengths of cu: [B, W] bool.
torch::Tensor valid_rows(const torch::Tensor& cu, int64_t width) {
  auto lengths = cu.narrow(0, 1, cu.size(0) - 1) - cu.narrow(0, 0, cu.size(0) - 1);  // [B]
  return torch::arange(width, torch::kLong).unsqueeze(0).ge((width - lengths).unsqueeze(1));
}

// Packed rows [T, D] -> left-padded [B, W, D] (zeros at the padding).
torch::Tensor pad_rows(const torch::Tensor& x, const torch::Tensor& cu, int64_t width) {
  const int64_t b = cu.size(0) - 1;
  auto rows = valid_rows(cu, width).reshape({-1}).nonzero().squeeze(1).to(x.device());  // [T]
  return torch::zeros({b * width, x.size(1)}, x.options()).index_copy(0, rows, x).view({b, width, x.size(1)});
}

// The segment mask of left-padded inserted sequences (systems.md §6.1): causal, real rows, and an
// item column visible only to rows of its own segment. codes [T] packed -> [B, W, W] bool.
torch::Tensor segment_mask(const torch::Tensor& codes_packed, const torch::Tensor& cu, int64_t width) {
  const int64_t b = cu.size(0) - 1;
  auto valid = valid_rows(cu, width);                                                   // [B, W]
  auto codes = torch::zeros({b * width}, torch::kLong);
  codes.index_copy_(0, valid.reshape({-1}).nonzero().squeeze(1), codes_packed.to(torch::kLong));
  codes = codes.view({b, width});                                                       // [B, W]
  auto own = torch::where(codes.ge(0), codes, -codes - 1);                              // row segment
  auto visible_col = codes.lt(0).unsqueeze(1).logical_or(codes.unsqueeze(1).eq(own.unsqueeze(2)));  // [B, W, W]
  auto causal = torch::ones({width, width}, torch::kBool).tril().unsqueeze(0);
  return visible_col.logical_and(causal).logical_and(valid.unsqueeze(1)).logical_and(valid.unsqueeze(2));
}

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
  for (size_t i = 0; i < pz.insert_method.size(); i += 2) {
    offsets_.push_back(pz.insert_method[i]);
    counts_.push_back(pz.insert_method[i + 1]);
  }
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
  auto ids_t = batch.item_ids.to(torch::kCPU, torch::kLong).contiguous();
  const int64_t b = ids_t.size(0), w = ids_t.size(1);
  const int64_t window = personalized_.pretrain_item_num + personalized_.recent_item_num, shift = window - w;
  TORCH_CHECK(shift >= 0, "a batch wider than the window (", w, " > ", window, ")");
  const bool has_ts = batch.timestamps.defined();
  torch::Tensor ts_t = has_ts ? batch.timestamps.to(torch::kCPU, torch::kLong).contiguous() : torch::Tensor();
  const int64_t* ids = ids_t.data_ptr<int64_t>();
  const int64_t* tsp = has_ts ? ts_t.data_ptr<int64_t>() : nullptr;
  const int64_t segs = static_cast<int64_t>(offsets_.size());
  std::vector<int64_t> source, token, positions, ts, cu{0}, prefix;
  std::vector<int32_t> codes;
  auto push = [&](int64_t src, int64_t tok, int64_t pos, int32_t code, int64_t stamp) {
    source.push_back(src), token.push_back(tok), positions.push_back(pos), codes.push_back(code), ts.push_back(stamp);
  };
  for (int64_t r = 0; r < b; ++r) {
    int64_t before = 0;  // tokens inserted so far
    for (int64_t m = 0; m <= segs; ++m) {
      const int64_t lo = m == 0 ? 0 : offsets_[m - 1], hi = m == segs ? window : offsets_[m];
      const bool items = part == Part::kAll || (part == Part::kPrefix) == (m < segs);
      for (int64_t s = std::max(lo, shift); items && s < hi; ++s) {
        const int64_t c = s - shift;
        if (ids[r * w + c] != 0) push(r * w + c, 0, s + before, static_cast<int32_t>(m), tsp ? tsp[r * w + c] : s + before);
      }
      if (m == segs) break;
      for (int64_t j = 0; part != Part::kRecent && j < counts_[m]; ++j) {
        const int64_t pos = offsets_[m] + before + j;
        // A token's time is the row's before it (0 for none); without timestamps, its position.
        const int64_t stamp = !tsp ? pos : (int64_t(ts.size()) > cu.back() ? ts.back() : 0);
        push(-1, before + j, pos, static_cast<int32_t>(-(m + 1)), stamp);
      }
      before += counts_[m];
    }
    prefix.push_back(0);
    for (int64_t i = cu.back(); i < static_cast<int64_t>(codes.size()); ++i) prefix.back() += codes[i] < segs;
    cu.push_back(static_cast<int64_t>(source.size()));
  }
  Layout out;
  auto i64 = [](const std::vector<int64_t>& v) { return torch::tensor(v, torch::kLong); };
  out.source = i64(source);
  out.token = i64(token);
  out.positions = i64(positions);
  out.segments = torch::tensor(codes, torch::kInt);
  out.cu_seqlens = i64(cu);
  out.prefix = i64(prefix);
  for (int64_t r = 0; r < b; ++r) out.width = std::max(out.width, cu[r + 1] - cu[r]);
  if (!hstu_.time_bias) return out;
  // Timestamps [B, Wc], left-padded, and each row's "next" one: the next row's; a token's own (so
  // that the prefix depends on the prefix alone); the last row's, the target's.
  const int64_t wc = std::max<int64_t>(out.width, 1);
  out.timestamps = torch::zeros({b, wc}, torch::kLong);
  out.next_timestamps = torch::zeros({b, wc}, torch::kLong);
  auto* tp = out.timestamps.data_ptr<int64_t>();
  auto* np = out.next_timestamps.data_ptr<int64_t>();
  const bool eval_target = batch.target_timestamps.defined() && batch.target_timestamps.dim() == 1;
  const bool train_target = batch.target_timestamps.defined() && batch.target_timestamps.dim() == 2;
  auto target_ts = batch.target_timestamps.defined() ? batch.target_timestamps.to(torch::kCPU, torch::kLong).contiguous()
                                                     : torch::Tensor();
  for (int64_t r = 0; r < b; ++r) {
    const int64_t l = cu[r + 1] - cu[r], pad = wc - l;
    for (int64_t i = 0; i < l; ++i) {
      const int64_t t = cu[r] + i;
      tp[r * wc + pad + i] = ts[t];
      int64_t next = i + 1 < l ? ts[t + 1] : (tsp ? ts[t] : ts[t] + 1);
      if (source[t] < 0) next = ts[t];
      else if (i + 1 == l && eval_target) next = target_ts[r].item<int64_t>();
      else if (i + 1 == l && train_target) next = target_ts.view({-1})[source[t]].item<int64_t>();
      np[r * wc + pad + i] = next;
    }
  }
  return out;
}

torch::Tensor PersonalizedHstuImpl::embed(const data::SequenceBatch& batch, const Layout& lay) {
  const auto dev = item_embedding->weight.device();
  auto source = lay.source.to(dev);
  auto is_token = source.lt(0).unsqueeze(1);                                             // [T, 1]
  auto items = item_embedding(batch.item_ids.reshape({-1}).to(dev).index_select(0, source.clamp_min(0)));  // [T, D]
  auto tokens = user_tokens[0].index_select(0, lay.token.to(dev));                       // [T, D]
  auto e = torch::where(is_token, tokens, items);                                        // [T, D]
  auto pos = position_embedding(lay.positions.to(dev));                                  // [T, D]
  if (hstu_.variant != "gr") return e + pos;  // HLLM IDNet: no scaling, no input dropout
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
  const bool packed = hstu_.jagged_attention && x.device().is_cpu() && x.scalar_type() == torch::kFloat;
  const RelativeBiasImpl::Indices idx = bias_indices(lay);  // shared by all layers
  for (size_t i = 0; i < blocks->size(); ++i) {
    const nn::RelativeBiasTables tables = bias_tables(i, idx);
    auto* block = blocks[i]->as<HstuBlock>();
    if (packed) {
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
  // Every sequence's prefix holds its K tokens: their packed rows, [B * K], in order.
  auto token_rows = lay.source.lt(0).nonzero().squeeze(1);                               // [B * K]
  if (!packed(x)) {
    cache = compress_dense(batch, lay);
  } else {
    const RelativeBiasImpl::Indices idx = bias_indices(lay);
    auto rows = token_rows.to(x.device());
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
  // Each token's row within its sequence, and the rows from it to the first recent row (the
  // prefix's length) for the position bias.
  auto starts = lay.cu_seqlens.narrow(0, 0, b), lengths = lay.cu_seqlens.narrow(0, 1, b) - starts;  // [B]
  auto local = token_rows.view({b, k}) - starts.unsqueeze(1);                            // [B, K]
  cache.distances = lengths.unsqueeze(1) - local;                                        // [B, K]
  if (lay.timestamps.defined()) cache.timestamps = lay.timestamps.gather(1, local + (lay.width - lengths).unsqueeze(1));
  else cache.timestamps = torch::zeros({b, k}, torch::kLong);
  cache.old_hashes = old_item_hashes(batch.item_ids, personalized_.pretrain_item_num + personalized_.recent_item_num,
                                     personalized_.pretrain_item_num);
  cache.user_ids = batch.user_ids.to(torch::kCPU, torch::kLong).clone();
  return cache;
}

torch::Tensor PersonalizedHstuImpl::predict(const data::SequenceBatch& batch, const TokenCache& cache) {
  TORCH_CHECK(!is_training(), "predict is for inference");
  torch::NoGradGuard no_grad;
  const int64_t window = personalized_.pretrain_item_num + personalized_.recent_item_num;
  auto hashes = old_item_hashes(batch.item_ids, window, personalized_.pretrain_item_num);
  auto differs = hashes.ne(cache.old_hashes);
  if (differs.any().item<bool>())
    throw CheckpointError("token cache: the old items of user " +
                          std::to_string(cache.user_ids.masked_select(differs)[0].item<int64_t>()) +
                          " differ from those it was compressed from (compress again for this split and data)");
  const Layout lay = layout(batch, Part::kRecent);
  const int64_t b = batch.item_ids.size(0), k = personalized_.number_of_user_tokens;
  // The packed kernel sees the tokens as K leading rows, so its relative positions are right when
  // token j sits K - j rows before the first recent row (one insertion) or when there are none.
  const bool leading = !hstu_.position_bias ||
                       torch::equal(cache.distances, (k - torch::arange(k, torch::kLong)).unsqueeze(0).expand({b, k}));
  auto x = embed(batch, lay);                                                            // [T, D]
  if (!packed(x) || !leading) return predict_dense(batch, cache, lay);
  auto lengths = lay.cu_seqlens.narrow(0, 1, b) - lay.cu_seqlens.narrow(0, 0, b);      // [B] recent rows
  auto cu = torch::cat({torch::zeros({1}, torch::kLong), (lengths + k).cumsum(0)});      // with the K token rows
  const int64_t width = lay.width + k;
  RelativeBiasImpl::Indices idx;
  if (lay.timestamps.defined()) {
    // [tokens | recent] per sequence, left-padded; a token's next time is its own (as in layout()).
    auto ts = torch::zeros({b, width}, torch::kLong), next = torch::zeros({b, width}, torch::kLong);
    ts.narrow(1, k, lay.width).copy_(lay.timestamps);
    next.narrow(1, k, lay.width).copy_(lay.next_timestamps);
    for (int64_t r = 0; r < b; ++r) {
      const int64_t l = lengths[r].item<int64_t>(), at = lay.width - l;  // the tokens go right before the items
      ts[r].narrow(0, at, k).copy_(cache.timestamps[r]);
      next[r].narrow(0, at, k).copy_(cache.timestamps[r]);
      if (at > 0) ts[r].narrow(0, 0, at).zero_(), next[r].narrow(0, 0, at).zero_();
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

TokenCache PersonalizedHstuImpl::compress_dense(const data::SequenceBatch& batch, const Layout& lay) {
  const int64_t b = batch.item_ids.size(0), wc = lay.width, k = personalized_.number_of_user_tokens;
  auto xp = pad_rows(embed(batch, lay), lay.cu_seqlens, wc);                             // [B, Wc, D]
  const auto dev = xp.device();
  auto valid = valid_rows(lay.cu_seqlens, wc);
  auto keep = valid.unsqueeze(-1).to(dev, xp.scalar_type());
  auto mask = segment_mask(lay.segments, lay.cu_seqlens, wc).to(dev);
  // Padded index of every token row: [B, K] (the prefix holds all K tokens of every row).
  auto token_rows = valid.reshape({-1}).nonzero().squeeze(1).index_select(0, lay.source.lt(0).nonzero().squeeze(1));
  token_rows = (token_rows - torch::arange(b, torch::kLong).repeat_interleave(k) * wc).view({b, k});  // [B, K]
  TokenCache cache;
  const RelativeBiasImpl::Indices idx = bias_indices(lay);
  for (size_t i = 0; i < blocks->size(); ++i) {
    auto tables = bias_tables(i, idx);
    auto bias = tables.empty() ? torch::Tensor() : nn::materialize_bias(tables, b, wc);
    auto* block = blocks[i]->as<HstuBlock>();
    xp = block->forward_with(xp, keep, [&](const torch::Tensor& q, const torch::Tensor& kk, const torch::Tensor& v) {
      auto rows = token_rows.to(dev).view({b, 1, k, 1});
      cache.keys.push_back(kk.gather(2, rows.expand({b, kk.size(1), k, kk.size(3)})).contiguous());  // [B, H, K, dqk]
      cache.values.push_back(v.gather(2, rows.expand({b, v.size(1), k, v.size(3)})).contiguous());   // [B, H, K, dv]
      return dense_pointwise(q, kk, v, bias, mask, block->attention_norm());
    });
  }
  return cache;
}

torch::Tensor PersonalizedHstuImpl::predict_dense(const data::SequenceBatch& batch, const TokenCache& cache,
                                                  const Layout& lay) {
  const int64_t b = batch.item_ids.size(0), wr = lay.width, k = personalized_.number_of_user_tokens;
  auto xp = pad_rows(embed(batch, lay), lay.cu_seqlens, wr);                             // [B, Wr, D]
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
