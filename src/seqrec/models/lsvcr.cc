// RecCom, LSVCR's sequential model (systems.md §4.1; structure in lsvcr.h).
#include "seqrec/models/lsvcr.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>

#include "seqrec/common/error.h"
#include "seqrec/config/config_node.h"
#include "seqrec/config/validate.h"

namespace seqrec::models {

LsvcrOptions read_lsvcr_options(config::ConfigNode node) {
  LsvcrOptions o;
  o.max_history = node.get<int64_t>("max_history", o.max_history);
  o.max_position = node.get<int64_t>("max_position", o.max_history);
  o.hidden_dim = node.get<int64_t>("hidden_dim", o.hidden_dim);
  o.num_heads = node.get<int64_t>("num_heads", o.num_heads);
  o.num_layers = node.get<int64_t>("num_layers", o.num_layers);
  o.ffn_dim = node.get<int64_t>("ffn_dim", o.ffn_dim);
  o.dropout = node.get<double>("dropout", o.dropout);
  o.text_hidden_dim = node.get<int64_t>("text_hidden_dim", o.text_hidden_dim);
  o.text_dim = node.get<int64_t>("text_dim", o.text_dim);
  o.temperature = node.get<double>("temperature", o.temperature);
  o.use_id_embeddings = node.get<bool>("use_id_embeddings", o.use_id_embeddings);
  o.use_comment_history = node.get<bool>("use_comment_history", o.use_comment_history);
  for (const char* k : {"max_history", "max_position", "hidden_dim", "num_heads", "num_layers", "ffn_dim",
                        "text_hidden_dim", "text_dim"})
    config::require_positive(node.get<int64_t>(k, 1), config::key(node, k));
  if (o.hidden_dim % o.num_heads != 0)
    throw ConfigError(config::key(node, "num_heads"), "(" + std::to_string(o.num_heads) + ") must divide hidden_dim (" +
                                                          std::to_string(o.hidden_dim) + ")");
  if (o.max_position < o.max_history)
    throw ConfigError(config::key(node, "max_position"), "must be >= max_history (" + std::to_string(o.max_history) + ")");
  if (!(o.dropout >= 0 && o.dropout < 1)) throw ConfigError(config::key(node, "dropout"), "must be in [0, 1)");
  if (!(o.temperature > 0)) throw ConfigError(config::key(node, "temperature"), "must be > 0");
  return o;
}

// ---- layers ----

LsvcrAttentionImpl::LsvcrAttentionImpl(int64_t dim, int64_t num_heads, double dropout)
    : num_heads_(num_heads), dropout_(dropout) {
  q_proj = register_module("q_proj", torch::nn::Linear(dim, dim));
  k_proj = register_module("k_proj", torch::nn::Linear(dim, dim));
  v_proj = register_module("v_proj", torch::nn::Linear(dim, dim));
  out_proj = register_module("out_proj", torch::nn::Linear(dim, dim));
}

torch::Tensor LsvcrAttentionImpl::forward(const torch::Tensor& q, const torch::Tensor& kv, const torch::Tensor& allowed) {
  TORCH_CHECK(q.dim() == 3 && kv.dim() == 3 && allowed.dim() == 3, "LsvcrAttention: expected [B, Q, D], [B, K, D], [B, Q, K]");
  const int64_t B = q.size(0), Q = q.size(1), K = kv.size(1), D = q.size(2), H = num_heads_, dh = D / H;
  auto heads = [&](const torch::Tensor& x, int64_t n) { return x.view({B, n, H, dh}).transpose(1, 2); };  // [B, H, n, dh]
  auto qh = heads(q_proj(q), Q), kh = heads(k_proj(kv), K), vh = heads(v_proj(kv), K);
  auto logits = torch::matmul(qh, kh.transpose(-1, -2)) / std::sqrt(double(dh));  // [B, H, Q, K]
  logits = logits.masked_fill(allowed.logical_not().unsqueeze(1), -std::numeric_limits<float>::infinity());
  auto probs = torch::dropout(torch::softmax(logits, -1), dropout_, is_training());
  auto out = torch::matmul(probs, vh).transpose(1, 2).reshape({B, Q, D});  // [B, Q, D]
  return out_proj(out);
}

LsvcrLayerImpl::LsvcrLayerImpl(const LsvcrOptions& o) : dropout_(o.dropout) {
  attention = register_module("attention", LsvcrAttention(o.hidden_dim, o.num_heads, o.dropout));
  attention_norm = register_module("attention_norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({o.hidden_dim})));
  ffn_in = register_module("ffn_in", torch::nn::Linear(o.hidden_dim, o.ffn_dim));
  ffn_out = register_module("ffn_out", torch::nn::Linear(o.ffn_dim, o.hidden_dim));
  ffn_norm = register_module("ffn_norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({o.hidden_dim})));
}

torch::Tensor LsvcrLayerImpl::forward(const torch::Tensor& x, const torch::Tensor& kv, const torch::Tensor& allowed) {
  const bool train = is_training();
  auto h = attention_norm(x + torch::dropout(attention(x, kv, allowed), dropout_, train));               // [B, Q, D]
  auto f = ffn_out(torch::dropout(torch::gelu(ffn_in(h)), dropout_, train));                             // [B, Q, D]
  return ffn_norm(h + torch::dropout(f, dropout_, train));
}

torch::Tensor lsvcr_history_rows(const std::vector<LsvcrHistoryView>& histories, int64_t max_history) {
  int64_t width = 1;
  for (const auto& h : histories) width = std::max(width, std::min(h.count, max_history));
  torch::Tensor rows = torch::zeros({static_cast<int64_t>(histories.size()), width}, torch::kInt64);
  int64_t* out = rows.data_ptr<int64_t>();
  for (const auto& h : histories) {
    const int64_t n = std::min(h.count, max_history);
    if (n > 0) std::copy(h.ids + (h.count - n), h.ids + h.count, out);  // an empty vector's data() may be null
    out += width;
  }
  return rows;
}

torch::Tensor lsvcr_key_mask(const torch::Tensor& ids) {
  auto keys = ids.ne(0);                                                   // [B, L]
  if (keys.size(1) > 0) keys.select(1, 0).logical_or_(keys.any(1).logical_not());  // empty rows: slot 0
  return keys;
}

torch::Tensor lsvcr_causal_mask(const torch::Tensor& keys) {
  const int64_t L = keys.size(1);
  auto causal = torch::ones({L, L}, keys.options()).tril();               // [L, L] bool
  return causal.unsqueeze(0).logical_and(keys.unsqueeze(1));              // [B, L, L]
}

// ---- the model ----

LsvcrImpl::LsvcrImpl(const LsvcrOptions& o) : options_(o) {
  const int64_t D = o.hidden_dim;
  id_embedding = register_module("id_embedding", torch::nn::Embedding(torch::nn::EmbeddingOptions(o.num_videos + 1, D).padding_idx(0)));
  id_gate = register_parameter("id_gate", torch::ones({1}));
  llm_emb_mlp = register_module("llm_emb_mlp", torch::nn::Sequential(torch::nn::Linear(o.text_input_dim, o.text_hidden_dim),
                                                                     torch::nn::GELU(),
                                                                     torch::nn::Linear(o.text_hidden_dim, o.text_dim)));
  llm_adapter = register_module("llm_adapter", torch::nn::Linear(o.text_dim, D));
  text_fusion = register_module("text_fusion", torch::nn::Linear(2 * D, D));
  video_position = register_module("video_position", torch::nn::Embedding(o.max_position, D));
  comment_position = register_module("comment_position", torch::nn::Embedding(o.max_position, D));
  video_input_norm = register_module("video_input_norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({D})));
  comment_input_norm = register_module("comment_input_norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({D})));
  video_encoder = register_module("video_encoder", torch::nn::ModuleList());
  comment_encoder = register_module("comment_encoder", torch::nn::ModuleList());
  for (int64_t i = 0; i < o.num_layers; ++i) {
    video_encoder->push_back(LsvcrLayer(o));
    if (o.use_comment_history) comment_encoder->push_back(LsvcrLayer(o));
  }
  if (o.use_comment_history) {
    video_mix = register_module("video_mix", LsvcrLayer(o));
    comment_mix = register_module("comment_mix", LsvcrLayer(o));
    video_fusion = register_module("video_fusion", torch::nn::Linear(2 * D, D));
    comment_fusion = register_module("comment_fusion", torch::nn::Linear(2 * D, D));
  }
  pooling_proj = register_module("pooling_proj", torch::nn::Linear(D, D));
  pooling_score = register_module("pooling_score", torch::nn::Linear(torch::nn::LinearOptions(D, 1).bias(false)));
  comment_attention = register_module("comment_attention", LsvcrAttention(D, o.num_heads, o.dropout));
  torch::NoGradGuard no_grad;
  torch::nn::init::normal_(id_embedding->weight, 0.0, 0.02);
  id_embedding->weight[0].zero_();
}

torch::Tensor LsvcrImpl::project_texts(const torch::Tensor& first, const torch::Tensor& second) {
  auto a = llm_adapter(llm_emb_mlp->forward(first));    // [..., D]
  auto b = llm_adapter(llm_emb_mlp->forward(second));   // [..., D]
  return text_fusion(torch::cat({a, b}, -1));            // [..., D]
}

torch::Tensor LsvcrImpl::video_text(const torch::Tensor& video_ids) {
  TORCH_CHECK(tables_.video_title.defined(), "Lsvcr: set_text_tables() first");
  auto hot = tables_.video_hot_comment.index({video_ids});                       // [...]
  return project_texts(tables_.video_title.index({video_ids}), tables_.comment_text.index({hot}));
}

torch::Tensor LsvcrImpl::comment_text(const torch::Tensor& comment_ids) {
  TORCH_CHECK(tables_.comment_text.defined(), "Lsvcr: set_text_tables() first");
  auto video = tables_.comment_video.index({comment_ids});                        // [...]
  return project_texts(tables_.video_title.index({video}), tables_.comment_text.index({comment_ids}));
}

torch::Tensor LsvcrImpl::video_id_embedding(const torch::Tensor& video_ids) { return id_embedding(video_ids); }

torch::Tensor LsvcrImpl::id_term(const torch::Tensor& video_ids) {
  if (!options_.use_id_embeddings) {
    auto shape = video_ids.sizes().vec();
    shape.push_back(options_.hidden_dim);
    return torch::zeros(shape, id_gate.options());                               // [..., D]
  }
  return id_gate * id_embedding(video_ids);
}

torch::Tensor LsvcrImpl::video_embedding(const torch::Tensor& video_ids) {
  return id_term(video_ids) + video_text(video_ids);
}

torch::Tensor LsvcrImpl::embed_history(const torch::Tensor& id_term, const torch::Tensor& text, const torch::Tensor& positions,
                                       torch::nn::Embedding& table, torch::nn::LayerNorm& norm) {
  auto x = norm(id_term + text + table(positions));                              // [B, L, D]
  return torch::dropout(x, options_.dropout, is_training());
}

torch::Tensor LsvcrImpl::run_encoder(torch::nn::ModuleList& layers, torch::Tensor x, const torch::Tensor& keys) {
  const auto allowed = lsvcr_causal_mask(keys);                                   // [B, L, L]
  for (const auto& layer : *layers) x = layer->as<LsvcrLayer>()->forward(x, x, allowed);
  return x;
}

namespace {

torch::Tensor default_positions(const torch::Tensor& given, const torch::Tensor& ids) {
  if (given.defined()) return given;
  return torch::arange(ids.size(1), ids.options()).unsqueeze(0).expand({ids.size(0), ids.size(1)});  // [B, L]
}

}  // namespace

LsvcrStates LsvcrImpl::encode(const LsvcrBatch& batch) {
  TORCH_CHECK(batch.video_ids.dim() == 2, "Lsvcr: video_ids must be [B, Lv]");
  TORCH_CHECK(batch.video_ids.size(1) >= 1, "Lsvcr: the video history needs at least one (padding) slot");
  TORCH_CHECK(batch.video_ids.size(1) <= options_.max_position && batch.comment_ids.size(-1) <= options_.max_position,
              "Lsvcr: histories longer than max_position (", options_.max_position, ")");
  LsvcrStates s;
  s.video_keys = lsvcr_key_mask(batch.video_ids);                                // [B, Lv]
  auto xv = embed_history(id_term(batch.video_ids), video_text(batch.video_ids),
                          default_positions(batch.video_positions, batch.video_ids), video_position, video_input_norm);
  auto hv = run_encoder(video_encoder, xv, s.video_keys);                        // [B, Lv, D]
  if (!options_.use_comment_history) {
    s.video = hv;
    return s;
  }
  TORCH_CHECK(batch.comment_ids.dim() == 2 && batch.comment_ids.size(0) == batch.video_ids.size(0) &&
                  batch.comment_ids.size(1) >= 1,
              "Lsvcr: comment_ids must be [B, Lc] with Lc >= 1");
  s.comment_keys = lsvcr_key_mask(batch.comment_ids);                            // [B, Lc]
  auto comment_videos = tables_.comment_video.index({batch.comment_ids});        // [B, Lc]
  auto xc = embed_history(id_term(comment_videos), comment_text(batch.comment_ids),
                          default_positions(batch.comment_positions, batch.comment_ids), comment_position,
                          comment_input_norm);
  auto hc = run_encoder(comment_encoder, xc, s.comment_keys);                    // [B, Lc, D]
  // Mix blocks: each history attends (bidirectionally) to every real event of the other.
  const int64_t Lv = hv.size(1), Lc = hc.size(1);
  auto mv = video_mix(hv, hc, s.comment_keys.unsqueeze(1).expand({-1, Lv, Lc}));    // [B, Lv, D]
  auto mc = comment_mix(hc, hv, s.video_keys.unsqueeze(1).expand({-1, Lc, Lv}));    // [B, Lc, D]
  s.video = video_fusion(torch::cat({hv, mv}, -1));                              // [B, Lv, D]
  s.comment = comment_fusion(torch::cat({hc, mc}, -1));                          // [B, Lc, D]
  return s;
}

torch::Tensor LsvcrImpl::video_user(const LsvcrStates& s) {
  auto e = pooling_score(torch::tanh(pooling_proj(s.video))).squeeze(-1);        // [B, Lv]
  e = e.masked_fill(s.video_keys.logical_not(), -std::numeric_limits<float>::infinity());
  auto a = torch::softmax(e, -1);                                                // [B, Lv]
  return torch::bmm(a.unsqueeze(1), s.video).squeeze(1);                         // [B, D]
}

torch::Tensor LsvcrImpl::comment_user(const LsvcrStates& s, const torch::Tensor& current_video) {
  const auto& states = options_.use_comment_history ? s.comment : s.video;       // [B, L, D]
  const auto& keys = options_.use_comment_history ? s.comment_keys : s.video_keys;  // [B, L]
  auto q = video_embedding(current_video).unsqueeze(1);                          // [B, 1, D]
  return comment_attention(q, states, keys.unsqueeze(1)).squeeze(1);             // [B, D]
}

torch::Tensor LsvcrImpl::score(const torch::Tensor& user, const torch::Tensor& candidates) const {
  auto u = torch::nn::functional::normalize(user, torch::nn::functional::NormalizeFuncOptions().dim(-1));       // [B, D]
  auto c = torch::nn::functional::normalize(candidates, torch::nn::functional::NormalizeFuncOptions().dim(-1));  // [B, N, D] | [N, D]
  auto cos = c.dim() == 2 ? torch::matmul(u, c.t()) : torch::bmm(c, u.unsqueeze(-1)).squeeze(-1);               // [B, N]
  return cos / options_.temperature;
}

}  // namespace seqrec::models
