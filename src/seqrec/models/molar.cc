// Molar: HLLM + image soft tokens + post-alignment with a frozen ID model (systems.md §1.10).
#include "seqrec/models/molar.h"

#include <torch/torch.h>

#include "seqrec/common/error.h"
#include "seqrec/config/config_node.h"
#include "seqrec/config/validate.h"

namespace seqrec::models {
namespace {

namespace F = torch::nn::functional;

torch::Tensor l2n(const torch::Tensor& x) { return F::normalize(x, F::NormalizeFuncOptions().dim(-1).eps(1e-6)); }

ItemInputs parse_inputs(const std::string& s, const std::string& path) {
  if (s == "text") return ItemInputs::kText;
  if (s == "image") return ItemInputs::kImage;
  if (s == "both") return ItemInputs::kBoth;
  throw ConfigError(path, "'" + s + "' is not one of text, image, both");
}

PostAlignmentOptions read_post_alignment(config::ConfigNode n) {
  PostAlignmentOptions o;
  o.id_checkpoint = n.require<std::string>("id_checkpoint");
  o.alpha = n.get<double>("alpha", o.alpha);
  o.tau = n.get<double>("tau", o.tau);
  o.id_dim = n.get<int64_t>("id_dim", o.id_dim);
  if (o.id_checkpoint.empty()) throw ConfigError(n.path() + ".id_checkpoint", "must name a seqrec checkpoint");
  if (!(o.alpha >= 0)) throw ConfigError(n.path() + ".alpha", "must be >= 0");
  if (!(o.tau > 0)) throw ConfigError(n.path() + ".tau", "must be > 0");
  if (o.id_dim < 0) throw ConfigError(n.path() + ".id_dim", "must be >= 0 (0 = the LLMs' hidden size)");
  return o;
}

std::array<double, 3> read_triple(config::ConfigNode n, const char* key, std::array<double, 3> fallback) {
  auto v = n.get<std::vector<double>>(key, {fallback[0], fallback[1], fallback[2]});
  if (v.size() != 3) throw ConfigError(n.path() + "." + key, "must list 3 values (R, G, B)");
  return {v[0], v[1], v[2]};
}

VisionTowerOptions read_vision_common(config::ConfigNode n, VisionTowerOptions o) {
  if (n.has("config"))  // an unknown activation would otherwise run as gelu
    config::require_one_of(o.config.hidden_act, {"quick_gelu", "gelu", "gelu_pytorch_tanh"},
                           n.path() + ".config.hidden_act");
  o.freeze = n.get<bool>("freeze", o.freeze);
  o.image_mean = read_triple(n, "image_mean", o.image_mean);
  o.image_std = read_triple(n, "image_std", o.image_std);
  o.image_size = n.get<int64_t>("image_size", o.image_size);
  if (o.image_size < 0) throw ConfigError(n.path() + ".image_size", "must be >= 0 (0 = the tower's)");
  return o;
}

// A scratch Qwen2-VL tower, its keys as in HF's vision_config (embed_dim is the encoder's width,
// hidden_size the merger's output).
VisionTowerOptions read_qwen2_vl_vision(config::ConfigNode n, config::ConfigNode c, VisionTowerOptions o) {
  auto& v = o.config;
  v.layer_norm_eps = 1e-6;
  v.hidden_size = c.get<int64_t>("embed_dim", 64);
  v.num_layers = c.get<int64_t>("depth", 2);
  v.num_heads = c.get<int64_t>("num_heads", 4);
  v.intermediate_size = static_cast<int64_t>(v.hidden_size * c.get<double>("mlp_ratio", 2.0));
  v.merger_size = c.get<int64_t>("hidden_size", v.hidden_size);
  v.patch_size = c.get<int64_t>("patch_size", 14);
  v.spatial_merge_size = c.get<int64_t>("spatial_merge_size", 2);
  v.temporal_patch_size = c.get<int64_t>("temporal_patch_size", 2);
  v.image_size = c.get<int64_t>("image_size", 56);
  v.hidden_act = c.get<std::string>("hidden_act", v.hidden_act);
  if (v.num_heads < 1 || v.hidden_size % v.num_heads != 0 || (v.hidden_size / v.num_heads) % 4 != 0)
    throw ConfigError(c.path() + ".num_heads", "must divide embed_dim into heads of a multiple of 4 (2-D rotary)");
  if (v.intermediate_size < 1 || v.merger_size < 1 || v.temporal_patch_size < 1)
    throw ConfigError(c.path(), "mlp_ratio, hidden_size and temporal_patch_size must be > 0");
  if (v.patch_size < 1 || v.spatial_merge_size < 1 || v.image_size % (v.patch_size * v.spatial_merge_size) != 0)
    throw ConfigError(c.path() + ".image_size", "must be a multiple of patch_size x spatial_merge_size");
  return read_vision_common(n, o);
}

VisionTowerOptions read_vision(config::ConfigNode n) {
  VisionTowerOptions o;
  o.pretrained = n.get<std::string>("pretrained", "");
  if (n.has("config")) {
    if (!o.pretrained.empty()) throw ConfigError(n.path(), "give either pretrained or config, not both");
    config::ConfigNode c = n.child("config");
    auto& v = o.config;
    v.model_type = c.get<std::string>("model_type", v.model_type);
    if (v.qwen2_vl()) return read_qwen2_vl_vision(n, c, o);
    v.hidden_size = c.get<int64_t>("hidden_size", 64);
    v.intermediate_size = c.get<int64_t>("intermediate_size", 128);
    v.num_layers = c.get<int64_t>("num_hidden_layers", 2);
    v.num_heads = c.get<int64_t>("num_attention_heads", 4);
    v.image_size = c.get<int64_t>("image_size", 32);
    v.patch_size = c.get<int64_t>("patch_size", 8);
    v.hidden_act = c.get<std::string>("hidden_act", v.hidden_act);
    v.layer_norm_eps = c.get<double>("layer_norm_eps", v.layer_norm_eps);
    if (v.model_type != "clip_vision_model" && v.model_type != "siglip_vision_model")
      throw ConfigError(c.path() + ".model_type", "must be clip_vision_model, siglip_vision_model or qwen2_vl");
    if (v.num_heads < 1 || v.hidden_size % v.num_heads != 0)
      throw ConfigError(c.path() + ".num_attention_heads", "must divide hidden_size");
    if (v.patch_size < 1 || v.image_size % v.patch_size != 0)
      throw ConfigError(c.path() + ".patch_size", "must divide image_size");
  } else if (o.pretrained.empty()) {
    throw ConfigError(n.path(), "needs pretrained (a Hugging Face folder) or config (an architecture)");
  }
  return read_vision_common(n, o);
}

ItemImageOptions read_image(config::ConfigNode n) {
  ItemImageOptions o;
  o.has_vision = n.has("vision");
  if (o.has_vision) {
    o.vision = read_vision(n.child("vision"));
    o.folder = n.require<std::string>("folder");
    o.allow_missing = n.get<bool>("allow_missing", o.allow_missing);
    if (n.has("features")) throw ConfigError(n.path() + ".features", "give either features or vision + folder, not both");
  } else {
    o.features = n.require<std::string>("features");
    o.tensor = n.get<std::string>("tensor", o.tensor);
  }
  o.tokens = n.get<int64_t>("tokens", o.tokens);
  if (o.tokens < 1) throw ConfigError(n.path() + ".tokens", "must be >= 1");
  const std::string projector = n.get<std::string>("projector", "mlp");
  config::require_one_of(projector, {"mlp", "none"}, n.path() + ".projector");
  o.projector = projector == "mlp";
  return o;
}

}  // namespace

MolarOptions read_molar_options(config::ConfigNode node, const ModelContext& context) {
  MolarOptions o;
  if (node.has("personalized"))
    throw ConfigError(node.path() + ".personalized", "molar does not take PerSRec's user tokens (use name: hllm)");
  o.hllm = read_hllm_options(node, context);
  o.inputs = parse_inputs(node.get<std::string>("inputs", "text"), node.path() + ".inputs");
  if (node.has("image")) o.image = read_image(node.child("image"));
  if (o.inputs != ItemInputs::kText && o.image.features.empty() && !o.image.has_vision)
    throw ConfigError(node.path() + ".image.features", "inputs '" + node.get<std::string>("inputs", "") +
                                                           "' needs per-item image features or vision + folder");
  if (node.has("post_alignment")) o.post_alignment = read_post_alignment(node.child("post_alignment"));
  o.user_token = node.get<bool>("user_token", o.user_token);
  return o;
}

MolarImpl::MolarImpl(const MolarOptions& options, std::shared_ptr<const data::ItemTokens> tokens, torch::Tensor images)
    : HllmImpl(options.hllm, std::move(tokens)), molar_(options), images_(std::move(images)) {
  const int64_t d = item_token.size(0);
  if (molar_.inputs != ItemInputs::kText) {
    const auto& im = molar_.image;
    const int64_t want_dim = im.has_vision ? 4 : 2;
    TORCH_CHECK(images_.defined() && images_.dim() == want_dim, "images must be [V, d_img] or [V, C, S, S]");
    const std::string source = im.has_vision ? im.folder : im.features;
    if (images_.size(0) != options.hllm.num_items)
      throw DataError(source + ": " + std::to_string(images_.size(0)) + " rows of image features, the data has " +
                      std::to_string(options.hllm.num_items) + " items (row r is item r + 1)");
    int64_t in = 0;
    if (im.has_vision) {
      vision = register_module("vision", im.vision.pretrained.empty() ? llm::VisionTower(im.vision.config)
                                                                       : llm::load_vision_tower(im.vision.pretrained));
      if (im.vision.freeze)
        for (auto& p : vision->parameters()) p.set_requires_grad(false);
      in = vision->config().output_size();
    } else {
      in = images_.size(1);
    }
    const int64_t k = im.tokens;
    if (!im.projector) {  // Qwen2-VL: the merger already maps patches into the LLM's space
      if (in != d || k != 1)
        throw ConfigError("model.image.projector", "none feeds the image tokens to the item LLM as they are: they "
                                                   "must be " + std::to_string(d) + "-wide (the LLM's hidden size; "
                                                   "they are " + std::to_string(in) + ") with image.tokens 1 (" +
                                                   std::to_string(k) + ")");
    } else {
      // A LLaVA-style two-layer projector; one feature vector -> k soft tokens.
      image_projector = register_module("image_projector", torch::nn::Sequential(torch::nn::Linear(in, d), torch::nn::GELU(),
                                                                                 torch::nn::Linear(d, k * d)));
    }
  }
  const int64_t id_dim = molar_.post_alignment.id_dim;
  if (molar_.aligned() && id_dim != 0 && id_dim != d)
    align_projection = register_module("align_projection", torch::nn::Linear(torch::nn::LinearOptions(d, id_dim).bias(false)));
  if (molar_.user_token)  // drawn as HLLM draws the [ITEM] vector
    user_slot_token = register_parameter("user_slot_token", torch::randn({d}) * options.hllm.item_token_std);
}

torch::Tensor MolarImpl::encode(const data::SequenceBatch& batch) {
  if (!molar_.user_token) return HllmImpl::encode(batch);
  const auto& ids = batch.item_ids;                                                    // [B, W]
  const int64_t b = ids.size(0), w = ids.size(1), d = user_slot_token.size(0);
  const torch::Tensor items = input_embeddings(batch);                                 // [B, W, D] raw
  const auto dev = items.device();
  const auto slot = user_slot_token.view({1, 1, d}).to(items.dtype());
  const auto item_pos = torch::arange(w, torch::kLong) + batch.position_offset;       // as HLLM numbers them
  llm::DecoderInput in;
  if (batch.last_only && !is_training()) {  // [items, [User]]: causal, padding masked
    in.inputs_embeds = torch::cat({items, slot.expand({b, 1, d})}, 1);                // [B, W + 1, D]
    in.positions = torch::arange(w + 1, torch::kLong).add(batch.position_offset).unsqueeze(0).expand({b, w + 1}).to(dev);
    in.key_valid = torch::cat({ids.ne(0).to(torch::kCPU), torch::ones({b, 1}, torch::kBool)}, 1).to(dev);
    return l2n(user_llm->forward_hidden(in).narrow(1, w, 1));                         // [B, 1, D]
  }
  // Column 2i = item i, 2i + 1 = the slot after it (position i + 1).
  in.inputs_embeds = torch::stack({items, slot.expand({b, w, d})}, 2).reshape({b, 2 * w, d});
  in.positions = torch::stack({item_pos, item_pos + 1}, 1).reshape({1, 2 * w}).expand({b, 2 * w}).to(dev);
  const auto col = torch::arange(2 * w, torch::kLong);
  const auto item_of = col.div(2, "floor");                                           // [2W]
  const auto key_is_item = col.remainder(2).eq(0);
  // Query q sees the real items of its prefix; a slot also sees itself.
  auto allowed = item_of.unsqueeze(0).le(item_of.unsqueeze(1)).logical_and(key_is_item.unsqueeze(0));  // [2W, 2W]
  allowed = allowed.unsqueeze(0).logical_and(ids.ne(0).to(torch::kCPU).repeat_interleave(2, 1).unsqueeze(1));
  allowed = allowed.logical_or(torch::eye(2 * w, torch::kBool).logical_and(key_is_item.logical_not().unsqueeze(0)));
  in.bias = additive_mask(allowed, 0).to(dev, items.scalar_type());                   // [B, 1, 2W, 2W]
  auto hidden = user_llm->forward_hidden(in);                                          // [B, 2W, D]
  return l2n(hidden.view({b, w, 2, d}).select(2, 1));                                 // [B, W, D]
}

torch::Tensor MolarImpl::item_soft_tokens(const std::vector<int64_t>& ids) {
  if (molar_.inputs == ItemInputs::kText) return torch::Tensor();
  const auto dev = item_token.device();
  auto rows = torch::tensor(ids, torch::kLong) - 1;                                    // [n]
  auto feats = images_.index_select(0, rows).to(dev);                                  // [n, d_img] | [n, C, S, S]
  if (vision) {
    feats = vision->forward(feats);                                                    // [n, T, d_v]
    if (vision->config().has_class_token()) feats = feats.narrow(1, 1, feats.size(1) - 1);  // patches only: [n, P, d_v]
  } else {
    feats = feats.unsqueeze(1);                                                        // [n, 1, d_img]
  }
  const int64_t n = static_cast<int64_t>(ids.size()), d = item_token.size(0);
  return (image_projector ? image_projector->forward(feats) : feats).view({n, -1, d});  // [n, S, D]
}

std::pair<int64_t, int64_t> MolarImpl::soft_token_grid() const {
  if (!vision || !vision->config().qwen2_vl() || (image_projector && molar_.image.tokens != 1)) return {0, 0};
  const auto& c = vision->config();
  const int64_t side = c.image_size / (c.patch_size * c.spatial_merge_size);
  return {side, side};
}

int64_t MolarImpl::item_tower_version() const {
  int64_t v = HllmImpl::item_tower_version();
  if (image_projector)
    for (const auto& p : image_projector->parameters()) v += p._version();
  if (vision)
    for (const auto& p : vision->parameters()) v += p._version();
  return v;
}

void MolarImpl::set_id_model(SequenceRecommender id_model, int64_t id_max_seq_len) {
  TORCH_CHECK(id_model, "set_id_model: null model");
  torch::NoGradGuard no_grad;
  id_model->eval();
  for (auto& p : id_model->parameters()) p.set_requires_grad(false);
  const int64_t got = id_model->all_item_embeddings().size(1);
  const int64_t want = molar_.post_alignment.id_dim != 0 ? molar_.post_alignment.id_dim : item_token.size(0);
  if (got != want)
    throw ConfigError("model.post_alignment.id_dim",
                      molar_.post_alignment.id_checkpoint + " has user embeddings of size " + std::to_string(got) +
                          ", expected " + std::to_string(want) + " (set id_dim: " + std::to_string(got) + ")");
  id_model_ = std::move(id_model);
  id_max_seq_len_ = id_max_seq_len;
}

torch::Tensor MolarImpl::id_user_embeddings(const data::SequenceBatch& batch) {
  TORCH_CHECK(id_model_, "post-alignment needs the ID model: seqrec train installs it from "
                         "model.post_alignment.id_checkpoint (set_id_model)");
  torch::NoGradGuard no_grad;
  const auto dev = batch.item_ids.device();
  auto params = id_model_->parameters();
  if (!params.empty() && params[0].device() != dev) id_model_->to(dev);
  // The ID model sees the last min(W, its L) items, numbered as in its own training windows.
  const int64_t w = batch.item_ids.size(1), keep = std::min(w, id_max_seq_len_);
  data::SequenceBatch b;
  b.item_ids = batch.item_ids.narrow(1, w - keep, keep);                                // [B, W']
  if (batch.timestamps.defined()) b.timestamps = batch.timestamps.narrow(1, w - keep, keep);
  if (batch.target_timestamps.defined()) b.target_timestamps = batch.target_timestamps.narrow(1, w - keep, keep);
  b.user_ids = batch.user_ids;
  b.position_offset = id_max_seq_len_ - keep;
  b.last_only = true;
  auto h = id_model_->encode(b);                                                        // [B, W' or 1, D_id]
  return h.select(1, h.size(1) - 1).to(item_token.device());                            // [B, D_id]
}

torch::Tensor MolarImpl::auxiliary_loss(const data::SequenceBatch& batch, const torch::Tensor& hidden) {
  if (!molar_.aligned() || molar_.post_alignment.alpha == 0) return torch::Tensor();
  auto rows = batch.item_ids.select(1, batch.item_ids.size(1) - 1).ne(0).nonzero().squeeze(1);  // [B'] non-empty
  auto u_con = hidden.select(1, hidden.size(1) - 1).index_select(0, rows.to(hidden.device()));   // [B', D]
  if (align_projection) u_con = align_projection->forward(u_con);                               // [B', D_id]
  auto u_id = id_user_embeddings(batch).index_select(0, rows.to(u_con.device()));               // [B', D_id]
  return molar_.post_alignment.alpha * post_alignment_loss(u_con, u_id, molar_.post_alignment.tau);
}

torch::Tensor post_alignment_loss(const torch::Tensor& u_con, const torch::Tensor& u_id, double tau) {
  TORCH_CHECK(u_con.dim() == 2 && u_con.sizes() == u_id.sizes(), "post_alignment_loss: u_con and u_id must be [B, D]");
  auto logits = torch::matmul(l2n(u_con), l2n(u_id).t()) / tau;                        // [B, B]
  auto labels = torch::arange(logits.size(0), torch::TensorOptions().dtype(torch::kLong).device(logits.device()));
  return 0.5 * (F::cross_entropy(logits, labels) + F::cross_entropy(logits.t(), labels));
}

}  // namespace seqrec::models
