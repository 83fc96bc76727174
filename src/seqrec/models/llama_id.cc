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
  torch::NoGradGuard no_grad;
  for (auto& p : named_parameters())
    if (p.value().dim() == 2) p.value().normal_(0.0, 0.02);  // LLaMA init
  item_embedding->weight[0].zero_();
}

torch::Tensor LlamaIdImpl::project(const torch::Tensor& e) {
  auto h = item_proj ? item_proj(e) : e;
  return options_.l2_norm_output ? F::normalize(h, F::NormalizeFuncOptions().dim(-1).eps(1e-6)) : h;
}

torch::Tensor LlamaIdImpl::encode(const data::SequenceBatch& batch) {
  const auto& ids = batch.item_ids;                                           // [B, W]
  TORCH_CHECK(ids.dim() == 2, "item_ids must be [B, W]");
  const int64_t w = ids.size(1);
  auto valid = ids.ne(0);                                                     // [B, W]
  // RoPE positions count from each sequence's oldest item (left padding is masked, not indexed).
  auto pad = w - valid.sum(1, /*keepdim=*/true);
  auto positions = (torch::arange(w, ids.options()).unsqueeze(0) - pad).clamp_min(0);  // [B, W]
  auto e = item_embedding(ids);                                               // [B, W, item_dim]
  auto x = nn::fast_dropout(item_proj ? item_proj(e) : e, options_.dropout, is_training());  // [B, W, D]
  auto rotary = nn::rotary_for_positions(positions, inv_freq_);
  auto bias = nn::causal_bias(w, 0, valid, x.options());                      // [B, 1, W, W]
  for (const auto& block : *blocks) x = block->as<nn::LlamaBlock>()->forward(x, rotary, bias);
  x = norm(x) * valid.unsqueeze(-1).to(x.scalar_type());
  return options_.l2_norm_output ? F::normalize(x, F::NormalizeFuncOptions().dim(-1).eps(1e-6)) : x;
}

torch::Tensor LlamaIdImpl::item_embeddings(const torch::Tensor& item_ids) { return project(item_embedding(item_ids)); }

torch::Tensor LlamaIdImpl::all_item_embeddings() { return project(item_embedding->weight); }

}  // namespace seqrec::models
