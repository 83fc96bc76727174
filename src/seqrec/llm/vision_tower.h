// CLIP / SigLIP / Qwen2-VL vision transformers from Hugging Face folders (Molar's image encoder).
//
// config.json is a vision model's own config (model_type clip_vision_model / siglip_vision_model)
// or a dual-encoder's (clip / siglip) or Qwen2-VL's (qwen2_vl) whose `vision_config` is read. Tensor names are HF's
// (`vision_model.embeddings.patch_embedding.weight`, ...); a dual-encoder's text tower and SigLIP's
// pooling head are ignored. The forward pass is HF's last_hidden_state:
//   x = [class_embedding ;] conv_patch(pixels) + position_embedding    [n, T, d]  (T = P or 1 + P)
//   CLIP:   x = pre_layrnorm(x)
//   block:  x += out_proj(attn(layer_norm1(x)));  x += fc2(act(fc1(layer_norm2(x))))   (pre-LN)
//   SigLIP: x = post_layernorm(x)   (CLIP's post_layernorm touches only its pooled output)
//
// Qwen2-VL (modeling_qwen2_vl.py, Qwen2VisionTransformerPretrainedModel; tensors `visual.*`):
//   patches of p x p pixels; the image is its own second frame (the processor repeats a still image
//   to temporal_patch_size frames), so the Conv3d patch embedding is a Conv2d with its kernel summed
//   over time; tokens are ordered by merge window (m x m neighbouring patches in a row), as the
//   processor flattens them;
//   block:  x += proj(attn(norm1(x)));  x += fc2(act(fc1(norm2(x))))   (LayerNorm eps 1e-6)
//   attn:   qkv in one Linear; 2-D rotary on q and k (the first quarter of each half of a head's
//           channels turns with the patch's row, the second with its column; theta 10000); full
//           attention inside each image
//   merger: ln_q, then each window's m*m tokens concatenated, Linear, GELU, Linear -> merger_size.
// Unlike HF's processor (smart_resize keeps the aspect ratio, so the token count varies), pictures
// are resized to a fixed image_size x image_size: every item gets (image_size / p / m)^2 tokens.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>

#include <string>

namespace seqrec::llm {

/// The fields of a vision_config that the forward pass depends on.
struct VisionConfig {
  std::string model_type = "clip_vision_model";  ///< clip_vision_model | siglip_vision_model | qwen2_vl
  int64_t hidden_size = 768;                     ///< the encoder's width (Qwen2-VL: embed_dim)
  int64_t intermediate_size = 3072;              ///< Qwen2-VL: embed_dim x mlp_ratio
  int64_t num_layers = 12;                       ///< num_hidden_layers (Qwen2-VL: depth)
  int64_t num_heads = 12;                        ///< num_attention_heads (Qwen2-VL: num_heads)
  int64_t num_channels = 3;
  int64_t image_size = 224;
  int64_t patch_size = 32;
  double layer_norm_eps = 1e-5;
  std::string hidden_act = "quick_gelu";         ///< quick_gelu | gelu | gelu_pytorch_tanh
  // Qwen2-VL only:
  int64_t temporal_patch_size = 2;               ///< frames per patch (a picture is repeated to fill them)
  int64_t spatial_merge_size = 2;                ///< m: m x m patches become one output token
  int64_t merger_size = 0;                       ///< the merger's output size (HF vision_config.hidden_size)
  bool siglip() const { return model_type == "siglip_vision_model"; }
  bool qwen2_vl() const { return model_type == "qwen2_vl"; }
  bool has_class_token() const { return model_type == "clip_vision_model"; }
  int64_t num_patches() const { return (image_size / patch_size) * (image_size / patch_size); }
  /// The width of the tower's output tokens.
  int64_t output_size() const { return qwen2_vl() ? merger_size : hidden_size; }
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

/// One Qwen2-VL vision block (HF Qwen2VLVisionBlock).
class Qwen2VisionBlockImpl : public torch::nn::Module {
 public:
  explicit Qwen2VisionBlockImpl(const VisionConfig& config);
  /// x [n, T, d]; cos, sin [T, head_dim] (the 2-D rotary angles of the T tokens) -> [n, T, d].
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin);
  torch::nn::LayerNorm norm1{nullptr}, norm2{nullptr};
  torch::nn::Linear qkv{nullptr}, proj{nullptr}, fc1{nullptr}, fc2{nullptr};

 private:
  VisionConfig config_;
};
TORCH_MODULE(Qwen2VisionBlock);

/// HF `visual` (Qwen2VisionTransformerPretrainedModel) on still pictures of one size.
class Qwen2VisionTransformerImpl : public torch::nn::Module {
 public:
  explicit Qwen2VisionTransformerImpl(const VisionConfig& config);
  /// pixels [n, C, H, W] (H, W multiples of patch_size x spatial_merge_size) -> merged tokens
  /// [n, (H / p / m) (W / p / m), merger_size], in window order.
  torch::Tensor forward(const torch::Tensor& pixels);
  torch::nn::Conv3d patch_proj{nullptr};  ///< patch_embed.proj
  torch::nn::ModuleList blocks{nullptr};
  torch::nn::LayerNorm ln_q{nullptr};     ///< merger.ln_q
  torch::nn::Sequential merger_mlp{nullptr};  ///< merger.mlp: Linear, GELU, Linear

 private:
  VisionConfig config_;
};
TORCH_MODULE(Qwen2VisionTransformer);

/// A vision tower: `vision_model.*` (CLIP, SigLIP) or `visual.*` (Qwen2-VL) of an HF checkpoint.
class VisionTowerImpl : public torch::nn::Module {
 public:
  explicit VisionTowerImpl(const VisionConfig& config);
  /// pixels [n, C, S, S] (preprocessed) -> output tokens [n, T, output_size()]: CLIP's and SigLIP's
  /// last_hidden_state (CLIP's class token first), Qwen2-VL's merged patch tokens.
  torch::Tensor forward(const torch::Tensor& pixels);
  const VisionConfig& config() const { return config_; }
  VisionTransformer vision_model{nullptr};  ///< CLIP, SigLIP
  Qwen2VisionTransformer visual{nullptr};   ///< Qwen2-VL

 private:
  VisionConfig config_;
};
TORCH_MODULE(VisionTower);

/// read_vision_config + construction + the `vision_model.*` weights of <dir> (model.safetensors or
/// an index); CheckpointError lists missing tensors or names a shape mismatch.
VisionTower load_vision_tower(const std::string& dir);

}  // namespace seqrec::llm
