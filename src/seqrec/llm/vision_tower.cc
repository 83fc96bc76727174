// CLIP / SigLIP / Qwen2-VL vision towers (transformers' modeling_clip.py / modeling_siglip.py /
// modeling_qwen2_vl.py, vision side).
#include "seqrec/llm/vision_tower.h"

#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <set>

#include "seqrec/common/error.h"
#include "seqrec/common/fs.h"
#include "seqrec/common/safetensors.h"
#include "seqrec/llm/decoder_lm.h"

namespace seqrec::llm {
namespace {

using nlohmann::json;
namespace F = torch::nn::functional;

template <typename T>
T field(const json& j, const char* key, const T& fallback, const std::string& file) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  try {
    return j[key].get<T>();
  } catch (const json::exception&) {
    throw DataError(file + ": field '" + std::string(key) + "' has the wrong type");
  }
}

torch::Tensor activation(const torch::Tensor& x, const std::string& act) {
  if (act == "quick_gelu") return x * torch::sigmoid(1.702 * x);
  if (act == "gelu_pytorch_tanh") return F::gelu(x, F::GELUFuncOptions().approximate("tanh"));
  return F::gelu(x);
}

torch::nn::LayerNorm layer_norm(const VisionConfig& c) {
  return torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.hidden_size}).eps(c.layer_norm_eps));
}

// Qwen2-VL's vision_config (HF names: embed_dim is the encoder's width, hidden_size the merger's
// output). Pictures are resized to image_size (ours; HF resizes each to its own multiple of 28).
VisionConfig read_qwen2_vl_config(const json& j, const std::string& file) {
  VisionConfig c;
  c.model_type = "qwen2_vl";
  c.layer_norm_eps = 1e-6;
  c.hidden_size = field<int64_t>(j, "embed_dim", 1280, file);
  c.num_layers = field<int64_t>(j, "depth", 32, file);
  c.num_heads = field<int64_t>(j, "num_heads", 16, file);
  const double ratio = field<double>(j, "mlp_ratio", 4.0, file);
  c.intermediate_size = static_cast<int64_t>(c.hidden_size * ratio);  // HF: int(embed_dim * mlp_ratio)
  c.merger_size = field<int64_t>(j, "hidden_size", 3584, file);
  c.num_channels = field<int64_t>(j, "in_channels", field<int64_t>(j, "in_chans", 3, file), file);
  c.patch_size = field<int64_t>(j, "patch_size", 14, file);
  c.temporal_patch_size = field<int64_t>(j, "temporal_patch_size", 2, file);
  c.spatial_merge_size = field<int64_t>(j, "spatial_merge_size", 2, file);
  c.image_size = field<int64_t>(j, "image_size", 224, file);
  c.hidden_act = field<std::string>(j, "hidden_act", "quick_gelu", file);
  return c;
}

void check_vision_config(const VisionConfig& c, const std::string& where) {
  if (c.hidden_act != "quick_gelu" && c.hidden_act != "gelu" && c.hidden_act != "gelu_pytorch_tanh")
    throw DataError(where + ": hidden_act '" + c.hidden_act + "' is not supported (quick_gelu, gelu, gelu_pytorch_tanh)");
  if (c.num_heads < 1 || c.hidden_size % c.num_heads != 0)
    throw DataError(where + ": num_attention_heads must divide hidden_size");
  if (c.patch_size < 1 || c.image_size % c.patch_size != 0) throw DataError(where + ": patch_size must divide image_size");
  if (!c.qwen2_vl()) return;
  if ((c.hidden_size / c.num_heads) % 4 != 0)
    throw DataError(where + ": qwen2_vl's head size embed_dim / num_heads must be a multiple of 4 (2-D rotary), got " +
                    std::to_string(c.hidden_size / c.num_heads));
  if (c.spatial_merge_size < 1 || c.image_size % (c.patch_size * c.spatial_merge_size) != 0)
    throw DataError(where + ": image_size " + std::to_string(c.image_size) + " must be a multiple of patch_size x " +
                    "spatial_merge_size = " + std::to_string(c.patch_size * c.spatial_merge_size));
  if (c.temporal_patch_size < 1) throw DataError(where + ": temporal_patch_size must be >= 1");
  if (c.merger_size < 1 || c.intermediate_size < 1) throw DataError(where + ": hidden_size and mlp_ratio must be > 0");
}

}  // namespace

VisionConfig read_vision_config(const std::string& dir) {
  const std::string file = dir + "/config.json";
  if (!path_exists(file)) throw DataError(file + ": no such file (a Hugging Face vision model folder?)");
  json j;
  try {
    j = json::parse(read_file(file));
  } catch (const json::exception& e) {
    throw DataError(file + ": not valid JSON: " + e.what());
  }
  std::string type = field<std::string>(j, "model_type", "", file);
  if (type == "qwen2_vl") {
    if (!j.contains("vision_config") || !j["vision_config"].is_object())
      throw DataError(file + ": model_type qwen2_vl without a vision_config object");
    VisionConfig c = read_qwen2_vl_config(j["vision_config"], file);
    check_vision_config(c, file);
    return c;
  }
  if (j.contains("vision_config")) {  // a dual encoder (clip, siglip): its vision side
    j = j["vision_config"];
    type = type == "siglip" ? "siglip_vision_model" : "clip_vision_model";
    type = field<std::string>(j, "model_type", type, file);
  }
  VisionConfig c;
  c.model_type = type.empty() ? c.model_type : type;
  if (c.model_type != "clip_vision_model" && c.model_type != "siglip_vision_model")
    throw DataError(file + ": model_type '" + c.model_type + "' is not a supported vision tower (clip_vision_model, "
                    "siglip_vision_model, qwen2_vl)");
  if (c.siglip()) c.hidden_act = "gelu_pytorch_tanh";
  if (c.siglip()) c.layer_norm_eps = 1e-6;
  c.hidden_size = field<int64_t>(j, "hidden_size", c.hidden_size, file);
  c.intermediate_size = field<int64_t>(j, "intermediate_size", c.intermediate_size, file);
  c.num_layers = field<int64_t>(j, "num_hidden_layers", c.num_layers, file);
  c.num_heads = field<int64_t>(j, "num_attention_heads", c.num_heads, file);
  c.num_channels = field<int64_t>(j, "num_channels", c.num_channels, file);
  c.image_size = field<int64_t>(j, "image_size", c.image_size, file);
  c.patch_size = field<int64_t>(j, "patch_size", c.patch_size, file);
  c.layer_norm_eps = field<double>(j, "layer_norm_eps", c.layer_norm_eps, file);
  c.hidden_act = field<std::string>(j, "hidden_act", c.hidden_act, file);
  check_vision_config(c, file);
  return c;
}

VisionLayerImpl::VisionLayerImpl(const VisionConfig& c) : config_(c) {
  const int64_t d = c.hidden_size;
  layer_norm1 = register_module("layer_norm1", layer_norm(c));
  // HF names: self_attn.{q,k,v,out}_proj, mlp.fc1 / fc2 -- held by two plain submodules.
  auto attn = std::make_shared<torch::nn::Module>();
  q_proj = attn->register_module("q_proj", torch::nn::Linear(d, d));
  k_proj = attn->register_module("k_proj", torch::nn::Linear(d, d));
  v_proj = attn->register_module("v_proj", torch::nn::Linear(d, d));
  out_proj = attn->register_module("out_proj", torch::nn::Linear(d, d));
  register_module("self_attn", attn);
  layer_norm2 = register_module("layer_norm2", layer_norm(c));
  auto mlp = std::make_shared<torch::nn::Module>();
  fc1 = mlp->register_module("fc1", torch::nn::Linear(d, c.intermediate_size));
  fc2 = mlp->register_module("fc2", torch::nn::Linear(c.intermediate_size, d));
  register_module("mlp", mlp);
}

torch::Tensor VisionLayerImpl::forward(const torch::Tensor& x) {
  const int64_t n = x.size(0), t = x.size(1), h = config_.num_heads, hd = config_.hidden_size / h;
  auto heads = [&](const torch::Tensor& y) { return y.view({n, t, h, hd}).transpose(1, 2); };  // [n, H, T, hd]
  auto a = layer_norm1(x);
  auto q = heads(q_proj(a)), k = heads(k_proj(a)), v = heads(v_proj(a));
  auto att = torch::softmax(torch::matmul(q, k.transpose(-2, -1)) / std::sqrt(static_cast<double>(hd)), -1);  // [n, H, T, T]
  auto o = torch::matmul(att, v).transpose(1, 2).reshape({n, t, h * hd});                        // [n, T, d]
  auto y = x + out_proj(o);
  return y + fc2(activation(fc1(layer_norm2(y)), config_.hidden_act));
}

VisionEmbeddingsImpl::VisionEmbeddingsImpl(const VisionConfig& c) {
  const bool cls = !c.siglip();
  if (cls) class_embedding = register_parameter("class_embedding", torch::randn({c.hidden_size}) * 0.02);
  patch_embedding = register_module(
      "patch_embedding", torch::nn::Conv2d(torch::nn::Conv2dOptions(c.num_channels, c.hidden_size, c.patch_size)
                                               .stride(c.patch_size)
                                               .bias(c.siglip())));
  position_embedding =
      register_module("position_embedding", torch::nn::Embedding(c.num_patches() + (cls ? 1 : 0), c.hidden_size));
}

torch::Tensor VisionEmbeddingsImpl::forward(const torch::Tensor& pixels) {
  TORCH_CHECK(pixels.dim() == 4, "pixels must be [n, C, S, S]");
  auto x = patch_embedding(pixels).flatten(2).transpose(1, 2);                          // [n, P, d]
  if (class_embedding.defined())
    x = torch::cat({class_embedding.view({1, 1, -1}).expand({x.size(0), 1, x.size(2)}), x}, 1);  // [n, 1 + P, d]
  return x + position_embedding->weight.unsqueeze(0);
}

VisionTransformerImpl::VisionTransformerImpl(const VisionConfig& c) : config_(c) {
  embeddings = register_module("embeddings", VisionEmbeddings(c));
  if (!c.siglip()) pre_layrnorm = register_module("pre_layrnorm", layer_norm(c));
  auto encoder = std::make_shared<torch::nn::Module>();
  layers = encoder->register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.num_layers; ++i) layers->push_back(VisionLayer(c));
  register_module("encoder", encoder);
  post_layernorm = register_module("post_layernorm", layer_norm(c));
}

torch::Tensor VisionTransformerImpl::forward(const torch::Tensor& pixels) {
  auto x = embeddings(pixels);                                                         // [n, T, d]
  if (pre_layrnorm) x = pre_layrnorm(x);
  for (const auto& layer : *layers) x = layer->as<VisionLayerImpl>()->forward(x);
  // CLIP's post_layernorm only normalises the pooled class token; SigLIP's every token.
  return config_.siglip() ? post_layernorm(x) : x;
}

Qwen2VisionBlockImpl::Qwen2VisionBlockImpl(const VisionConfig& c) : config_(c) {
  const int64_t d = c.hidden_size;
  norm1 = register_module("norm1", layer_norm(c));
  norm2 = register_module("norm2", layer_norm(c));
  auto attn = std::make_shared<torch::nn::Module>();  // HF: attn.qkv, attn.proj, mlp.fc1, mlp.fc2
  qkv = attn->register_module("qkv", torch::nn::Linear(d, 3 * d));
  proj = attn->register_module("proj", torch::nn::Linear(d, d));
  register_module("attn", attn);
  auto mlp = std::make_shared<torch::nn::Module>();
  fc1 = mlp->register_module("fc1", torch::nn::Linear(d, c.intermediate_size));
  fc2 = mlp->register_module("fc2", torch::nn::Linear(c.intermediate_size, d));
  register_module("mlp", mlp);
}

torch::Tensor Qwen2VisionBlockImpl::forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin) {
  const int64_t n = x.size(0), t = x.size(1), h = config_.num_heads, hd = config_.hidden_size / h;
  auto qkv_heads = qkv(norm1(x)).view({n, t, 3, h, hd}).permute({2, 0, 3, 1, 4});          // [3, n, H, T, hd]
  auto rotate = [&](const torch::Tensor& y) {  // y * cos + rotate_half(y) * sin
    auto halves = y.chunk(2, -1);
    return y * cos + torch::cat({-halves[1], halves[0]}, -1) * sin;
  };
  auto q = rotate(qkv_heads[0]), k = rotate(qkv_heads[1]), v = qkv_heads[2];
  auto att = torch::softmax(torch::matmul(q, k.transpose(-2, -1)) / std::sqrt(static_cast<double>(hd)), -1);  // [n, H, T, T]
  auto y = x + proj(torch::matmul(att, v).transpose(1, 2).reshape({n, t, h * hd}));
  return y + fc2(activation(fc1(norm2(y)), config_.hidden_act));
}

Qwen2VisionTransformerImpl::Qwen2VisionTransformerImpl(const VisionConfig& c) : config_(c) {
  const int64_t tp = c.temporal_patch_size, p = c.patch_size, d = c.hidden_size;
  auto patch_embed = std::make_shared<torch::nn::Module>();
  patch_proj = patch_embed->register_module(
      "proj", torch::nn::Conv3d(torch::nn::Conv3dOptions(c.num_channels, d, {tp, p, p}).stride({tp, p, p}).bias(false)));
  register_module("patch_embed", patch_embed);
  blocks = register_module("blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.num_layers; ++i) blocks->push_back(Qwen2VisionBlock(c));
  const int64_t m = c.spatial_merge_size, wide = d * m * m;
  auto merger = std::make_shared<torch::nn::Module>();
  ln_q = merger->register_module("ln_q", layer_norm(c));
  merger_mlp = merger->register_module(
      "mlp", torch::nn::Sequential(torch::nn::Linear(wide, wide), torch::nn::GELU(), torch::nn::Linear(wide, c.merger_size)));
  register_module("merger", merger);
}

torch::Tensor Qwen2VisionTransformerImpl::forward(const torch::Tensor& pixels) {
  TORCH_CHECK(pixels.dim() == 4, "pixels must be [n, C, H, W]");
  const int64_t p = config_.patch_size, m = config_.spatial_merge_size, d = config_.hidden_size;
  const int64_t n = pixels.size(0), gh = pixels.size(2) / p, gw = pixels.size(3) / p;
  TORCH_CHECK(gh * p == pixels.size(2) && gw * p == pixels.size(3) && gh % m == 0 && gw % m == 0,
              "qwen2_vl: image sides must be multiples of patch_size x spatial_merge_size");
  // The picture fills every frame of a temporal patch: the 3-D kernel summed over time.
  auto x = F::conv2d(pixels, patch_proj->weight.sum(2), F::Conv2dFuncOptions().stride(p));  // [n, d, gh, gw]
  // Window order: (window row, window column, row in window, column in window).
  x = x.view({n, d, gh / m, m, gw / m, m}).permute({0, 2, 4, 3, 5, 1}).reshape({n, gh * gw, d});  // [n, T, d]
  const auto rows = torch::arange(gh, torch::kLong).view({gh / m, 1, m, 1}).expand({gh / m, gw / m, m, m}).reshape(-1);
  const auto cols = torch::arange(gw, torch::kLong).view({1, gw / m, 1, m}).expand({gh / m, gw / m, m, m}).reshape(-1);
  // VisionRotaryEmbedding(head_dim / 2): inv_freq_j = 10000^(-2j / (head_dim / 2)), j < head_dim / 4.
  const int64_t rot = d / config_.num_heads / 2;
  const auto inv_freq = 1.0 / torch::pow(10000.0, torch::arange(0, rot, 2, torch::kFloat) / static_cast<double>(rot));
  auto angles = torch::cat({torch::outer(rows.to(torch::kFloat), inv_freq), torch::outer(cols.to(torch::kFloat), inv_freq)}, 1);
  angles = torch::cat({angles, angles}, 1).to(x.device());                                  // [T, head_dim]
  const auto cos = angles.cos().to(x.scalar_type()), sin = angles.sin().to(x.scalar_type());
  for (const auto& block : *blocks) x = block->as<Qwen2VisionBlockImpl>()->forward(x, cos, sin);
  return merger_mlp->forward(ln_q(x).reshape({n, gh * gw / (m * m), d * m * m}));           // [n, T / m^2, out]
}

VisionTowerImpl::VisionTowerImpl(const VisionConfig& config) : config_(config) {
  if (config.qwen2_vl())
    visual = register_module("visual", Qwen2VisionTransformer(config));
  else
    vision_model = register_module("vision_model", VisionTransformer(config));
}

torch::Tensor VisionTowerImpl::forward(const torch::Tensor& pixels) {
  return visual ? visual(pixels) : vision_model(pixels);
}

VisionTower load_vision_tower(const std::string& dir) {
  VisionTower tower(read_vision_config(dir));
  // Everything outside vision_model.* (a dual encoder's text tower, the projections, SigLIP's
  // pooling head) is not ours to load.
  std::set<std::string> skip;
  for (const auto& file : hf_weight_files(dir))
    for (const auto& name : SafetensorsFile::open(file).names()) skip.insert(name);
  for (const auto& p : tower->named_parameters()) skip.erase(p.key());
  // Qwen2-VL: the language model beside `visual.*` is not ours either.
  const char* prefix = tower->config().qwen2_vl() ? "visual." : "vision_model.";
  for (auto it = skip.begin(); it != skip.end();)
    it = it->rfind(prefix, 0) == 0 && it->find(".head.") == std::string::npos &&
                 it->find("position_ids") == std::string::npos
             ? skip.erase(it)
             : std::next(it);
  load_hf_weights(*tower, dir, false, skip);
  return tower;
}

}  // namespace seqrec::llm
