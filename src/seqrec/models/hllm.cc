// HLLM: item LLM + user LLM (systems.md §1.4-§1.5).
#include "seqrec/models/hllm.h"

#include <torch/torch.h>

#include <algorithm>
#include <array>
#include <cmath>

#include "seqrec/common/error.h"
#include "seqrec/common/log.h"
#include "seqrec/config/config_node.h"
#include "seqrec/nn/lora.h"

namespace seqrec::models {
namespace {

namespace F = torch::nn::functional;

const std::vector<int32_t> kNoWords;  // the image words of an item without soft tokens

torch::Tensor l2n(const torch::Tensor& x) { return F::normalize(x, F::NormalizeFuncOptions().dim(-1).eps(1e-6)); }

// A tower's architecture from YAML (HF config.json names where they exist).
llm::DecoderConfig decoder_config_from(config::ConfigNode n) {
  llm::DecoderConfig c;
  c.vocab_size = n.get<int64_t>("vocab_size", 512);
  c.hidden_size = n.get<int64_t>("hidden_size", 64);
  c.intermediate_size = n.get<int64_t>("intermediate_size", 172);
  c.num_layers = n.get<int64_t>("num_hidden_layers", 2);
  c.num_heads = n.get<int64_t>("num_attention_heads", 4);
  c.num_kv_heads = n.get<int64_t>("num_key_value_heads", c.num_heads);
  c.max_position_embeddings = n.get<int64_t>("max_position_embeddings", 2048);
  c.rms_norm_eps = n.get<double>("rms_norm_eps", 1e-5);
  c.rope_theta = n.get<double>("rope_theta", 10000.0);
  c.dropout = n.get<double>("attention_dropout", 0.0);
  const std::string p = n.path();
  if (c.hidden_size < 1 || c.vocab_size < 1 || c.intermediate_size < 1 || c.num_layers < 1)
    throw ConfigError(p, "vocab_size, hidden_size, intermediate_size and num_hidden_layers must be >= 1");
  if (c.num_heads < 1 || c.hidden_size % c.num_heads != 0)
    throw ConfigError(p + ".num_attention_heads", "must divide hidden_size (" + std::to_string(c.hidden_size) + ")");
  if (c.num_kv_heads < 1 || c.num_heads % c.num_kv_heads != 0)
    throw ConfigError(p + ".num_key_value_heads", "must divide num_attention_heads");
  c.head_dim = c.hidden_size / c.num_heads;
  c.tie_word_embeddings = true;
  // Qwen2's q/k/v biases; Qwen2-VL's language model also reads rope_scaling.mrope_section (M-RoPE).
  c.model_type = n.get<std::string>("model_type", "llama");
  if (c.model_type != "llama" && c.model_type != "qwen2" && c.model_type != "qwen2_vl")
    throw ConfigError(p + ".model_type", "expected llama, qwen2 or qwen2_vl, got '" + c.model_type + "'");
  c.attention_bias = c.model_type != "llama";
  if (n.has("rope_scaling")) {
    config::ConfigNode rs = n.child("rope_scaling");
    rs.ignore("type");
    rs.ignore("rope_type");
    c.mrope_section = rs.get<std::vector<int64_t>>("mrope_section", {});
    if (c.model_type != "qwen2_vl" || !llm::valid_mrope_section(c.mrope_section, c))
      throw ConfigError(rs.path() + ".mrope_section", "M-RoPE needs model_type qwen2_vl and 3 non-negative counts "
                                                      "summing to head_dim / 2 = " + std::to_string(c.head_dim / 2));
  }
  return c;
}

LlmTowerOptions read_tower(config::ConfigNode n) {
  LlmTowerOptions t;
  t.pretrained = n.get<std::string>("pretrained", "");
  if (n.has("config")) {
    if (!t.pretrained.empty()) throw ConfigError(n.path(), "give either pretrained or config, not both");
    t.config = decoder_config_from(n.child("config"));
  } else if (t.pretrained.empty()) {
    throw ConfigError(n.path(), "needs pretrained (a Hugging Face folder) or config (an architecture)");
  }
  t.freeze = n.get<bool>("freeze", t.freeze);
  if (n.has("lora")) {
    config::ConfigNode l = n.child("lora");
    t.lora_rank = l.get<int64_t>("rank", 8);
    t.lora_alpha = l.get<double>("alpha", t.lora_alpha);
    t.lora_targets = l.get<std::vector<std::string>>("target_modules", t.lora_targets);
    if (t.lora_rank < 1) throw ConfigError(l.path() + ".rank", "must be >= 1");
  }
  return t;
}

// Builds a tower. The user tower's token embeddings are never used: it gets a one-row table and
// skips the checkpoint's embedding and output head.
llm::DecoderLm build_tower(const LlmTowerOptions& t, bool user_tower) {
  llm::DecoderConfig c = t.pretrained.empty() ? t.config : llm::read_decoder_config(t.pretrained);
  if (user_tower) {
    c.vocab_size = 1;
    c.tie_word_embeddings = true;
  }
  llm::DecoderLm lm(c);
  if (!t.pretrained.empty()) {
    std::set<std::string> skip;
    if (user_tower) skip = {"model.embed_tokens.weight", "lm_head.weight"};
    llm::load_hf_weights(*lm, t.pretrained, c.tie_word_embeddings, skip);
  }
  if (t.lora_rank > 0) {
    nn::LoraOptions lo;
    lo.rank = t.lora_rank;
    lo.alpha = t.lora_alpha;
    lo.target_modules = t.lora_targets;
    nn::apply_lora(*lm, lo);  // freezes the base weights
  }
  if (t.freeze)
    for (auto& p : lm->parameters()) p.set_requires_grad(false);
  if (user_tower) lm->model->embed_tokens->weight.set_requires_grad(false);
  return lm;
}

}  // namespace

HllmOptions read_hllm_options(config::ConfigNode node, const ModelContext& context) {
  HllmOptions o;
  o.num_items = context.num_items;
  o.max_seq_len = context.max_seq_len;
  o.item_llm = read_tower(node.child("item_llm"));
  o.user_llm = read_tower(node.child("user_llm"));
  o.item_token_std = node.get<double>("item_token_std", o.item_token_std);
  o.logit_scale_init = node.get<double>("logit_scale_init", o.logit_scale_init);
  o.gradient_checkpointing = node.get<bool>("gradient_checkpointing", o.gradient_checkpointing);
  o.packed_items = node.get<bool>("packed_items", o.packed_items);
  o.item_batch_size = node.get<int64_t>("item_batch_size", o.item_batch_size);
  o.personalized = node.has("personalized");
  if (o.personalized) o.user_tokens = read_personalized_options(node.child("personalized"), context.max_seq_len);
  if (o.logit_scale_init < 1) throw ConfigError(node.path() + ".logit_scale_init", "must be >= 1");
  if (o.item_batch_size < 1) throw ConfigError(node.path() + ".item_batch_size", "must be >= 1");
  return o;
}

HllmImpl::HllmImpl(const HllmOptions& options, std::shared_ptr<const data::ItemTokens> tokens)
    : options_(options), tokens_(std::move(tokens)) {
  TORCH_CHECK(tokens_, "HLLM needs the item tokens");
  item_llm = register_module("item_llm", build_tower(options.item_llm, false));
  user_llm = register_module("user_llm", build_tower(options.user_llm, true));
  const auto& ic = item_llm->config();
  const auto& uc = user_llm->config();
  if (tokens_->num_items() != options.num_items)
    throw DataError("item_tokens.bin has " + std::to_string(tokens_->num_items()) + " items, the data has " +
                    std::to_string(options.num_items) + " (re-run seqrec prepare)");
  if (tokens_->vocab_size() > ic.vocab_size)
    throw ConfigError("model.item_llm", "its vocabulary (" + std::to_string(ic.vocab_size) +
                                            ") is smaller than the item texts' tokenizer's (" +
                                            std::to_string(tokens_->vocab_size()) + ")");
  if (ic.hidden_size != uc.hidden_size)
    throw ConfigError("model.user_llm", "hidden size " + std::to_string(uc.hidden_size) +
                                            " differs from the item LLM's " + std::to_string(ic.hidden_size));
  item_llm->gradient_checkpointing = options.gradient_checkpointing;
  user_llm->gradient_checkpointing = options.gradient_checkpointing;
  item_token = register_parameter("item_token", torch::randn({ic.hidden_size}) * options.item_token_std);
  if (options.item_llm.freeze) item_token.set_requires_grad(false);
  logit_scale = register_parameter("logit_scale", torch::tensor(std::log(options.logit_scale_init)));
  if (options.personalized) {
    // PerSRec's PersonalizedHLLM: torch.randn(1, K, hidden), shared by all users.
    const auto& pz = options.user_tokens;
    user_tokens = register_parameter("user_tokens", torch::randn({1, pz.number_of_user_tokens, uc.hidden_size}));
    batch_layout_.recent_item_num = pz.recent_item_num;
    batch_layout_.boundary_target = pz.boundary_target == "token" ? options.num_items + 1 : 0;
    batch_layout_.recent_item_dropout = pz.item_dropout;
  }
}

namespace {

// The positions of one item's tokens [text m][before nb][soft s][after na][ITEM]: with a gh x gw grid
// of soft tokens (M-RoPE) rows t, h, w; without one only row 0, each token one position further.
std::array<std::vector<int64_t>, 3> item_token_positions(int64_t m, int64_t nb, int64_t s, int64_t na, int64_t l,
                                                         int64_t gh, int64_t gw) {
  if (gh > 0) return data::item_positions_mrope(m, nb, gh, gw, na, l);
  const int64_t e = nb + s + na;
  return {data::item_positions(m + e, l + e), {}, {}};
}

}  // namespace

torch::Tensor HllmImpl::item_soft_tokens(const std::vector<int64_t>&) { return torch::Tensor(); }

std::pair<int64_t, int64_t> HllmImpl::image_grid(int64_t soft_tokens) const {
  if (soft_tokens == 0 || item_llm->config().mrope_section.empty()) return {0, 0};
  const auto [gh, gw] = soft_token_grid();
  TORCH_CHECK(gh * gw == 0 || gh * gw == soft_tokens, "soft_token_grid ", gh, " x ", gw, " for ", soft_tokens,
              " soft tokens");
  return {gh, gw};
}

// Each item is [text tokens][image words before][S soft tokens][image words after][ITEM] (the
// image words only with soft tokens; data/item_text.h); positions stay right-aligned with the
// [ITEM] slot at L + E, E = the columns after the text (without soft tokens: exactly HLLM's layout).
torch::Tensor HllmImpl::embed_packed(const std::vector<int64_t>& ids) {
  const int64_t n = static_cast<int64_t>(ids.size()), l = tokens_->max_text_length();
  const torch::Tensor soft = item_soft_tokens(ids);                                            // [n, S, D]
  const int64_t s = soft.defined() ? soft.size(1) : 0;
  const auto& before = s > 0 ? tokens_->image_before() : kNoWords;
  const auto& after = s > 0 ? tokens_->image_after() : kNoWords;
  const int64_t e = static_cast<int64_t>(before.size() + after.size()) + s;
  const bool text = item_text_enabled();
  const auto [gh, gw] = image_grid(s);
  std::vector<int64_t> tok, lengths, slots, soft_slots;
  std::array<std::vector<int64_t>, 3> pos;  // rows t, h, w (only t without a grid)
  for (int64_t id : ids) {
    auto span = tokens_->tokens(id);
    const int64_t m = text ? span.size() : 0;
    for (int64_t j = 0; j < m; ++j) tok.push_back(span[j]);
    tok.insert(tok.end(), before.begin(), before.end());
    for (int64_t k = 0; k < s; ++k) {
      soft_slots.push_back(static_cast<int64_t>(tok.size()));
      tok.push_back(0);
    }
    tok.insert(tok.end(), after.begin(), after.end());
    tok.push_back(0);  // the [ITEM] slot: its input embedding is replaced below
    const auto p = item_token_positions(m, before.size(), s, after.size(), l, gh, gw);
    for (size_t r = 0; r < 3; ++r) pos[r].insert(pos[r].end(), p[r].begin(), p[r].end());
    slots.push_back(static_cast<int64_t>(tok.size()) - 1);
    lengths.push_back(m + e + 1);
  }
  const auto dev = item_token.device();
  const int64_t t = static_cast<int64_t>(tok.size()), d = item_token.size(0);
  nn::PackedSegments packed = nn::pack_segments(lengths);
  auto slot_index = torch::tensor(slots, torch::kLong).to(dev);
  auto token_ids = torch::tensor(tok, torch::kLong).view({1, t});
  llm::check_token_ids(token_ids, item_llm->config().vocab_size);
  auto emb = item_llm->model->embed_tokens(token_ids.to(dev));                                        // [1, T, D]
  if (s > 0) emb = emb.index_copy(1, torch::tensor(soft_slots, torch::kLong).to(dev), soft.reshape({1, n * s, d}));
  emb = emb.index_copy(1, slot_index, item_token.view({1, 1, d}).expand({1, n, d}).contiguous());
  llm::DecoderInput in;
  in.inputs_embeds = emb;
  in.positions = (gh > 0 ? torch::stack({torch::tensor(pos[0]), torch::tensor(pos[1]), torch::tensor(pos[2])}).view({3, 1, t})
                         : torch::tensor(pos[0], torch::kLong).view({1, t}))
                     .to(dev);
  in.packed = &packed;
  return item_llm->forward_hidden(in).squeeze(0).index_select(0, slot_index);                     // [n, D]
}

torch::Tensor HllmImpl::embed_padded(const std::vector<int64_t>& ids) {
  const int64_t n = static_cast<int64_t>(ids.size()), l = tokens_->max_text_length();
  const torch::Tensor soft = item_soft_tokens(ids);                                            // [n, S, D]
  const int64_t s = soft.defined() ? soft.size(1) : 0;
  const auto& before = s > 0 ? tokens_->image_before() : kNoWords;
  const auto& after = s > 0 ? tokens_->image_after() : kNoWords;
  const int64_t nb = static_cast<int64_t>(before.size()), na = static_cast<int64_t>(after.size()), e = nb + s + na;
  const bool text = item_text_enabled();
  const auto [gh, gw] = image_grid(s);
  auto length = [&](int64_t id) -> int64_t { return text ? tokens_->tokens(id).size() : 0; };
  int64_t w = 1;
  for (int64_t id : ids) w = std::max(w, length(id) + e + 1);
  auto tok = torch::zeros({n, w}, torch::kLong), pos = torch::zeros({gh > 0 ? 3 : 1, n, w}, torch::kLong);
  auto valid = torch::zeros({n, w}, torch::kBool);
  auto* tp = tok.data_ptr<int64_t>();
  auto* pp = pos.data_ptr<int64_t>();
  auto* vp = valid.data_ptr<bool>();
  for (int64_t i = 0; i < n; ++i) {
    auto span = tokens_->tokens(ids[i]);
    const int64_t m = length(ids[i]), pad = w - (m + e + 1);
    const auto p = item_token_positions(m, nb, s, na, l, gh, gw);
    for (int64_t j = 0; j <= m + e; ++j) {
      const int64_t k = j - m;  // column within [before][soft][after][ITEM]
      tp[i * w + pad + j] = j < m ? span[j] : k < nb ? before[k] : k >= nb + s && k < e ? after[k - nb - s] : 0;
      for (int64_t r = 0; r < pos.size(0); ++r) pp[(r * n + i) * w + pad + j] = p[r][j];
      vp[i * w + pad + j] = true;
    }
  }
  const auto dev = item_token.device();
  const int64_t d = item_token.size(0);
  llm::check_token_ids(tok, item_llm->config().vocab_size);
  auto emb = item_llm->model->embed_tokens(tok.to(dev));                                        // [n, W, D]
  // Right-aligned: the soft tokens and the words after them fill the same columns of every row.
  std::vector<torch::Tensor> cols{emb.narrow(1, 0, w - 1 - s - na)};
  if (s > 0) cols.push_back(soft);
  if (na > 0) cols.push_back(emb.narrow(1, w - 1 - na, na));
  cols.push_back(item_token.view({1, 1, d}).expand({n, 1, d}));
  emb = torch::cat(cols, 1);                                                                     // [n, W, D]
  llm::DecoderInput in;
  in.inputs_embeds = emb;
  in.positions = (gh > 0 ? pos : pos[0]).to(dev);
  in.key_valid = valid.to(dev);
  return item_llm->forward_hidden(in).select(1, w - 1);                                          // [n, D]
}

torch::Tensor HllmImpl::embed_items(const std::vector<int64_t>& ids) {
  std::vector<torch::Tensor> parts;
  const auto chunk = static_cast<size_t>(options_.item_batch_size);
  auto embed = [&](const std::vector<int64_t>& part) {
    parts.push_back(options_.packed_items ? embed_packed(part) : embed_padded(part));
  };
  const auto passes = static_cast<int64_t>((ids.size() + chunk - 1) / chunk);
  // ZeRO-3: every pass gathers the blocks from their owners, a collective, so every rank runs as
  // many passes as the busiest one. The fillers go first, so that in backward (which visits the
  // passes newest first) the last pass on every rank is a real one; their rows are cut off below,
  // so their gradients are exactly zero.
  const bool gated = block_gate_ && is_training() && torch::GradMode::is_enabled();
  const int64_t fillers = gated ? block_gate_->most_passes(passes) - passes : 0;
  for (int64_t f = 0; f < fillers; ++f) embed({1});
  filler_passes_ += fillers;
  for (size_t s = 0; s < ids.size(); s += chunk)
    embed(std::vector<int64_t>(ids.begin() + s, ids.begin() + std::min(ids.size(), s + chunk)));
  if (parts.empty()) return torch::zeros({0, item_token.size(0)}, item_token.options());
  if (gated) return torch::cat(parts, 0).narrow(0, fillers, static_cast<int64_t>(ids.size()));
  return parts.size() == 1 ? parts[0] : torch::cat(parts, 0);
}

std::vector<std::shared_ptr<torch::nn::Module>> HllmImpl::shardable_blocks() {
  std::vector<std::shared_ptr<torch::nn::Module>> out;
  for (const auto& tower : {item_llm, user_llm})
    for (size_t l = 0; l < tower->model->layers->size(); ++l) out.push_back(tower->model->layers->ptr(l));
  return out;
}

void HllmImpl::set_block_gate(nn::BlockGate* gate) {
  SequenceRecommenderImpl::set_block_gate(gate);
  item_gate_ = gate ? std::make_unique<nn::OffsetBlockGate>(gate, 0) : nullptr;
  user_gate_ = gate ? std::make_unique<nn::OffsetBlockGate>(gate, item_llm->model->layers->size()) : nullptr;
  item_llm->block_gate = item_gate_.get();
  user_llm->block_gate = user_gate_.get();
}

int64_t HllmImpl::item_tower_version() const {
  int64_t v = item_token._version();
  for (const auto& p : item_llm->parameters()) v += p._version();
  return v;
}

torch::Tensor HllmImpl::all_item_embeddings() {
  const int64_t v = options_.num_items;
  std::vector<int64_t> all(v);
  for (int64_t i = 0; i < v; ++i) all[i] = i + 1;
  if (is_training() && torch::GradMode::is_enabled()) {  // e.g. a full-softmax loss: no cache, with gradients
    auto e = l2n(embed_items(all));
    return torch::cat({torch::zeros({1, e.size(1)}, e.options()), e}, 0);
  }
  const int64_t version = item_tower_version();
  if (!cache_.defined() || version != cache_version_) {
    torch::NoGradGuard no_grad;
    auto raw = embed_items(all);
    raw_cache_ = torch::cat({torch::zeros({1, raw.size(1)}, raw.options()), raw}, 0);   // [V+1, D]
    cache_ = l2n(raw_cache_);
    cache_.select(0, 0).zero_();
    cache_version_ = version;
    ++catalogue_passes_;
  }
  return cache_;
}

torch::Tensor HllmImpl::item_embeddings(const torch::Tensor& item_ids) {
  const int64_t v = options_.num_items;
  if (user_tokens.defined() && item_ids.numel() > 0 && item_ids.max().item<int64_t>() > v) {
    // Ids V+1..V+K: the user tokens (PerSRec's target of the last old item).
    auto is_token = item_ids.gt(v);
    // Items first, the token rows standing in for an item of the step (so the step table serves).
    const int64_t stand_in = step_ids_.defined() && step_ids_.numel() > 0 ? step_ids_[0].item<int64_t>() : 1;
    auto items = item_embeddings(item_ids.masked_fill(is_token, stand_in));              // [..., D]
    auto tokens = l2n(user_tokens[0].index_select(0, (item_ids.clamp_min(v + 1) - v - 1).reshape({-1}).to(user_tokens.device())))
                      .view(items.sizes());
    return torch::where(is_token.unsqueeze(-1).to(items.device()), tokens, items);
  }
  auto flat = item_ids.reshape({-1}).to(torch::kCPU);
  auto out_shape = item_ids.sizes().vec();
  out_shape.push_back(item_token.size(0));
  if (is_training() && step_ids_.defined() && step_ids_.numel() > 0) {
    auto rows = torch::searchsorted(step_ids_, flat).clamp_max(step_ids_.numel() - 1);
    if (step_ids_.index_select(0, rows).eq(flat).all().item<bool>())
      return step_table_.index_select(0, rows.to(step_table_.device())).view(out_shape);
  }
  if (!is_training()) return all_item_embeddings().index_select(0, flat.to(item_token.device())).view(out_shape);
  if (block_gate_)  // a pass only this rank runs would leave the others waiting in its gathers
    throw Error("ZeRO-3: HLLM was asked in training for items outside the step's batch (inputs, targets and "
                "negatives); only those are embedded on every rank");
  auto uniq = std::get<0>(at::_unique(flat, /*sorted=*/true));
  std::vector<int64_t> ids(uniq.data_ptr<int64_t>(), uniq.data_ptr<int64_t>() + uniq.numel());
  ids.erase(std::remove(ids.begin(), ids.end(), 0), ids.end());
  auto table = torch::cat({torch::zeros({1, item_token.size(0)}, item_token.options()), l2n(embed_items(ids))}, 0);
  std::vector<int64_t> with_pad{0};
  with_pad.insert(with_pad.end(), ids.begin(), ids.end());
  auto rows = torch::searchsorted(torch::tensor(with_pad, torch::kLong), flat);
  return table.index_select(0, rows.to(table.device())).view(out_shape);
}

torch::Tensor HllmImpl::input_embeddings(const data::SequenceBatch& batch) {
  const auto& ids = batch.item_ids;                                                   // [B, W]
  TORCH_CHECK(ids.dim() == 2, "item_ids must be [B, W]");
  const int64_t b = ids.size(0), w = ids.size(1), d = item_token.size(0);
  torch::Tensor inputs;                                                               // [B, W, D] raw
  if (is_training()) {
    // One item-LLM pass over everything this step needs: inputs, targets and negatives.
    std::vector<torch::Tensor> parts{ids.reshape({-1})};
    if (batch.targets.defined()) parts.push_back(batch.targets.reshape({-1}));
    if (batch.negatives.defined()) parts.push_back(batch.negatives.reshape({-1}));
    auto uniq = std::get<0>(at::_unique(torch::cat(parts).to(torch::kCPU), /*sorted=*/true));
    uniq = uniq.masked_select(uniq.ne(0).logical_and(uniq.le(options_.num_items)));   // [U] (no token ids)
    std::vector<int64_t> list(uniq.data_ptr<int64_t>(), uniq.data_ptr<int64_t>() + uniq.numel());
    auto raw = embed_items(list);                                                     // [U, D]
    step_ids_ = uniq;
    step_table_ = l2n(raw);
    auto table = torch::cat({torch::zeros({1, d}, raw.options()), raw}, 0);           // row 0 = padding
    auto rows = torch::searchsorted(uniq, ids.reshape({-1}).to(torch::kCPU)) + 1;
    rows.masked_fill_(ids.reshape({-1}).to(torch::kCPU).eq(0), 0);
    inputs = table.index_select(0, rows.to(table.device())).view({b, w, d});
  } else {
    step_ids_ = torch::Tensor();
    step_table_ = torch::Tensor();
    all_item_embeddings();  // fills the raw cache
    inputs = raw_cache_.index_select(0, ids.reshape({-1}).to(raw_cache_.device())).view({b, w, d});
  }
  return inputs;
}

torch::Tensor HllmImpl::encode(const data::SequenceBatch& batch) {
  const auto& ids = batch.item_ids;                                                   // [B, W]
  const int64_t b = ids.size(0), w = ids.size(1);
  torch::Tensor inputs = input_embeddings(batch);                                     // [B, W, D] raw
  if (options_.personalized) return encode_personalized(batch, inputs);
  llm::DecoderInput in;
  in.inputs_embeds = inputs;
  // RoPE positions 0..L-1 over the left-padded sample (padding masked, not re-indexed), §1.5.
  in.positions = (torch::arange(w, torch::kLong) + batch.position_offset).unsqueeze(0).expand({b, w}).to(inputs.device());
  in.key_valid = ids.ne(0).to(inputs.device());
  return l2n(user_llm->forward_hidden(in));                                           // [B, W, D]
}

// ---- PerSRec's user tokens in the user LLM (systems.md §6.1, PersonalizedHLLM) ----

torch::Tensor HllmImpl::encode_personalized(const data::SequenceBatch& batch, const torch::Tensor& inputs) {
  const auto& pz = options_.user_tokens;
  const bool last_only = batch.last_only && !is_training();
  const bool full = is_training() || pz.predict_with_full_item_seq;
  if (last_only && full && token_cache_) return predict(batch, token_cache_->rows(batch.user_ids));
  const InsertedLayout lay = insert_user_tokens(batch, pz, full ? InsertedPart::kAll : InsertedPart::kRecent, false);
  auto [x, positions] = inserted_inputs(lay, inputs, user_tokens[0]);
  llm::DecoderInput in;
  in.inputs_embeds = x;
  in.positions = positions;
  in.bias = additive_mask(segment_mask(lay.segments, lay.cu_seqlens, lay.width), 0).to(x.device());
  auto hidden = l2n(user_llm->forward_hidden(in));                                       // [B, Wc, D]
  return outputs_at_items(hidden, lay, batch.item_ids.size(0), batch.item_ids.size(1), last_only);
}

TokenCache HllmImpl::compress(const data::SequenceBatch& batch) {
  TORCH_CHECK(options_.personalized && !is_training(), "compress: an eval-mode HLLM with user tokens");
  torch::NoGradGuard no_grad;
  const auto& pz = options_.user_tokens;
  const InsertedLayout lay = insert_user_tokens(batch, pz, InsertedPart::kPrefix, false);
  auto [x, positions] = inserted_inputs(lay, input_embeddings(batch), user_tokens[0]);
  llm::DecoderInput in;
  in.inputs_embeds = x;
  in.positions = positions;
  in.bias = additive_mask(segment_mask(lay.segments, lay.cu_seqlens, lay.width), 0).to(x.device());
  llm::DecoderCache kv;
  user_llm->forward_hidden(in, &kv);
  return token_cache_from_layers(kv, lay, batch, pz);
}

torch::Tensor HllmImpl::predict(const data::SequenceBatch& batch, const TokenCache& cache) {
  TORCH_CHECK(options_.personalized && !is_training(), "predict: an eval-mode HLLM with user tokens");
  torch::NoGradGuard no_grad;
  const auto& pz = options_.user_tokens;
  check_old_items(batch, cache, pz);
  const InsertedLayout lay = insert_user_tokens(batch, pz, InsertedPart::kRecent, false);
  auto [x, positions] = inserted_inputs(lay, input_embeddings(batch), user_tokens[0]);
  llm::DecoderCache kv = layer_caches(cache);
  llm::DecoderInput in;
  in.inputs_embeds = x;
  in.positions = positions;
  in.bias = cached_recent_mask(lay, pz.number_of_user_tokens).to(x.device());  // [K tokens | recent]
  auto hidden = user_llm->forward_hidden(in, &kv);                                       // [B, Wr, D]
  return l2n(hidden.narrow(1, lay.width - 1, 1));                                        // [B, 1, D]
}

}  // namespace seqrec::models
