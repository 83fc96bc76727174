// PerSRec's user tokens (see user_tokens.h).
#include "seqrec/models/user_tokens.h"

#include <torch/torch.h>

#include <algorithm>

#include "seqrec/common/error.h"
#include "seqrec/config/config_node.h"
#include "seqrec/nn/llama_block.h"

namespace seqrec::models {

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

void check_old_items(const data::SequenceBatch& batch, const TokenCache& cache, const PersonalizedOptions& options) {
  auto hashes = old_item_hashes(batch.item_ids, options.pretrain_item_num + options.recent_item_num,
                                options.pretrain_item_num);
  auto differs = hashes.ne(cache.old_hashes);
  if (differs.any().item<bool>())
    throw CheckpointError("token cache: the old items of user " +
                          std::to_string(cache.user_ids.masked_select(differs)[0].item<int64_t>()) +
                          " differ from those it was compressed from (compress again for this split and data)");
}

InsertedLayout insert_user_tokens(const data::SequenceBatch& batch, const PersonalizedOptions& options, InsertedPart part,
                                  bool with_times) {
  std::vector<int64_t> offsets, counts;
  for (size_t i = 0; i < options.insert_method.size(); i += 2) {
    offsets.push_back(options.insert_method[i]);
    counts.push_back(options.insert_method[i + 1]);
  }
  auto ids_t = batch.item_ids.to(torch::kCPU, torch::kLong).contiguous();
  const int64_t b = ids_t.size(0), w = ids_t.size(1);
  const int64_t window = options.pretrain_item_num + options.recent_item_num, shift = window - w;
  TORCH_CHECK(shift >= 0, "a batch wider than the window (", w, " > ", window, ")");
  const bool has_ts = batch.timestamps.defined();
  torch::Tensor ts_t = has_ts ? batch.timestamps.to(torch::kCPU, torch::kLong).contiguous() : torch::Tensor();
  const int64_t* ids = ids_t.data_ptr<int64_t>();
  const int64_t* tsp = has_ts ? ts_t.data_ptr<int64_t>() : nullptr;
  const int64_t segs = static_cast<int64_t>(offsets.size());
  std::vector<int64_t> source, token, positions, ts, cu{0}, prefix;
  std::vector<int32_t> codes;
  auto push = [&](int64_t src, int64_t tok, int64_t pos, int32_t code, int64_t stamp) {
    source.push_back(src), token.push_back(tok), positions.push_back(pos), codes.push_back(code), ts.push_back(stamp);
  };
  for (int64_t r = 0; r < b; ++r) {
    int64_t before = 0;  // tokens inserted so far
    for (int64_t m = 0; m <= segs; ++m) {
      const int64_t lo = m == 0 ? 0 : offsets[m - 1], hi = m == segs ? window : offsets[m];
      const bool items = part == InsertedPart::kAll || (part == InsertedPart::kPrefix) == (m < segs);
      for (int64_t s = std::max(lo, shift); items && s < hi; ++s) {
        const int64_t c = s - shift;
        if (ids[r * w + c] != 0) push(r * w + c, 0, s + before, static_cast<int32_t>(m), tsp ? tsp[r * w + c] : s + before);
      }
      if (m == segs) break;
      for (int64_t j = 0; part != InsertedPart::kRecent && j < counts[m]; ++j) {
        const int64_t pos = offsets[m] + before + j;
        // A token's time is the row's before it (0 for none); without timestamps, its position.
        const int64_t stamp = !tsp ? pos : (int64_t(ts.size()) > cu.back() ? ts.back() : 0);
        push(-1, before + j, pos, static_cast<int32_t>(-(m + 1)), stamp);
      }
      before += counts[m];
    }
    prefix.push_back(0);
    for (int64_t i = cu.back(); i < static_cast<int64_t>(codes.size()); ++i) prefix.back() += codes[i] < segs;
    cu.push_back(static_cast<int64_t>(source.size()));
  }
  InsertedLayout out;
  auto i64 = [](const std::vector<int64_t>& v) { return torch::tensor(v, torch::kLong); };
  out.source = i64(source);
  out.token = i64(token);
  out.positions = i64(positions);
  out.segments = torch::tensor(codes, torch::kInt);
  out.cu_seqlens = i64(cu);
  out.prefix = i64(prefix);
  for (int64_t r = 0; r < b; ++r) out.width = std::max(out.width, cu[r + 1] - cu[r]);
  if (!with_times) return out;
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
  const int64_t* target = target_ts.defined() ? target_ts.data_ptr<int64_t>() : nullptr;  // [B] or [B * W]
  for (int64_t r = 0; r < b; ++r) {
    const int64_t l = cu[r + 1] - cu[r], pad = wc - l;
    for (int64_t i = 0; i < l; ++i) {
      const int64_t t = cu[r] + i;
      tp[r * wc + pad + i] = ts[t];
      int64_t next = i + 1 < l ? ts[t + 1] : (tsp ? ts[t] : ts[t] + 1);
      if (source[t] < 0) next = ts[t];
      else if (i + 1 == l && eval_target) next = target[r];
      else if (i + 1 == l && train_target) next = target[source[t]];
      np[r * wc + pad + i] = next;
    }
  }
  return out;
}

torch::Tensor valid_rows(const torch::Tensor& cu, int64_t width) {
  auto lengths = cu.narrow(0, 1, cu.size(0) - 1) - cu.narrow(0, 0, cu.size(0) - 1);  // [B]
  return torch::arange(width, torch::kLong).unsqueeze(0).ge((width - lengths).unsqueeze(1));
}

torch::Tensor pad_rows(const torch::Tensor& x, const torch::Tensor& cu, int64_t width) {
  const int64_t b = cu.size(0) - 1;
  auto rows = valid_rows(cu, width).reshape({-1}).nonzero().squeeze(1).to(x.device());  // [T]
  return torch::zeros({b * width, x.size(1)}, x.options()).index_copy(0, rows, x).view({b, width, x.size(1)});
}

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

torch::Tensor token_rows(const InsertedLayout& prefix, int64_t k) {
  const int64_t b = prefix.cu_seqlens.size(0) - 1;
  auto packed = prefix.source.lt(0).nonzero().squeeze(1);                                  // [B * K]
  return packed.view({b, k}) - prefix.cu_seqlens.narrow(0, 0, b).unsqueeze(1);             // [B, K]
}

void finish_token_cache(TokenCache* cache, const InsertedLayout& prefix, const data::SequenceBatch& batch,
                        const PersonalizedOptions& options) {
  const int64_t b = prefix.cu_seqlens.size(0) - 1, k = options.number_of_user_tokens;
  auto lengths = prefix.cu_seqlens.narrow(0, 1, b) - prefix.cu_seqlens.narrow(0, 0, b);  // [B] prefix rows
  auto local = token_rows(prefix, k);                                                      // [B, K]
  cache->distances = lengths.unsqueeze(1) - local;                                         // to the first recent row
  cache->timestamps = prefix.timestamps.defined()
                          ? prefix.timestamps.gather(1, local + (prefix.width - lengths).unsqueeze(1))
                          : torch::zeros({b, k}, torch::kLong);
  cache->old_hashes = old_item_hashes(batch.item_ids, options.pretrain_item_num + options.recent_item_num,
                                      options.pretrain_item_num);
  cache->user_ids = batch.user_ids.to(torch::kCPU, torch::kLong).clone();
}

torch::Tensor additive_mask(torch::Tensor allowed, int64_t past) {
  const int64_t t = allowed.size(1);
  auto diag = torch::zeros({t, allowed.size(2)}, torch::kBool);
  diag.narrow(1, past, t).fill_diagonal_(true);
  allowed = allowed.logical_or(allowed.any(2, true).logical_not().logical_and(diag.unsqueeze(0)));
  return torch::zeros(allowed.sizes(), torch::kFloat).masked_fill_(allowed.logical_not(), -INFINITY).unsqueeze(1);
}

std::pair<torch::Tensor, torch::Tensor> inserted_inputs(const InsertedLayout& lay, const torch::Tensor& inputs,
                                                        const torch::Tensor& tokens) {
  const auto dev = inputs.device();
  const int64_t d = inputs.size(-1), b = lay.cu_seqlens.size(0) - 1;
  auto source = lay.source.to(dev);
  auto items = inputs.reshape({-1, d}).index_select(0, source.clamp_min(0));            // [T, D]
  auto toks = tokens.index_select(0, lay.token.to(tokens.device())).to(dev);            // [T, D]
  auto x = torch::where(source.lt(0).unsqueeze(1), toks, items);                        // [T, D]
  auto rows = valid_rows(lay.cu_seqlens, lay.width).reshape({-1}).nonzero().squeeze(1);  // [T]
  auto positions = torch::zeros({b * lay.width}, torch::kLong).index_copy(0, rows, lay.positions).view({b, lay.width});
  return {pad_rows(x, lay.cu_seqlens, lay.width), positions.to(dev)};
}

torch::Tensor outputs_at_items(const torch::Tensor& hidden, const InsertedLayout& lay, int64_t b, int64_t w,
                               bool last_only) {
  const int64_t d = hidden.size(-1);
  auto rows = valid_rows(lay.cu_seqlens, lay.width).reshape({-1}).nonzero().squeeze(1).to(hidden.device());
  auto packed = hidden.reshape({-1, d}).index_select(0, rows);                           // [T, D]
  if (last_only) return packed.index_select(0, (lay.cu_seqlens.narrow(0, 1, b) - 1).to(packed.device())).unsqueeze(1);
  auto is_item = lay.source.ge(0).nonzero().squeeze(1);
  auto out = torch::zeros({b * w, d}, packed.options());
  out.index_copy_(0, lay.source.index_select(0, is_item).to(out.device()), packed.index_select(0, is_item.to(out.device())));
  return out.view({b, w, d});
}

TokenCache token_cache_from_layers(const std::vector<nn::KvCache>& layers, const InsertedLayout& prefix,
                                   const data::SequenceBatch& batch, const PersonalizedOptions& options) {
  const int64_t k = options.number_of_user_tokens;
  TokenCache cache;
  const int64_t b = prefix.cu_seqlens.size(0) - 1;
  auto lengths = prefix.cu_seqlens.narrow(0, 1, b) - prefix.cu_seqlens.narrow(0, 0, b);
  auto rows = (token_rows(prefix, k) + (prefix.width - lengths).unsqueeze(1)).view({b, 1, k, 1});  // padded rows
  for (const auto& layer : layers) {
    if (rows.device() != layer.k.device()) rows = rows.to(layer.k.device());
    cache.keys.push_back(layer.k.gather(2, rows.expand({b, layer.k.size(1), k, layer.k.size(3)})).contiguous());
    cache.values.push_back(layer.v.gather(2, rows.expand({b, layer.v.size(1), k, layer.v.size(3)})).contiguous());
  }
  finish_token_cache(&cache, prefix, batch, options);
  return cache;
}

std::vector<nn::KvCache> layer_caches(const TokenCache& cache) {
  std::vector<nn::KvCache> layers(cache.keys.size());
  for (size_t l = 0; l < layers.size(); ++l) layers[l] = {cache.keys[l], cache.values[l]};
  return layers;
}

torch::Tensor cached_recent_mask(const InsertedLayout& recent, int64_t k) {
  const int64_t b = recent.cu_seqlens.size(0) - 1;
  auto allowed = torch::cat({valid_rows(recent.cu_seqlens, recent.width).unsqueeze(2).expand({b, recent.width, k}),
                             segment_mask(recent.segments, recent.cu_seqlens, recent.width)}, 2);  // [B, Wr, K+Wr]
  return additive_mask(allowed, k);
}

}  // namespace seqrec::models
