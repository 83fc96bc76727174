#include "seqrec/llm/tokenizer.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "seqrec/common/error.h"
#include "seqrec/llm/bpe_tokenizer.h"
#include "seqrec/llm/sentencepiece_tokenizer.h"

namespace seqrec::llm {

namespace {

namespace fs = std::filesystem;

// A special-token entry of tokenizer_config.json is a string, an AddedToken object
// ({"content": ...}) or null; absent and null differ (null means "this model has none").
struct TokenEntry {
  bool present = false;
  std::string content;  // "" when null
};

TokenEntry token_entry(const nlohmann::json& config, const char* key, const std::string& path) {
  TokenEntry entry;
  auto it = config.find(key);
  if (it == config.end()) return entry;
  entry.present = true;
  if (it->is_string()) {
    entry.content = it->get<std::string>();
  } else if (it->is_object() && it->contains("content") && (*it)["content"].is_string()) {
    entry.content = (*it)["content"].get<std::string>();
  } else if (!it->is_null()) {
    throw DataError(path + ": " + key + " must be a string, an object with \"content\", or null");
  }
  return entry;
}

void read_flag(const nlohmann::json& config, const char* key, const std::string& path, bool& flag) {
  auto it = config.find(key);
  if (it == config.end() || it->is_null()) return;
  if (!it->is_boolean()) throw DataError(path + ": " + key + " must be true or false");
  flag = it->get<bool>();
}

}  // namespace

std::vector<int64_t> Tokenizer::encode_with_special(const std::string& text) const {
  std::vector<int64_t> ids = encode(text);
  if (add_bos && bos_id() >= 0) ids.insert(ids.begin(), bos_id());
  if (add_eos && eos_id() >= 0) ids.push_back(eos_id());
  return ids;
}

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    throw DataError(dir + ": tokenizer folder does not exist or is not a directory");
  }
  const std::string model_path = (fs::path(dir) / "tokenizer.model").string();
  const std::string json_path = (fs::path(dir) / "tokenizer.json").string();
  const std::string config_path = (fs::path(dir) / "tokenizer_config.json").string();

  std::unique_ptr<Tokenizer> tokenizer;
  BpeTokenizer* bpe = nullptr;
  if (fs::exists(model_path, ec)) {
    tokenizer = std::make_unique<SentencePieceTokenizer>(model_path);
    tokenizer->add_bos = true;  // the LlamaTokenizer default
  } else if (fs::exists(json_path, ec)) {
    auto owned = std::make_unique<BpeTokenizer>(json_path);  // add_bos/eos from its post_processor
    bpe = owned.get();
    tokenizer = std::move(owned);
  } else {
    throw DataError(dir + ": no tokenizer.model or tokenizer.json in the tokenizer folder");
  }

  if (!fs::exists(config_path, ec)) return tokenizer;
  std::ifstream in(config_path, std::ios::binary);
  if (!in) throw DataError(config_path + ": cannot open");
  nlohmann::json config;
  try {
    in >> config;
  } catch (const nlohmann::json::exception& e) {
    throw DataError(config_path + ": not valid JSON: " + e.what());
  }
  if (!config.is_object()) throw DataError(config_path + ": top level must be an object");
  read_flag(config, "add_bos_token", config_path, tokenizer->add_bos);
  read_flag(config, "add_eos_token", config_path, tokenizer->add_eos);
  // SentencePiece models carry their own BOS/EOS ids; tokenizer.json does not say which added token
  // is BOS/EOS, the config does (Qwen: bos_token null, eos_token "<|im_end|>" or "<|endoftext|>").
  if (bpe != nullptr) {
    TokenEntry bos = token_entry(config, "bos_token", config_path);
    TokenEntry eos = token_entry(config, "eos_token", config_path);
    auto current = [&](int64_t id) { return id >= 0 ? bpe->id_to_piece(id) : std::string(); };
    try {
      bpe->set_bos_eos(bos.present ? bos.content : current(bpe->bos_id()),
                       eos.present ? eos.content : current(bpe->eos_id()));
    } catch (const DataError& e) {
      throw DataError(config_path + ": " + e.what());
    }
  }
  return tokenizer;
}

}  // namespace seqrec::llm
