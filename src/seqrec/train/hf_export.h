// Hugging Face folders out of a fine-tuned DecoderLm: config.json (vocab_size updated),
// model.safetensors under HF names (LoRA merged), the base tokenizer files with the added tokens
// registered where transformers and load_tokenizer look for them, and with LoRA a PEFT adapter
// (adapter_config.json + adapter_model.safetensors). A Qwen2-VL base's vision tower (`visual.*`)
// is copied unchanged beside the language model. Written to a temp folder and swapped in; an
// existing folder is replaced only if seqrec wrote it (its seqrec_export.json lists every file).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "seqrec/llm/decoder_lm.h"
#include "seqrec/nn/lora.h"

namespace seqrec::train {

/// What goes into an exported folder besides the weights.
struct HfExportSpec {
  std::string base_dir;  ///< the base model folder: config.json and tokenizer files are copied from it
  std::vector<std::pair<int64_t, std::string>> added_tokens;  ///< (id, text) of tokens the base tokenizer lacked
  bool lora = false;                          ///< also write the PEFT adapter
  nn::LoraOptions lora_options;               ///< the adapter's r, alpha, dropout, target_modules
  std::vector<std::string> modules_to_save;   ///< LoRA: modules saved whole in the adapter (PEFT modules_to_save)
  std::map<std::string, std::string> extra_files;  ///< file name -> content (resolved config, metrics)
};

/// Whether parameter `param` is the weight of a module whose name (last component) is in `modules`
/// ("model.embed_tokens.weight" for "embed_tokens"): PEFT's modules_to_save matching.
bool is_module_weight(const std::string& param, const std::vector<std::string>& modules);

/// The weights of `lm` under Hugging Face names, each LoRA adapter merged into its weight (the
/// model itself is not changed); adapter tensors are left out.
std::vector<std::pair<std::string, torch::Tensor>> hf_state(const llm::DecoderLmImpl& lm);

/// Writes `lm` as a Hugging Face folder at `out_dir` (see the file comment). Throws Error when
/// out_dir exists and seqrec did not write it.
void export_hf_model(const llm::DecoderLmImpl& lm, const HfExportSpec& spec, const std::string& out_dir);

/// Enables LoRA on `lm` as `dir`/adapter_config.json says and loads `dir`/adapter_model.safetensors
/// (the LoRA tensors and the modules_to_save weights, PEFT names). `lm` must already have the
/// adapter's vocabulary size. Throws CheckpointError naming the file for a missing, unexpected or
/// mis-shaped tensor.
void load_peft_adapter(llm::DecoderLmImpl& lm, const std::string& dir);

}  // namespace seqrec::train
