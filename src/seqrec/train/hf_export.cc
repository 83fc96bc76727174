// Hugging Face folder export and PEFT adapter loading.
#include "seqrec/train/hf_export.h"

#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>
#include <torch/torch.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "seqrec/common/error.h"
#include "seqrec/common/fs.h"
#include "seqrec/common/safetensors.h"
#include "seqrec/nn/tensor_view.h"
#include "seqrec/train/checkpoint.h"

namespace seqrec::train {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr const char* kFormat = "seqrec-hf-export-1";
constexpr const char* kManifest = "seqrec_export.json";
constexpr const char* kPeftPrefix = "base_model.model.";
// Files of the base folder that travel unchanged (when present).
const char* const kCopied[] = {"generation_config.json", "special_tokens_map.json", "tokenizer.model", "vocab.json",
                               "merges.txt"};

json read_json(const std::string& path) {
  try {
    return json::parse(read_file(path));
  } catch (const json::exception& e) {
    throw DataError(path + ": not valid JSON: " + e.what());
  }
}

// True when `dir` holds a folder seqrec exported and nothing else.
bool is_our_export(const std::string& dir, std::string* why) {
  json manifest;
  try {
    manifest = json::parse(read_file(dir + "/" + kManifest));
  } catch (const std::exception&) {
    *why = "it has no readable " + std::string(kManifest);
    return false;
  }
  if (!manifest.is_object() || manifest.value("format", "") != kFormat || !manifest.contains("files")) {
    *why = std::string(kManifest) + " is not a " + kFormat + " manifest";
    return false;
  }
  std::set<std::string> ours = {kManifest};
  for (const auto& f : manifest["files"]) ours.insert(f.get<std::string>());
  for (const auto& entry : fs::directory_iterator(dir))
    if (!ours.count(entry.path().filename().string())) {
      *why = "it holds '" + entry.path().filename().string() + "', which seqrec did not write";
      return false;
    }
  return true;
}

json added_token_entry(const std::string& content) {
  return {{"content", content}, {"lstrip", false}, {"normalized", false},
          {"rstrip", false},    {"single_word", false}, {"special", false}};
}

// config.json of the base with the new vocabulary size; the weights are written in float32.
void write_config(const llm::DecoderLmImpl& lm, const HfExportSpec& spec, const std::string& dir) {
  json config = read_json(spec.base_dir + "/config.json");
  config["vocab_size"] = lm.config().vocab_size;
  config["torch_dtype"] = "float32";
  if (config.contains("dtype")) config["dtype"] = "float32";  // the key's newer name (transformers >= 4.56)
  write_file_atomic(dir + "/config.json", config.dump(2) + "\n");
}

// The tokenizer files with the added tokens: tokenizer.json "added_tokens" (fast tokenizers, our BPE),
// tokenizer_config.json "added_tokens_decoder" (transformers >= 4.34, our SentencePiece loader) and
// added_tokens.json (older slow tokenizers). normalized=false: matched in the raw text, as ours do.
void write_tokenizer_files(const HfExportSpec& spec, const std::string& dir) {
  const std::string base_json = spec.base_dir + "/tokenizer.json";
  if (path_exists(base_json)) {
    json tok = read_json(base_json);
    std::set<std::string> present;
    for (const auto& t : tok.value("added_tokens", json::array())) present.insert(t.value("content", ""));
    for (const auto& [id, content] : spec.added_tokens) {
      if (present.count(content)) continue;
      json entry = added_token_entry(content);
      entry["id"] = id;
      tok["added_tokens"].push_back(entry);
    }
    write_file_atomic(dir + "/tokenizer.json", tok.dump(2) + "\n");
  }
  const std::string base_config = spec.base_dir + "/tokenizer_config.json";
  json config = path_exists(base_config) ? read_json(base_config) : json::object();
  for (const auto& [id, content] : spec.added_tokens) config["added_tokens_decoder"][std::to_string(id)] = added_token_entry(content);
  write_file_atomic(dir + "/tokenizer_config.json", config.dump(2) + "\n");
  const std::string base_added = spec.base_dir + "/added_tokens.json";
  json added = path_exists(base_added) ? read_json(base_added) : json::object();
  for (const auto& [id, content] : spec.added_tokens) added[content] = id;
  if (!added.empty()) write_file_atomic(dir + "/added_tokens.json", added.dump(2) + "\n");
}

void write_adapter(const llm::DecoderLmImpl& lm, const HfExportSpec& spec, const std::string& dir) {
  NamedTensors tensors;
  for (const auto& [name, t] : nn::lora_state(lm)) tensors.emplace_back(name, t);
  for (const auto& p : lm.named_parameters())
    if (is_module_weight(p.key(), spec.modules_to_save)) tensors.emplace_back(kPeftPrefix + p.key(), p.value());
  const nn::LoraOptions& o = spec.lora_options;
  std::string targets;
  for (const auto& t : o.target_modules) targets += (targets.empty() ? "" : ",") + t;
  // The metadata nn::load_lora reads, besides PEFT's "format".
  save_tensors(dir + "/adapter_model.safetensors", tensors,
               {{"format", "pt"}, {"lora_rank", std::to_string(o.rank)}, {"lora_alpha", json(o.alpha).dump()},
                {"lora_dropout", json(o.dropout).dump()}, {"target_modules", targets}});
  json config = {{"base_model_name_or_path", spec.base_dir},
                 {"bias", "none"},
                 {"fan_in_fan_out", false},
                 {"inference_mode", true},
                 {"init_lora_weights", true},
                 {"lora_alpha", o.alpha},
                 {"lora_dropout", o.dropout},
                 {"modules_to_save", spec.modules_to_save.empty() ? json(nullptr) : json(spec.modules_to_save)},
                 {"peft_type", "LORA"},
                 {"r", o.rank},
                 {"target_modules", o.target_modules},
                 {"task_type", "CAUSAL_LM"}};
  write_file_atomic(dir + "/adapter_config.json", config.dump(2) + "\n");
}

// A Qwen2-VL base holds its vision tower beside the language model: its `visual.*` tensors travel
// unchanged (in float32, as the rest is written), so that the export is a whole Qwen2-VL folder.
NamedTensors base_vision_tensors(const std::string& base_dir) {
  NamedTensors out;
  for (const auto& f : hf_weight_files(base_dir)) {
    const SafetensorsFile file = SafetensorsFile::open(f);
    for (const auto& name : file.names())
      if (name.rfind("visual.", 0) == 0)
        out.emplace_back(name, nn::tensor_view(file.get(name)).to(torch::kFloat, /*non_blocking=*/false, /*copy=*/true));
  }
  return out;
}

// Puts the finished `tmp` folder at `dir`: a rename when dir is new, else one atomic exchange (a
// reader sees the old folder or the new one) and the old folder, checked to be ours, removed.
void swap_in(const std::string& tmp, const std::string& dir) {
  if (!path_exists(dir)) {
    fs::rename(tmp, dir);
    return;
  }
  if (::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, dir.c_str(), RENAME_EXCHANGE) != 0)
    throw Error(dir + ": cannot swap in the new folder (" + std::string(std::strerror(errno)) + ")");
  fs::remove_all(tmp);
}

}  // namespace

bool is_module_weight(const std::string& param, const std::vector<std::string>& modules) {
  for (const auto& m : modules) {
    const std::string tail = "." + m + ".weight";
    if (param == m + ".weight" ||
        (param.size() > tail.size() && param.compare(param.size() - tail.size(), tail.size(), tail) == 0))
      return true;
  }
  return false;
}

std::vector<std::pair<std::string, torch::Tensor>> hf_state(const llm::DecoderLmImpl& lm) {
  std::map<std::string, const nn::LoraLinearImpl*> adapted;  // "<module>.weight" -> layer with an adapter
  for (const auto& m : lm.named_modules("", /*include_self=*/false))
    if (const auto* layer = dynamic_cast<const nn::LoraLinearImpl*>(m.value().get()); layer && layer->has_lora())
      adapted[m.key() + ".weight"] = layer;
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (const auto& p : lm.named_parameters()) {
    if (p.key().find(".lora_") != std::string::npos) continue;
    auto it = adapted.find(p.key());
    out.emplace_back(p.key(), it != adapted.end() ? it->second->merged_weight() : p.value().detach());
  }
  return out;
}

void export_hf_model(const llm::DecoderLmImpl& lm, const HfExportSpec& spec, const std::string& out_dir) {
  std::string why;
  if (path_exists(out_dir) && !is_our_export(out_dir, &why))
    throw Error(out_dir + ": exists and is not a model folder seqrec exported (" + why + "); not replacing it");
  clean_stale_temps(out_dir);
  const std::string tmp = temp_path_for(out_dir);
  fs::remove_all(tmp);
  make_dirs(tmp);
  NamedTensors state = hf_state(lm);
  if (lm.config().model_type == "qwen2_vl")
    for (auto& t : base_vision_tensors(spec.base_dir)) state.push_back(std::move(t));
  save_tensors(tmp + "/model.safetensors", state, {{"format", "pt"}});
  write_config(lm, spec, tmp);
  for (const char* name : kCopied)
    if (path_exists(spec.base_dir + "/" + name)) write_file_atomic(tmp + "/" + name, read_file(spec.base_dir + "/" + name));
  write_tokenizer_files(spec, tmp);
  if (spec.lora) write_adapter(lm, spec, tmp);
  for (const auto& [name, content] : spec.extra_files) write_file_atomic(tmp + "/" + name, content);
  json manifest = {{"format", kFormat}, {"base_model", spec.base_dir}, {"files", json::array()}};
  for (const auto& entry : fs::directory_iterator(tmp)) manifest["files"].push_back(entry.path().filename().string());
  write_file_atomic(tmp + "/" + kManifest, manifest.dump(2) + "\n");  // last: the folder is complete
  swap_in(tmp, out_dir);
}

void load_peft_adapter(llm::DecoderLmImpl& lm, const std::string& dir) {
  const std::string config_path = dir + "/adapter_config.json";
  const std::string weights_path = dir + "/adapter_model.safetensors";
  if (!path_exists(config_path)) throw CheckpointError(config_path + ": no such file (not a PEFT adapter folder?)");
  json config = read_json(config_path);
  nn::LoraOptions o;
  std::vector<std::string> modules_to_save;
  try {
    if (config.value("peft_type", "") != "LORA")
      throw CheckpointError(config_path + ": peft_type must be \"LORA\"");
    o.rank = config.at("r").get<int64_t>();
    o.alpha = config.at("lora_alpha").get<double>();
    o.dropout = config.value("lora_dropout", 0.0);
    o.target_modules = config.at("target_modules").get<std::vector<std::string>>();
    if (config.contains("modules_to_save") && !config["modules_to_save"].is_null())
      modules_to_save = config["modules_to_save"].get<std::vector<std::string>>();
  } catch (const json::exception& e) {
    throw CheckpointError(config_path + ": " + e.what());
  }
  nn::apply_lora(lm, o);
  SafetensorsFile file = SafetensorsFile::open(weights_path);
  NamedTensors wanted;
  for (const auto& [name, t] : nn::lora_state(lm)) wanted.emplace_back(name, t);
  for (const auto& p : lm.named_parameters())
    if (is_module_weight(p.key(), modules_to_save)) wanted.emplace_back(kPeftPrefix + p.key(), p.value());
  torch::NoGradGuard no_grad;
  std::string missing;
  std::set<std::string> used;
  for (auto& [name, t] : wanted) {
    if (!file.contains(name)) {
      missing += (missing.empty() ? "" : ", ") + name;
      continue;
    }
    used.insert(name);
    torch::Tensor src = nn::tensor_view(file.get(name));
    if (src.sizes() != t.sizes()) {
      std::ostringstream msg;
      msg << weights_path << ": tensor '" << name << "': expected shape " << t.sizes() << ", got " << src.sizes();
      throw CheckpointError(msg.str());
    }
    t.copy_(src);
  }
  std::string unexpected;
  for (const auto& name : file.names())
    if (!used.count(name)) unexpected += (unexpected.empty() ? "" : ", ") + name;
  if (!missing.empty() || !unexpected.empty())
    throw CheckpointError(weights_path + ": adapter does not match the model" +
                          (missing.empty() ? "" : "; missing: " + missing) +
                          (unexpected.empty() ? "" : "; unexpected: " + unexpected));
}

}  // namespace seqrec::train
