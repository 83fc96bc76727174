// LLaMA-ID recommender on the shared decoder block.
#include "seqrec/models/llama_id.h"

#include <torch/nn/functional/normalization.h>
#include <torch/torch.h>

#include "seqrec/common/error.h"
#include "seqrec/config/config_node.h"
#include "seqrec/nn/dropout.h"

namespace seqrec::models {

namespace F = torch::nn::functional;

LlamaIdOptions read_llama_id_options(config::ConfigNode node, const ModelContext& context) {
  LlamaIdOptions o;
  o.num_items = context.num_items;
  o.max_seq_len = context.max_seq_len;
  const std::string p = node.path();
  o.item_dim = node.get<int64_t>("item_dim", o.item_dim);
  o.hidden_dim = node.get<int64_t>("hidden_dim", o.item_dim);
  o.num_blocks = node.get<int64_t>("num_blocks", o.num_blocks);
  o.num_heads = node.get<int64_t>("num_heads", o.num_heads);
  o.num_kv_heads = node.get<int64_t>("num_kv_heads", o.num_heads);
  o.ffn_dim = node.get<int64_t>("ffn_dim", (o.hidden_dim * 8 / 3 + 7) / 8 * 8);
  o.dropout = node.get<double>("dropout", o.dropout);
  o.rms_eps = node.get<double>("rms_eps", o.rms_eps);
  o.rope_theta = node.get<double>("rope_theta", o.rope_theta);
  o.l2_norm_output = node.get<bool>("l2_norm_output", o.l2_norm_output);
  for (const auto& [key, value] : {std::pair<const char*, int64_t>{"item_dim", o.item_dim}, {"hidden_dim", o.hidden_dim},
                                   {"num_blocks", o.num_blocks}, {"ffn_dim", o.ffn_dim}})
    if (value < 1) throw ConfigError(p + "." + key, "must be >= 1");
  if (o.num_heads < 1 || o.hidden_dim % o.num_heads != 0 || (o.hidden_dim / o.num_heads) % 2 != 0)
    throw ConfigError(p + ".num_heads", "num_heads must divide hidden_dim into an even head size (RoPE)");
  if (o.num_kv_heads < 1 || o.num_heads % o.num_kv_heads != 0)
    throw ConfigError(p + ".num_kv_heads", "must divide num_heads (" + std::to_string(o.num_heads) + ")");
  if (o.dropout < 0 || o.dropout >= 1) throw ConfigError(p + ".dropout", "must be in [0, 1)");
  if (o.num_items < 1) throw ConfigError(p, "the data has no items");
  o.personalized = node.has("personalized");
  if (o.personalized) o.user_tokens = read_personalized_options(node.child("personalized"), context.max_seq_len);
  return o;
}

LlamaIdImpl::LlamaIdImpl(const LlamaIdOptions& o) : options_(o) {
  item_embedding = register_module(
      "item_embedding", torch::nn::Embedding(torch::nn::EmbeddingOptions(o.num_items + 1, o.item_dim).padding_idx(0)));
  if (o.item_dim != o.hidden_dim) item_proj = register_module("item_proj", torch::nn::Linear(o.item_dim, o.hidden_dim));
  nn::LlamaBlockOptions b;
  b.hidden_dim = o.hidden_dim;
  b.num_heads = o.num_heads;
  b.num_kv_heads = o.num_kv_heads;
  b.head_dim = o.hidden_dim / o.num_heads;
  b.ffn_dim = o.ffn_dim;
  b.rms_eps = o.rms_eps;
  b.dropout = o.dropout;
  blocks = register_module("blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < o.num_blocks; ++i) blocks->push_back(nn::LlamaBlock(b));
  norm = register_module("norm", nn::RmsNorm(o.hidden_dim, o.rms_eps));
  inv_freq_ = nn::rope_inverse_frequencies(b.head_dim, o.rope_theta);
  if (o.personalized) {
    // As PerSRec: torch.randn(1, K, hidden), shared by all users (not re-drawn by the init below).
    const auto& pz = o.user_tokens;
    user_tokens = register_parameter("user_tokens", torch::randn({1, pz.number_of_user_tokens, o.hidden_dim}));
    batch_layout_.recent_item_num = pz.recent_item_num;
    batch_layout_.boundary_target = pz.boundary_target == "token" ? o.num_items + 1 : 0;
    batch_layout_.recent_item_dropout = pz.item_dropout;
  }
  torch::NoGradGuard no_grad;
  for (auto& p : named_parameters())
    if (p.value().dim() == 2) p.value().normal_(0.0, 0.02);  // LLaMA init
  item_embedding->weight[0].zero_();
}

torch::Tensor LlamaIdImpl::project(const torch::Tensor& e) {
  auto h = item_proj ? item_proj(e) : e;
  return options_.l2_norm_output ? F::normalize(h, F::NormalizeFuncOptions().dim(-1).eps(1e-6)) : h;
}

torch::Tensor LlamaIdImpl::inputs(const torch::Tensor& ids) {
  auto e = item_embedding(ids);                                               // [B, W, item_dim]
  return nn::fast_dropout(item_proj ? item_proj(e) : e, options_.dropout, is_training());  // [B, W, D]
}

std::vector<std::shared_ptr<torch::nn::Module>> LlamaIdImpl::shardable_blocks() {
  std::vector<std::shared_ptr<torch::nn::Module>> out;
  for (size_t l = 0; l < blocks->size(); ++l) out.push_back(blocks->ptr(l));
  return out;
}

torch::Tensor LlamaIdImpl::run(torch::Tensor x, const torch::Tensor& positions, const torch::Tensor& bias,
                               std::vector<nn::KvCache>* caches) {
  auto rotary = nn::rotary_for_positions(positions, inv_freq_);
  if (caches) caches->resize(blocks->size());
  for (size_t l = 0; l < blocks->size(); ++l) {
    auto block = blocks[l]->as<nn::LlamaBlock>();
    nn::KvCache* cache = caches ? &(*caches)[l] : nullptr;
    x = block_gate_ ? block_gate_->run(l, x, [&](const torch::Tensor& in) { return block->forward(in, rotary, bias, cache); })
                    : block->forward(x, rotary, bias, cache);
  }
  return norm(x);
}

torch::Tensor LlamaIdImpl::output(const torch::Tensor& x) {
  return options_.l2_norm_output ? F::normalize(x, F::NormalizeFuncOptions().dim(-1).eps(1e-6)) : x;
}

torch::Tensor LlamaIdImpl::encode(const data::SequenceBatch& batch) {
  const auto& ids = batch.item_ids;                                           // [B, W]
  TORCH_CHECK(ids.dim() == 2, "item_ids must be [B, W]");
  if (options_.personalized) return encode_personalized(batch);
  const int64_t w = ids.size(1);
  auto valid = ids.ne(0);                                                     // [B, W]
  // RoPE positions count from each sequence's oldest item (left padding is masked, not indexed).
  auto pad = w - valid.sum(1, /*keepdim=*/true);
  auto positions = (torch::arange(w, ids.options()).unsqueeze(0) - pad).clamp_min(0);  // [B, W]
  auto x = inputs(ids);
  auto bias = nn::causal_bias(w, 0, valid, x.options());                      // [B, 1, W, W]
  x = run(x, positions, bias, nullptr) * valid.unsqueeze(-1).to(x.scalar_type());
  return output(x);
}

// ---- PerSRec's user tokens (systems.md §6.1) on the LLaMA blocks, as in HLLM's user LLM ----

torch::Tensor LlamaIdImpl::encode_personalized(const data::SequenceBatch& batch) {
  const auto& pz = options_.user_tokens;
  const bool last_only = batch.last_only && !is_training();
  const bool full = is_training() || pz.predict_with_full_item_seq;
  if (last_only && full && token_cache_) return predict(batch, token_cache_->rows(batch.user_ids));
  const InsertedLayout lay = insert_user_tokens(batch, pz, full ? InsertedPart::kAll : InsertedPart::kRecent, false);
  auto [x, positions] = inserted_inputs(lay, inputs(batch.item_ids), user_tokens[0]);
  auto bias = additive_mask(segment_mask(lay.segments, lay.cu_seqlens, lay.width), 0).to(x.device());
  auto hidden = output(run(x, positions, bias, nullptr));                     // [B, Wc, D]
  return outputs_at_items(hidden, lay, batch.item_ids.size(0), batch.item_ids.size(1), last_only);
}

TokenCache LlamaIdImpl::compress(const data::SequenceBatch& batch) {
  TORCH_CHECK(options_.personalized && !is_training(), "compress: an eval-mode llama_id with user tokens");
  torch::NoGradGuard no_grad;
  const auto& pz = options_.user_tokens;
  const InsertedLayout lay = insert_user_tokens(batch, pz, InsertedPart::kPrefix, false);
  auto [x, positions] = inserted_inputs(lay, inputs(batch.item_ids), user_tokens[0]);
  std::vector<nn::KvCache> kv;
  run(x, positions, additive_mask(segment_mask(lay.segments, lay.cu_seqlens, lay.width), 0).to(x.device()), &kv);
  return token_cache_from_layers(kv, lay, batch, pz);
}

torch::Tensor LlamaIdImpl::predict(const data::SequenceBatch& batch, const TokenCache& cache) {
  TORCH_CHECK(options_.personalized && !is_training(), "predict: an eval-mode llama_id with user tokens");
  torch::NoGradGuard no_grad;
  const auto& pz = options_.user_tokens;
  check_old_items(batch, cache, pz);
  const InsertedLayout lay = insert_user_tokens(batch, pz, InsertedPart::kRecent, false);
  auto [x, positions] = inserted_inputs(lay, inputs(batch.item_ids), user_tokens[0]);
  std::vector<nn::KvCache> kv = layer_caches(cache);
  auto hidden = run(x, positions, cached_recent_mask(lay, pz.number_of_user_tokens).to(x.device()), &kv);
  return output(hidden.narrow(1, lay.width - 1, 1));                          // [B, 1, D]
}

torch::Tensor LlamaIdImpl::item_embeddings(const torch::Tensor& item_ids) {
  const int64_t v = options_.num_items;
  if (!user_tokens.defined() || item_ids.numel() == 0 || item_ids.max().item<int64_t>() <= v)
    return project(item_embedding(item_ids));
  // Ids V+1..V+K: the user tokens (PerSRec's target of the last old item), in the output space.
  auto is_token = item_ids.gt(v);
  auto items = project(item_embedding(item_ids.masked_fill(is_token, 0)));    // [..., D]
  auto tokens = output(user_tokens[0].index_select(0, (item_ids.clamp_min(v + 1) - v - 1).reshape({-1})))
                    .view(items.sizes());
  return torch::where(is_token.unsqueeze(-1), tokens, items);
}

torch::Tensor LlamaIdImpl::all_item_embeddings() { return project(item_embedding->weight); }

}  // namespace seqrec::models
