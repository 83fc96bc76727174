#include "seqrec/llm/tokenizer.h"

#include <filesystem>
#include <fstream>
#include <map>
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

nlohmann::json read_json_object(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw DataError(path + ": cannot open");
  nlohmann::json j;
  try {
    in >> j;
  } catch (const nlohmann::json::exception& e) {
    throw DataError(path + ": not valid JSON: " + e.what());
  }
  if (!j.is_object()) throw DataError(path + ": top level must be an object");
  return j;
}

// Tokens transformers added to a SentencePiece model (add_tokens, then save_pretrained): the entries
// of tokenizer_config.json's added_tokens_decoder past the model's pieces, and of added_tokens.json
// ({content: id}, older files) for ids the config does not list. Ids must follow the pieces without
// a gap, so that each token gets the id it was saved with.
void load_sentencepiece_added(Tokenizer& tokenizer, const nlohmann::json* config, const std::string& config_path,
                              const std::string& added_path) {
  struct Entry {
    std::string content;
    bool special = false;
    std::string origin;
  };
  const int64_t base = tokenizer.vocab_size();
  std::map<int64_t, Entry> entries;
  if (config != nullptr && config->contains("added_tokens_decoder")) {
    const auto& decoder = (*config)["added_tokens_decoder"];
    if (!decoder.is_object()) throw DataError(config_path + ": added_tokens_decoder must be an object");
    for (auto it = decoder.begin(); it != decoder.end(); ++it) {
      int64_t id = -1;
      try {
        id = std::stoll(it.key());
      } catch (const std::exception&) {
      }
      const std::string where = config_path + ": added_tokens_decoder[\"" + it.key() + "\"]";
      if (id < 0) throw DataError(where + ": the key must be a token id");
      if (!it->is_object() || !it->contains("content") || !(*it)["content"].is_string())
        throw DataError(where + ": expected an object with a string \"content\"");
      const auto special = it->find("special");
      if (special != it->end() && !special->is_boolean() && !special->is_null())
        throw DataError(where + ": \"special\" must be true or false");
      const bool is_special = special != it->end() && special->is_boolean() && special->get<bool>();
      if (id >= base) entries[id] = {(*it)["content"].get<std::string>(), is_special, where};
    }
  }
  if (fs::exists(added_path)) {
    const nlohmann::json added = read_json_object(added_path);
    for (auto it = added.begin(); it != added.end(); ++it) {
      const std::string where = added_path + ": \"" + it.key() + "\"";
      if (!it->is_number_integer() || it->get<int64_t>() < 0) throw DataError(where + ": the id must be an integer >= 0");
      const int64_t id = it->get<int64_t>();
      if (id >= base && !entries.count(id)) entries[id] = {it.key(), false, where};
    }
  }
  int64_t expected = base;
  for (const auto& [id, entry] : entries) {
    if (id != expected)
      throw DataError(entry.origin + ": added token id " + std::to_string(id) + " leaves a gap (next free id is " +
                      std::to_string(expected) + ")");
    if (tokenizer.add_tokens({entry.content}, entry.special) != 1)
      throw DataError(entry.origin + ": added token \"" + entry.content + "\" is already in the vocabulary");
    ++expected;
  }
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
  const bool has_config = fs::exists(config_path, ec);
  nlohmann::json config = has_config ? read_json_object(config_path) : nlohmann::json::object();
  if (fs::exists(model_path, ec)) {
    tokenizer = std::make_unique<SentencePieceTokenizer>(model_path);
    tokenizer->add_bos = true;  // the LlamaTokenizer default
    load_sentencepiece_added(*tokenizer, has_config ? &config : nullptr, config_path,
                             (fs::path(dir) / "added_tokens.json").string());
  } else if (fs::exists(json_path, ec)) {
    auto owned = std::make_unique<BpeTokenizer>(json_path);  // add_bos/eos from its post_processor
    bpe = owned.get();
    tokenizer = std::move(owned);
  } else {
    throw DataError(dir + ": no tokenizer.model or tokenizer.json in the tokenizer folder");
  }

  if (!has_config) return tokenizer;
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
