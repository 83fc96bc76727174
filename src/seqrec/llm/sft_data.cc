// Supervised fine-tuning data: JSONL examples, tokenisation with response-only labels, token lists.
#include "seqrec/llm/sft_data.h"

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "seqrec/common/error.h"

namespace seqrec::llm {
namespace {

std::string trim(const std::string& s) {
  const char* space = " \t\r\n";
  const size_t begin = s.find_first_not_of(space);
  if (begin == std::string::npos) return {};
  return s.substr(begin, s.find_last_not_of(space) - begin + 1);
}

std::string string_field(const nlohmann::json& j, const char* key, const std::string& where) {
  auto it = j.find(key);
  if (it == j.end()) throw DataError(where + ": missing field \"" + key + "\"");
  if (!it->is_string()) throw DataError(where + ": field \"" + key + "\" must be a string");
  return it->get<std::string>();
}

}  // namespace

std::vector<SftExample> read_sft_examples(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw DataError(path + ": cannot open examples file");
  std::vector<SftExample> out;
  std::string line;
  for (int64_t number = 1; std::getline(in, line); ++number) {
    if (trim(line).empty()) continue;
    const std::string where = path + ":" + std::to_string(number);
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      throw DataError(where + ": not valid JSON: " + e.what());
    }
    if (!j.is_object()) throw DataError(where + ": expected a JSON object {\"prompt\": ..., \"response\": ...}");
    out.push_back({string_field(j, "prompt", where), string_field(j, "response", where)});
  }
  if (in.bad()) throw DataError(path + ": read error");
  if (out.empty()) throw DataError(path + ": no examples");
  return out;
}

int64_t TokenizedExample::num_targets() const {
  int64_t n = 0;
  for (size_t t = 1; t < labels.size(); ++t) n += labels[t] != kIgnoreLabel;
  return n;
}

TokenizedExample tokenize_example(const Tokenizer& tokenizer, const SftExample& example,
                                  const SftTokenizeOptions& options) {
  TokenizedExample out;
  // collator.py: full = prompt + response + eos_token, tokenised as one text; the prompt alone
  // (text_target) counts the positions to mask.
  out.input_ids = tokenizer.encode_with_special(example.prompt + example.response);
  if (tokenizer.eos_id() >= 0) out.input_ids.push_back(tokenizer.eos_id());
  if (static_cast<int64_t>(out.input_ids.size()) > options.max_length) out.input_ids.resize(options.max_length);
  out.labels = out.input_ids;
  if (options.only_train_response) {
    const size_t prompt = std::min(tokenizer.encode_with_special(example.prompt).size(), out.labels.size());
    std::fill(out.labels.begin(), out.labels.begin() + static_cast<std::ptrdiff_t>(prompt), kIgnoreLabel);
  }
  return out;
}

std::vector<std::string> read_token_list(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw DataError(path + ": cannot open token list");
  std::vector<std::string> out;
  for (std::string line; std::getline(in, line);) {
    std::string t = trim(line);
    if (!t.empty()) out.push_back(std::move(t));
  }
  if (in.bad()) throw DataError(path + ": read error");
  return out;
}

std::vector<std::string> read_index_tokens(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw DataError(path + ": cannot open index file");
  nlohmann::json j;
  try {
    in >> j;
  } catch (const nlohmann::json::exception& e) {
    throw DataError(path + ": not valid JSON: " + e.what());
  }
  if (!j.is_object()) throw DataError(path + ": expected an object {item: [code tokens]}");
  std::set<std::string> tokens;  // byte order = Python's sorted() on these ASCII strings
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string where = path + ": item \"" + it.key() + "\"";
    if (!it->is_array() || it->empty()) throw DataError(where + ": expected a non-empty list of token strings");
    for (const auto& t : *it) {
      if (!t.is_string() || t.get<std::string>().empty()) throw DataError(where + ": tokens must be non-empty strings");
      tokens.insert(t.get<std::string>());
    }
  }
  return {tokens.begin(), tokens.end()};
}

}  // namespace seqrec::llm
