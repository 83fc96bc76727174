// CLIP / SigLIP vision towers (transformers' modeling_clip.py / modeling_siglip.py, vision side).
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
  if (j.contains("vision_config")) {  // a dual encoder (clip, siglip): its vision side
    j = j["vision_config"];
    type = type == "siglip" ? "siglip_vision_model" : "clip_vision_model";
    type = field<std::string>(j, "model_type", type, file);
  }
  VisionConfig c;
  c.model_type = type.empty() ? c.model_type : type;
  if (c.model_type != "clip_vision_model" && c.model_type != "siglip_vision_model")
    throw DataError(file + ": model_type '" + c.model_type + "' is not a supported vision tower (clip_vision_model, "
                    "siglip_vision_model)");
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
  if (c.hidden_act != "quick_gelu" && c.hidden_act != "gelu" && c.hidden_act != "gelu_pytorch_tanh")
    throw DataError(file + ": hidden_act '" + c.hidden_act + "' is not supported (quick_gelu, gelu, gelu_pytorch_tanh)");
  if (c.num_heads < 1 || c.hidden_size % c.num_heads != 0)
    throw DataError(file + ": num_attention_heads must divide hidden_size");
  if (c.patch_size < 1 || c.image_size % c.patch_size != 0) throw DataError(file + ": patch_size must divide image_size");
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

VisionTowerImpl::VisionTowerImpl(const VisionConfig& config) : config_(config) {
  vision_model = register_module("vision_model", VisionTransformer(config));
}

torch::Tensor VisionTowerImpl::forward(const torch::Tensor& pixels) { return vision_model(pixels); }

VisionTower load_vision_tower(const std::string& dir) {
  VisionTower tower(read_vision_config(dir));
  // Everything outside vision_model.* (a dual encoder's text tower, the projections, SigLIP's
  // pooling head) is not ours to load.
  std::set<std::string> skip;
  const std::string index = dir + "/model.safetensors.index.json";
  if (path_exists(index)) {
    json j = json::parse(read_file(index));
    if (j.contains("weight_map") && j["weight_map"].is_object())
      for (auto& [name, shard] : j["weight_map"].items()) skip.insert(name);
  } else if (path_exists(dir + "/model.safetensors")) {
    for (const auto& name : SafetensorsFile::open(dir + "/model.safetensors").names()) skip.insert(name);
  }
  for (const auto& p : tower->named_parameters()) skip.erase(p.key());
  for (auto it = skip.begin(); it != skip.end();)
    it = it->rfind("vision_model.", 0) == 0 && it->find(".head.") == std::string::npos &&
                 it->find("position_ids") == std::string::npos
             ? skip.erase(it)
             : std::next(it);
  load_hf_weights(*tower, dir, false, skip);
  return tower;
}

}  // namespace seqrec::llm
