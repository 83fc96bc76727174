// Decoder-only language models from Hugging Face folders (LLaMA-2/3, TinyLlama, Mistral-style,
// Qwen2): config.json -> DecoderConfig -> DecoderLm; weights from model.safetensors or sharded
// model-0000x-of-0000y.safetensors with model.safetensors.index.json, memory-mapped and copied
// once into the parameters. Tensor names are Hugging Face's, so checkpoints load by name.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>

#include <memory>
#include <set>
#include <string>
#include <vector>

#include "seqrec/nn/block_gate.h"
#include "seqrec/nn/llama_block.h"

namespace seqrec::llm {

/// The architecture fields of a Hugging Face config.json that the forward pass depends on.
struct DecoderConfig {
  std::string model_type = "llama";   ///< llama | mistral | qwen2 | qwen2_vl (its language model)
  int64_t vocab_size = 32000;
  int64_t hidden_size = 4096;
  int64_t intermediate_size = 11008;
  int64_t num_layers = 32;            ///< num_hidden_layers
  int64_t num_heads = 32;             ///< num_attention_heads
  int64_t num_kv_heads = 32;          ///< num_key_value_heads (defaults to num_heads)
  int64_t head_dim = 128;             ///< head_dim (defaults to hidden_size / num_heads)
  int64_t max_position_embeddings = 2048;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  bool tie_word_embeddings = false;
  bool attention_bias = false;        ///< q/k/v biases (Qwen2: true)
  int64_t bos_token_id = -1;
  int64_t eos_token_id = -1;
  // rope_scaling of type "llama3" (LLaMA-3.1/3.2); factor 0 = none.
  double rope_factor = 0;
  double rope_low_freq_factor = 1;
  double rope_high_freq_factor = 4;
  int64_t rope_original_max_position = 8192;
  double dropout = 0.0;               ///< attention_dropout (also used on residual branches when training)
  /// Qwen2-VL's M-RoPE (rope_scaling.mrope_section): rotary channel pairs driven by the temporal,
  /// height and width position (sum = head_dim / 2). Empty: 1-D RoPE. With it, positions may be
  /// [3, B, T]; 1-D positions [B, T] are M-RoPE with the three equal (text tokens).
  std::vector<int64_t> mrope_section;
};

/// Whether `sections` is a valid M-RoPE split of `config`'s rotary channel pairs: 3 non-negative
/// counts (t, h, w) summing to head_dim / 2.
bool valid_mrope_section(const std::vector<int64_t>& sections, const DecoderConfig& config);

/// Parses <dir>/config.json; throws DataError naming the file and field for missing or bad values.
DecoderConfig read_decoder_config(const std::string& dir);

/// The transformer body (HF `model.`): embed_tokens, layers, norm.
class DecoderBodyImpl : public torch::nn::Module {
 public:
  explicit DecoderBodyImpl(const DecoderConfig& config);
  torch::nn::Embedding embed_tokens{nullptr};
  torch::nn::ModuleList layers{nullptr};
  nn::RmsNorm norm{nullptr};
};
TORCH_MODULE(DecoderBody);

/// Inputs of one forward pass: token ids or input embeddings.
struct DecoderInput {
  torch::Tensor input_ids;      ///< [B, T] int64, or undefined when inputs_embeds is given
  torch::Tensor inputs_embeds;  ///< [B, T, D]
  torch::Tensor positions;      ///< [B, T] int64, or [3, B, T] (t, h, w) under M-RoPE; default past..past+T-1
  torch::Tensor key_valid;      ///< [B, past+T] bool: false for padding keys; default all valid
  torch::Tensor bias;           ///< optional additive attention mask [B or 1, 1, T, S] (overrides causal)
  /// Packed segments (HLLM item texts): input is one row [1, T]; each segment attends causally to
  /// itself only; positions must be given; no cache. Null = an ordinary batch.
  const nn::PackedSegments* packed = nullptr;
};

/// KV caches of all layers.
using DecoderCache = std::vector<nn::KvCache>;

/// A decoder-only LM.
class DecoderLmImpl : public torch::nn::Module {
 public:
  explicit DecoderLmImpl(const DecoderConfig& config);
  /// Last-layer hidden states after the final norm: [B, T, D]. With a cache, appends to it.
  torch::Tensor forward_hidden(const DecoderInput& input, DecoderCache* cache = nullptr);
  /// Next-token logits for hidden states: [.., V].
  torch::Tensor logits(const torch::Tensor& hidden);
  const DecoderConfig& config() const { return config_; }
  DecoderConfig& mutable_config() { return config_; }
  /// Gradient checkpointing: when training, each block's activations are recomputed in backward
  /// instead of being kept (dropout masks are replayed exactly, on every device).
  bool gradient_checkpointing = false;
  /// When set, every block runs through it, checkpointed or not (ZeRO-3: train/zero.h's Zero3Gate
  /// makes a block's parameters whole only while it runs forward or backward).
  nn::BlockGate* block_gate = nullptr;
  /// Compute dtype of forward_hidden and logits in training mode: kFloat, or kBFloat16 for mixed
  /// precision under autocast (llm/precision.h; parameters stay float32, outputs are float32).
  /// Eval mode always computes in float32.
  torch::Dtype training_dtype = torch::kFloat;
  DecoderBody model{nullptr};
  torch::nn::Linear lm_head{nullptr};  ///< undefined when tied to the embeddings

 private:
  DecoderConfig config_;
  torch::Tensor inv_freq_;
};
TORCH_MODULE(DecoderLm);

/// RoPE inverse frequencies of a config, llama3 rope_scaling applied.
torch::Tensor decoder_inverse_frequencies(const DecoderConfig& config);

/// Qwen2-VL's multimodal rotary tables for positions [3, B, T] (temporal, height, width): the
/// head_dim channels are cut into sections ++ sections (rotate-half layout), and chunk i takes its
/// cos / sin from position row i % 3, as transformers' apply_multimodal_rotary_pos_emb does.
nn::Rotary multimodal_rotary(const torch::Tensor& positions, const torch::Tensor& inv_freq,
                             const std::vector<int64_t>& sections);

/// Throws DataError when a token id of `ids` is negative or >= vocab_size (the message says the
/// text was probably tokenized with another tokenizer); LibTorch's embedding would abort instead.
/// forward_hidden checks ids on the CPU; code that copies ids to a GPU calls this on the host copy
/// first (reading GPU ids back would synchronise every forward).
void check_token_ids(const torch::Tensor& ids, int64_t vocab_size);

/// Loads every parameter of `model` from the safetensors in `dir` (single file or sharded with an
/// index), converting F16/BF16 to the parameter dtype. Throws CheckpointError listing missing and
/// unexpected tensor names, or naming a shape mismatch. Names in `skip` are neither loaded nor
/// reported (HLLM's user LLM does not use the token embeddings of its checkpoint).
void load_hf_weights(torch::nn::Module& model, const std::string& dir, bool tied_embeddings,
                     const std::set<std::string>& skip = {});

/// Grows (or shrinks) the vocabulary to `vocab_size`: existing rows are kept, new embedding and
/// output rows start at the mean of the existing ones (as transformers' mean resizing does), so new
/// tokens begin as an "average" token. LC-Rec adds its semantic-ID tokens this way.
void resize_token_embeddings(DecoderLmImpl& lm, int64_t vocab_size);

/// read_decoder_config + construction + load_hf_weights.
DecoderLm load_decoder_lm(const std::string& dir);

}  // namespace seqrec::llm
