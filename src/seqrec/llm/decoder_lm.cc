// Decoder LM: config, forward and Hugging Face weight loading.
#include "seqrec/llm/decoder_lm.h"
#include "seqrec/llm/token_ids.h"

#include <ATen/CPUGeneratorImpl.h>
#include <sys/mman.h>
#include <unistd.h>
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <map>
#include <set>

#include "seqrec/common/error.h"
#include "seqrec/common/fs.h"
#include "seqrec/common/safetensors.h"
#include "seqrec/llm/precision.h"
#include "seqrec/nn/tensor_view.h"

namespace seqrec::llm {
namespace {

using nlohmann::json;

template <typename T>
T field(const json& j, const std::string& key, const T& fallback, const std::string& file) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  try {
    return it->get<T>();
  } catch (const std::exception& e) {
    throw DataError(file + ": field '" + key + "': " + e.what());
  }
}

// Rotary tables and mask travel as a non-tensor argument: constants for autograd.
struct BlockContext {
  std::shared_ptr<nn::LlamaBlockImpl> block;
  nn::Rotary rotary;
  torch::Tensor bias;
  bool is_packed = false;
  nn::PackedSegments packed;  // a copy (tensors are shared): backward runs after the caller returned
  torch::Dtype autocast = torch::kFloat;  // the forward's compute dtype, re-entered by the recomputation
  const nn::PackedSegments* packed_or_null() const { return is_packed ? &packed : nullptr; }
};

// The random state a block draws from: the CPU generator (fast_dropout seeds its masks from it on
// every device) and, for a tensor on another device, that device's default generator (ATen's own
// random ops there).
struct RngState {
  torch::Tensor cpu, device;
};

RngState save_rng(const torch::Device& device) {
  RngState s;
  s.cpu = at::detail::getDefaultCPUGenerator().get_state();
  if (!device.is_cpu()) s.device = at::globalContext().defaultGenerator(device).get_state();
  return s;
}

void restore_rng(const torch::Device& device, const RngState& s) {
  at::Generator cpu = at::detail::getDefaultCPUGenerator();
  cpu.set_state(s.cpu);
  if (s.device.defined()) {
    at::Generator gen = at::globalContext().defaultGenerator(device);
    gen.set_state(s.device);
  }
}

// Runs a block without keeping its activations; backward re-runs it with the same generator states
// and autocast dtype (so dropout masks and roundings repeat) and backpropagates through the
// recomputation.
struct CheckpointedBlock : public torch::autograd::Function<CheckpointedBlock> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x, const BlockContext& bc) {
    const RngState rng = save_rng(x.device());
    ctx->saved_data["rng"] = rng.cpu;
    if (rng.device.defined()) ctx->saved_data["device_rng"] = rng.device;
    ctx->save_for_backward({x});
    auto* holder = new BlockContext(bc);  // released in backward
    ctx->saved_data["context"] = reinterpret_cast<int64_t>(holder);
    torch::NoGradGuard no_grad;
    return bc.block->forward(x, bc.rotary, bc.bias, nullptr, bc.packed_or_null());
  }
  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::tensor_list grads) {
    std::unique_ptr<BlockContext> bc(reinterpret_cast<BlockContext*>(ctx->saved_data["context"].toInt()));
    auto x = ctx->get_saved_variables()[0].detach().requires_grad_(true);
    const RngState current = save_rng(x.device());
    RngState saved;
    saved.cpu = ctx->saved_data["rng"].toTensor();
    if (ctx->saved_data.count("device_rng")) saved.device = ctx->saved_data["device_rng"].toTensor();
    restore_rng(x.device(), saved);
    torch::Tensor out;
    {
      torch::AutoGradMode enable(true);
      AutocastScope autocast(x.device(), bc->autocast);
      out = bc->block->forward(x, bc->rotary, bc->bias, nullptr, bc->packed_or_null());
    }
    restore_rng(x.device(), current);
    torch::autograd::backward({out}, {grads[0]});  // accumulates the block's parameter gradients
    return {x.grad(), torch::Tensor()};
  }
};

// Drops the copied tensor's whole pages from this process's resident set (they stay in the page
// cache), so the peak RSS of loading is about one copy of the weights, not two.
void release_pages(const StTensorView& v) {
  const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(v.data) + page - 1) / page * page;
  const uintptr_t end = (reinterpret_cast<uintptr_t>(v.data) + static_cast<uintptr_t>(v.nbytes)) / page * page;
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
}

}  // namespace

bool valid_mrope_section(const std::vector<int64_t>& sections, const DecoderConfig& config) {
  int64_t pairs = 0;
  for (int64_t n : sections) {
    if (n < 0) return false;
    pairs += n;
  }
  return sections.size() == 3 && pairs == config.head_dim / 2;
}

DecoderConfig read_decoder_config(const std::string& dir) {
  const std::string file = dir + "/config.json";
  if (!path_exists(file)) throw DataError(file + ": no such file (is '" + dir + "' a Hugging Face model folder?)");
  json j;
  try {
    j = json::parse(read_file(file));
  } catch (const json::exception& e) {
    throw DataError(file + ": not valid JSON: " + e.what());
  }
  DecoderConfig c;
  c.model_type = field<std::string>(j, "model_type", c.model_type, file);
  const bool qwen2_vl = c.model_type == "qwen2_vl";
  if (qwen2_vl && j.contains("text_config") && j["text_config"].is_object()) {
    // Qwen2-VL's language model: its fields are top-level as released, under text_config as newer
    // transformers save them (text_config wins).
    json text = j["text_config"];
    for (auto& [k, v] : j.items())
      if (k != "text_config" && k != "vision_config" && !text.contains(k)) text[k] = v;
    j = std::move(text);
  }
  if (c.model_type != "llama" && c.model_type != "mistral" && c.model_type != "qwen2" && !qwen2_vl)
    throw DataError(file + ": model_type '" + c.model_type + "' is not supported (llama, mistral, qwen2, qwen2_vl)");
  for (const char* k : {"vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads"})
    if (!j.contains(k)) throw DataError(file + ": required field '" + std::string(k) + "' is missing");
  c.vocab_size = field<int64_t>(j, "vocab_size", 0, file);
  c.hidden_size = field<int64_t>(j, "hidden_size", 0, file);
  c.intermediate_size = field<int64_t>(j, "intermediate_size", 0, file);
  c.num_layers = field<int64_t>(j, "num_hidden_layers", 0, file);
  c.num_heads = field<int64_t>(j, "num_attention_heads", 0, file);
  c.num_kv_heads = field<int64_t>(j, "num_key_value_heads", c.num_heads, file);
  c.head_dim = field<int64_t>(j, "head_dim", c.hidden_size / std::max<int64_t>(1, c.num_heads), file);
  c.max_position_embeddings = field<int64_t>(j, "max_position_embeddings", c.max_position_embeddings, file);
  c.rms_norm_eps = field<double>(j, "rms_norm_eps", c.rms_norm_eps, file);
  c.rope_theta = field<double>(j, "rope_theta", c.rope_theta, file);
  c.tie_word_embeddings = field<bool>(j, "tie_word_embeddings", c.tie_word_embeddings, file);
  c.attention_bias = field<bool>(j, "attention_bias", c.model_type == "qwen2" || qwen2_vl, file);
  c.dropout = field<double>(j, "attention_dropout", 0.0, file);
  c.bos_token_id = j.contains("bos_token_id") && j["bos_token_id"].is_number() ? j["bos_token_id"].get<int64_t>() : -1;
  if (j.contains("eos_token_id") && j["eos_token_id"].is_number()) c.eos_token_id = j["eos_token_id"].get<int64_t>();
  if (j.contains("eos_token_id") && j["eos_token_id"].is_array() && !j["eos_token_id"].empty())
    c.eos_token_id = j["eos_token_id"][0].get<int64_t>();
  if (j.contains("rope_scaling") && j["rope_scaling"].is_object()) {
    const json& rs = j["rope_scaling"];
    const std::string type = field<std::string>(rs, "rope_type", field<std::string>(rs, "type", "", file), file);
    // Qwen2-VL's M-RoPE (type mrope, or default with mrope_section): a text token has the same
    // position in its three sections (plain RoPE); image tokens get (t, row, column) positions.
    if (!(type == "llama3" || type == "default" || (qwen2_vl && type == "mrope")))
      throw DataError(file + ": rope_scaling type '" + type + "' is not supported (llama3" +
                      std::string(qwen2_vl ? ", mrope" : "") + ")");
    if (type == "llama3") {
      c.rope_factor = field<double>(rs, "factor", 8.0, file);
      c.rope_low_freq_factor = field<double>(rs, "low_freq_factor", 1.0, file);
      c.rope_high_freq_factor = field<double>(rs, "high_freq_factor", 4.0, file);
      c.rope_original_max_position = field<int64_t>(rs, "original_max_position_embeddings", 8192, file);
    }
    if (qwen2_vl && rs.contains("mrope_section")) {
      c.mrope_section = field<std::vector<int64_t>>(rs, "mrope_section", {}, file);
      if (!valid_mrope_section(c.mrope_section, c))
        throw DataError(file + ": rope_scaling.mrope_section must be 3 non-negative counts summing to head_dim / 2 = " +
                        std::to_string(c.head_dim / 2) + ", got " + rs["mrope_section"].dump());
    }
  }
  const std::pair<const char*, int64_t> sizes[] = {
      {"vocab_size", c.vocab_size}, {"hidden_size", c.hidden_size}, {"intermediate_size", c.intermediate_size},
      {"num_hidden_layers", c.num_layers}, {"num_attention_heads", c.num_heads},
      {"num_key_value_heads", c.num_kv_heads}, {"head_dim", c.head_dim},
      {"max_position_embeddings", c.max_position_embeddings}};
  for (const auto& [name, value] : sizes)
    if (value < 1 || value > (int64_t{1} << 31))
      throw DataError(file + ": " + name + " must be in [1, 2^31], got " + std::to_string(value));
  if (c.head_dim % 2 != 0)
    throw DataError(file + ": head_dim must be even (rotary positions rotate pairs), got " + std::to_string(c.head_dim));
  if (!(c.rms_norm_eps > 0) || !(c.rope_theta > 0))
    throw DataError(file + ": rms_norm_eps and rope_theta must be > 0, got " + std::to_string(c.rms_norm_eps) +
                    " and " + std::to_string(c.rope_theta));
  if (c.num_heads < 1 || c.num_kv_heads < 1 || c.num_heads % c.num_kv_heads != 0)
    throw DataError(file + ": num_key_value_heads (" + std::to_string(c.num_kv_heads) +
                    ") must divide num_attention_heads (" + std::to_string(c.num_heads) + ")");
  return c;
}

torch::Tensor decoder_inverse_frequencies(const DecoderConfig& c) {
  auto inv = nn::rope_inverse_frequencies(c.head_dim, c.rope_theta).to(torch::kDouble);  // [hd/2]
  if (c.rope_factor <= 0) return inv.to(torch::kFloat);
  // LLaMA-3.1 frequency-dependent scaling (transformers' _compute_llama3_parameters).
  const double old_len = static_cast<double>(c.rope_original_max_position);
  const double low_wavelen = old_len / c.rope_low_freq_factor, high_wavelen = old_len / c.rope_high_freq_factor;
  auto* f = inv.data_ptr<double>();
  for (int64_t i = 0; i < inv.numel(); ++i) {
    const double wavelen = 2 * M_PI / f[i];
    if (wavelen < high_wavelen) continue;
    if (wavelen > low_wavelen) {
      f[i] /= c.rope_factor;
    } else {
      const double smooth = (old_len / wavelen - c.rope_low_freq_factor) / (c.rope_high_freq_factor - c.rope_low_freq_factor);
      f[i] = (1 - smooth) * f[i] / c.rope_factor + smooth * f[i];
    }
  }
  return inv.to(torch::kFloat);
}

DecoderBodyImpl::DecoderBodyImpl(const DecoderConfig& c) {
  embed_tokens = register_module("embed_tokens", torch::nn::Embedding(c.vocab_size, c.hidden_size));
  layers = register_module("layers", torch::nn::ModuleList());
  nn::LlamaBlockOptions o;
  o.hidden_dim = c.hidden_size;
  o.num_heads = c.num_heads;
  o.num_kv_heads = c.num_kv_heads;
  o.head_dim = c.head_dim;
  o.ffn_dim = c.intermediate_size;
  o.rms_eps = c.rms_norm_eps;
  o.qkv_bias = c.attention_bias;
  o.dropout = c.dropout;
  for (int64_t i = 0; i < c.num_layers; ++i) layers->push_back(nn::LlamaBlock(o));
  norm = register_module("norm", nn::RmsNorm(c.hidden_size, c.rms_norm_eps));
}

DecoderLmImpl::DecoderLmImpl(const DecoderConfig& c) : config_(c) {
  model = register_module("model", DecoderBody(c));
  if (!c.tie_word_embeddings)
    lm_head = register_module("lm_head", torch::nn::Linear(torch::nn::LinearOptions(c.hidden_size, c.vocab_size).bias(false)));
  inv_freq_ = decoder_inverse_frequencies(c);
}

nn::Rotary multimodal_rotary(const torch::Tensor& positions, const torch::Tensor& inv_freq,
                             const std::vector<int64_t>& sections) {
  TORCH_CHECK(positions.dim() == 3 && positions.size(0) == 3 && sections.size() == 3,
              "multimodal_rotary: positions [3, B, T] and three sections");
  const nn::Rotary all = nn::rotary_for_positions(positions, inv_freq);  // [3, B, T, hd]
  std::vector<torch::Tensor> cos, sin;
  int64_t at = 0;
  for (size_t i = 0; i < 2 * sections.size(); ++i) {
    const int64_t n = sections[i % 3];
    cos.push_back(all.cos[static_cast<int64_t>(i % 3)].narrow(-1, at, n));
    sin.push_back(all.sin[static_cast<int64_t>(i % 3)].narrow(-1, at, n));
    at += n;
  }
  return {torch::cat(cos, -1), torch::cat(sin, -1)};  // [B, T, hd]
}

void check_token_ids(const torch::Tensor& ids, int64_t vocab_size) {
  if (ids.numel() == 0) return;
  const auto [lo, hi] = torch::aminmax(ids);
  const int64_t min = lo.item<int64_t>(), max = hi.item<int64_t>();
  if (min < 0 || max >= vocab_size)
    throw DataError("token id " + std::to_string(min < 0 ? min : max) + " is outside the model's vocabulary (" +
                    std::to_string(vocab_size) +
                    " ids): was the text tokenized with another tokenizer than the model's?");
}

torch::Tensor token_ids_to(const torch::Tensor& ids, const torch::Device& device, int64_t vocab_size) {
  if (!device.is_cpu()) check_token_ids(ids, vocab_size);
  return ids.to(device);
}

torch::Tensor DecoderLmImpl::forward_hidden(const DecoderInput& in, DecoderCache* cache) {
  // Checked here for ids on the CPU; ids on a GPU were checked on their way there (token_ids_to).
  if (!in.inputs_embeds.defined() && in.input_ids.is_cpu()) check_token_ids(in.input_ids, config_.vocab_size);
  torch::Tensor x = in.inputs_embeds.defined() ? in.inputs_embeds : model->embed_tokens(in.input_ids);  // [B, T, D]
  const int64_t b = x.size(0), t = x.size(1);
  const int64_t past = cache && !cache->empty() && (*cache)[0].k.defined() ? (*cache)[0].k.size(2) : 0;
  torch::Tensor positions = in.positions.defined()
                                ? in.positions
                                : torch::arange(past, past + t, torch::kLong).unsqueeze(0).expand({b, t});
  if (positions.dim() == 3 && config_.mrope_section.empty())
    throw ConfigError("positions", "[3, B, T] positions are M-RoPE's, and this model has no rope_scaling.mrope_section");
  nn::Rotary rotary = positions.dim() == 3
                          ? multimodal_rotary(positions.to(x.device()), inv_freq_.to(x.device()), config_.mrope_section)
                          : nn::rotary_for_positions(positions.to(x.device()), inv_freq_.to(x.device()));
  TORCH_CHECK(!in.packed || (b == 1 && !cache && in.positions.defined()),
              "packed input: one row, explicit positions, no cache");
  torch::Tensor bias = in.packed || in.bias.defined() ? in.bias : nn::causal_bias(t, past, in.key_valid, x.options());
  if (cache && cache->empty()) cache->resize(model->layers->size());
  const bool checkpoint = gradient_checkpointing && is_training() && torch::GradMode::is_enabled() && !cache;
  const torch::Dtype compute = is_training() ? training_dtype : torch::kFloat;
  AutocastScope autocast(x.device(), compute);
  for (size_t i = 0; i < model->layers->size(); ++i) {
    auto body = [&](const torch::Tensor& h) {
      if (checkpoint) {
        BlockContext bc{model->layers->ptr<nn::LlamaBlockImpl>(i), rotary, bias, in.packed != nullptr,
                        in.packed ? *in.packed : nn::PackedSegments{}, compute};
        return CheckpointedBlock::apply(h, bc);
      }
      return model->layers[i]->as<nn::LlamaBlock>()->forward(h, rotary, bias, cache ? &(*cache)[i] : nullptr, in.packed);
    };
    x = block_gate ? block_gate->run(i, x, body) : body(x);
  }
  auto out = model->norm(x);                                                                   // [B, T, D]
  return compute == torch::kFloat ? out : out.to(torch::kFloat);
}

torch::Tensor DecoderLmImpl::logits(const torch::Tensor& hidden) {
  const torch::Dtype compute = is_training() ? training_dtype : torch::kFloat;
  AutocastScope autocast(hidden.device(), compute);
  auto out = lm_head ? lm_head(hidden) : torch::matmul(hidden, model->embed_tokens->weight.t());  // [.., V]
  return compute == torch::kFloat ? out : out.to(torch::kFloat);
}

void load_hf_weights(torch::nn::Module& model, const std::string& dir, bool tied_embeddings,
                     const std::set<std::string>& skip) {
  const std::vector<std::string> files = hf_weight_files(dir);
  std::vector<SafetensorsFile> mapped;
  std::map<std::string, std::pair<size_t, std::string>> where;  // tensor -> (file index, file)
  for (const auto& f : files) {
    mapped.push_back(SafetensorsFile::open(f));
    for (const auto& n : mapped.back().names()) where[n] = {mapped.size() - 1, f};
  }
  // A Qwen2-VL folder holds its vision tower (`visual.*`, llm/vision_tower.h) beside the language
  // model: not the decoder's to load or to report.
  const auto* lm = dynamic_cast<const DecoderLmImpl*>(&model);
  const bool vision_beside = lm != nullptr && lm->config().model_type == "qwen2_vl";
  std::string missing, unexpected;
  std::set<std::string> used;
  torch::NoGradGuard no_grad;
  for (auto& p : model.named_parameters()) {
    const std::string& name = p.key();
    if (skip.count(name)) continue;
    auto it = where.find(name);
    if (it == where.end()) {
      missing += (missing.empty() ? "" : ", ") + name;
      continue;
    }
    used.insert(name);
    torch::Tensor src = nn::tensor_view(mapped[it->second.first].get(name));  // a view of the mapping
    if (src.sizes() != p.value().sizes()) {
      std::ostringstream msg;
      msg << it->second.second << ": tensor '" << name << "': expected shape " << p.value().sizes() << ", got "
          << src.sizes();
      throw CheckpointError(msg.str());
    }
    p.value().copy_(src);  // converts F16/BF16 to the parameter dtype
    release_pages(mapped[it->second.first].get(name));
  }
  for (const auto& [name, loc] : where)
    if (!used.count(name) && !skip.count(name) && !(tied_embeddings && name == "lm_head.weight") &&
        name.find("rotary_emb") == std::string::npos && !(vision_beside && name.rfind("visual.", 0) == 0))
      unexpected += (unexpected.empty() ? "" : ", ") + name;
  if (!missing.empty() || !unexpected.empty())
    throw CheckpointError(dir + ": checkpoint does not match the model" + (missing.empty() ? "" : "; missing: " + missing) +
                          (unexpected.empty() ? "" : "; unexpected: " + unexpected));
}

namespace {

torch::Tensor resized_rows(const torch::Tensor& old, int64_t rows) {
  const int64_t keep = std::min<int64_t>(rows, old.size(0));
  auto out = old.detach().mean(0, /*keepdim=*/true).expand({rows, old.size(1)}).clone();  // [rows, D]
  out.narrow(0, 0, keep).copy_(old.detach().narrow(0, 0, keep));
  return out;
}

}  // namespace

void resize_token_embeddings(DecoderLmImpl& lm, int64_t vocab_size) {
  TORCH_CHECK(vocab_size >= 1, "vocab_size must be >= 1");
  const int64_t d = lm.config().hidden_size;
  torch::NoGradGuard no_grad;
  auto old_embed = lm.model->embed_tokens->weight;
  auto embed = torch::nn::Embedding(vocab_size, d);
  embed->weight.copy_(resized_rows(old_embed, vocab_size));
  embed->to(old_embed.device(), old_embed.scalar_type());
  lm.model->embed_tokens = lm.model->replace_module("embed_tokens", embed);
  if (lm.lm_head) {
    auto head = torch::nn::Linear(torch::nn::LinearOptions(d, vocab_size).bias(false));
    head->weight.copy_(resized_rows(lm.lm_head->weight, vocab_size));
    head->to(old_embed.device(), old_embed.scalar_type());
    lm.lm_head = lm.replace_module("lm_head", head);
  }
  lm.mutable_config().vocab_size = vocab_size;
}

DecoderLm load_decoder_lm(const std::string& dir) {
  DecoderLm lm(read_decoder_config(dir));
  load_hf_weights(*lm, dir, lm->config().tie_word_embeddings);
  lm->eval();
  return lm;
}

}  // namespace seqrec::llm
