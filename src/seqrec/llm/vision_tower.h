// CLIP / SigLIP vision transformers from Hugging Face folders (Molar's image encoder).
//
// config.json is a vision model's own config (model_type clip_vision_model / siglip_vision_model)
// or a dual-encoder's (clip / siglip) whose `vision_config` is read. Tensor names are HF's
// (`vision_model.embeddings.patch_embedding.weight`, ...); a dual-encoder's text tower and SigLIP's
// pooling head are ignored. The forward pass is HF's last_hidden_state:
//   x = [class_embedding ;] conv_patch(pixels) + position_embedding    [n, T, d]  (T = P or 1 + P)
//   CLIP:   x = pre_layrnorm(x)
//   block:  x += out_proj(attn(layer_norm1(x)));  x += fc2(act(fc1(layer_norm2(x))))   (pre-LN)
//   SigLIP: x = post_layernorm(x)   (CLIP's post_layernorm touches only its pooled output)
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>

#include <string>

namespace seqrec::llm {

/// The fields of a vision_config that the forward pass depends on.
struct VisionConfig {
  std::string model_type = "clip_vision_model";  ///< clip_vision_model | siglip_vision_model
  int64_t hidden_size = 768;
  int64_t intermediate_size = 3072;
  int64_t num_layers = 12;                       ///< num_hidden_layers
  int64_t num_heads = 12;                        ///< num_attention_heads
  int64_t num_channels = 3;
  int64_t image_size = 224;
  int64_t patch_size = 32;
  double layer_norm_eps = 1e-5;
  std::string hidden_act = "quick_gelu";         ///< quick_gelu | gelu | gelu_pytorch_tanh
  bool siglip() const { return model_type == "siglip_vision_model"; }
  int64_t num_patches() const { return (image_size / patch_size) * (image_size / patch_size); }
};

/// Parses <dir>/config.json (its vision_config when there is one); DataError names file and field.
VisionConfig read_vision_config(const std::string& dir);

/// One pre-LN encoder layer (HF CLIPEncoderLayer / SiglipEncoderLayer).
class VisionLayerImpl : public torch::nn::Module {
 public:
  explicit VisionLayerImpl(const VisionConfig& config);
  torch::Tensor forward(const torch::Tensor& x);  ///< [n, T, d] -> [n, T, d]
  torch::nn::LayerNorm layer_norm1{nullptr}, layer_norm2{nullptr};
  torch::nn::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, out_proj{nullptr};
  torch::nn::Linear fc1{nullptr}, fc2{nullptr};

 private:
  VisionConfig config_;
};
TORCH_MODULE(VisionLayer);

/// HF `vision_model.embeddings`.
class VisionEmbeddingsImpl : public torch::nn::Module {
 public:
  explicit VisionEmbeddingsImpl(const VisionConfig& config);
  torch::Tensor forward(const torch::Tensor& pixels);  ///< [n, C, S, S] -> [n, T, d]
  torch::Tensor class_embedding;                       ///< [d] (CLIP only)
  torch::nn::Conv2d patch_embedding{nullptr};
  torch::nn::Embedding position_embedding{nullptr};
};
TORCH_MODULE(VisionEmbeddings);

/// HF `vision_model` (CLIPVisionTransformer / SiglipVisionTransformer without pooling).
class VisionTransformerImpl : public torch::nn::Module {
 public:
  explicit VisionTransformerImpl(const VisionConfig& config);
  torch::Tensor forward(const torch::Tensor& pixels);  ///< last_hidden_state [n, T, d]
  VisionEmbeddings embeddings{nullptr};
  torch::nn::LayerNorm pre_layrnorm{nullptr};         ///< CLIP only (HF's spelling)
  torch::nn::ModuleList layers{nullptr};               ///< registered as encoder.layers
  torch::nn::LayerNorm post_layernorm{nullptr};

 private:
  VisionConfig config_;
};
TORCH_MODULE(VisionTransformer);

/// A vision tower: `vision_model.*` of an HF checkpoint.
class VisionTowerImpl : public torch::nn::Module {
 public:
  explicit VisionTowerImpl(const VisionConfig& config);
  /// pixels [n, C, S, S] (preprocessed) -> last_hidden_state [n, T, d].
  torch::Tensor forward(const torch::Tensor& pixels);
  const VisionConfig& config() const { return config_; }
  VisionTransformer vision_model{nullptr};

 private:
  VisionConfig config_;
};
TORCH_MODULE(VisionTower);

/// read_vision_config + construction + the `vision_model.*` weights of <dir> (model.safetensors or
/// an index); CheckpointError lists missing tensors or names a shape mismatch.
VisionTower load_vision_tower(const std::string& dir);

}  // namespace seqrec::llm
