// Item text embeddings: LC-Rec's text cleaning, tokenisation with truncation, and mean-pooled
// decoder states computed over packed rows.
#include "seqrec/semantic_id/item_embedding.h"

#include <torch/torch.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <numeric>
#include <string>

#include "seqrec/common/error.h"
#include "seqrec/common/log.h"
#include "seqrec/common/utf8.h"
#include "seqrec/data/item_catalog.h"
#include "seqrec/llm/decoder_lm.h"
#include "seqrec/llm/token_ids.h"
#include "seqrec/llm/tokenizer.h"
#include "seqrec/nn/llama_block.h"

namespace seqrec::semantic_id {
namespace {

// The code point of an entity body ("amp", "#39", "#x27"), 0 when unknown.
uint32_t entity_code_point(const std::string& body) {
  if (body.size() >= 2 && body[0] == '#') {
    const bool hex = body[1] == 'x' || body[1] == 'X';
    const std::string digits = body.substr(hex ? 2 : 1);
    if (digits.empty() || digits.size() > 7) return 0;
    for (char c : digits)
      if (!(hex ? std::isxdigit(static_cast<unsigned char>(c)) : std::isdigit(static_cast<unsigned char>(c)))) return 0;
    const unsigned long v = std::stoul(digits, nullptr, hex ? 16 : 10);
    return v > 0 && v <= 0x10FFFF ? static_cast<uint32_t>(v) : 0;
  }
  static const std::pair<const char*, uint32_t> kNamed[] = {
      {"amp", '&'},     {"lt", '<'},        {"gt", '>'},        {"quot", '"'},      {"apos", '\''},
      {"nbsp", 0xA0},   {"copy", 0xA9},     {"reg", 0xAE},      {"trade", 0x2122},  {"ndash", 0x2013},
      {"mdash", 0x2014}, {"hellip", 0x2026}, {"lsquo", 0x2018}, {"rsquo", 0x2019},  {"ldquo", 0x201C},
      {"rdquo", 0x201D}, {"deg", 0xB0},     {"times", 0xD7},    {"eacute", 0xE9},   {"frac12", 0xBD}};
  for (const auto& [name, cp] : kNamed)
    if (body == name) return cp;
  return 0;
}

std::string unescape_html(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '&') {
      const size_t semi = s.find(';', i + 1);
      if (semi != std::string::npos && semi - i <= 10) {
        const uint32_t cp = entity_code_point(s.substr(i + 1, semi - i - 1));
        if (cp != 0) {
          utf8_append(out, cp);
          i = semi;
          continue;
        }
      }
    }
    out += s[i];
  }
  return out;
}

bool is_word_byte(unsigned char c) { return std::isalnum(c) || c == '_' || c >= 0x80; }

// re.sub(r'</?\w+[^>]*>', '', s)
std::string remove_tags(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '<') {
      size_t j = i + 1;
      if (j < s.size() && s[j] == '/') ++j;
      if (j < s.size() && is_word_byte(static_cast<unsigned char>(s[j]))) {
        const size_t close = s.find('>', j);
        if (close != std::string::npos) {
          i = close;
          continue;
        }
      }
    }
    out += s[i];
  }
  return out;
}

std::string strip(const std::string& s) {
  const char* ws = " \t\n\r\f\v";
  const size_t b = s.find_first_not_of(ws);
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(ws) - b + 1);
}

// Sequences grouped for packed forwards, longest first: each group's count x longest <= budget.
std::vector<std::vector<size_t>> pack_groups(const std::vector<std::vector<int64_t>>& seqs, int64_t budget) {
  std::vector<size_t> order(seqs.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return seqs[a].size() > seqs[b].size(); });
  std::vector<std::vector<size_t>> groups;
  int64_t width = 0;
  for (size_t i : order) {
    const int64_t len = static_cast<int64_t>(seqs[i].size());
    if (groups.empty() || static_cast<int64_t>(groups.back().size() + 1) * std::max(width, len) > budget) {
      groups.emplace_back();
      width = len;
    }
    groups.back().push_back(i);
  }
  return groups;
}

// Mean hidden state of each sequence of one packed row: [n, D].
torch::Tensor pooled_packed(llm::DecoderLmImpl& lm, const std::vector<const std::vector<int64_t>*>& seqs) {
  std::vector<int64_t> ids, positions, lengths, segment;
  for (size_t s = 0; s < seqs.size(); ++s) {
    const auto& q = *seqs[s];
    for (size_t j = 0; j < q.size(); ++j) {
      ids.push_back(q[j]);
      positions.push_back(static_cast<int64_t>(j));
      segment.push_back(static_cast<int64_t>(s));
    }
    lengths.push_back(static_cast<int64_t>(q.size()));
  }
  const auto dev = lm.model->embed_tokens->weight.device();
  const int64_t t = static_cast<int64_t>(ids.size()), n = static_cast<int64_t>(seqs.size());
  nn::PackedSegments packed = nn::pack_segments(lengths);
  llm::DecoderInput in;
  in.input_ids = llm::token_ids_to(torch::tensor(ids, torch::kLong).view({1, t}), dev, lm.config().vocab_size);
  in.positions = torch::tensor(positions, torch::kLong).view({1, t}).to(dev);
  in.packed = &packed;
  auto hidden = lm.forward_hidden(in).squeeze(0).to(torch::kFloat);                          // [T, D]
  auto sums = torch::zeros({n, hidden.size(1)}, hidden.options())
                  .index_add_(0, torch::tensor(segment, torch::kLong).to(dev), hidden);          // [n, D]
  return sums / torch::tensor(lengths, hidden.options()).unsqueeze(1);
}

}  // namespace

std::string lcrec_clean_text(const std::string& raw) {
  std::string text = strip(raw);
  text = remove_tags(unescape_html(text));
  text.erase(std::remove_if(text.begin(), text.end(), [](char c) { return c == '"' || c == '\n' || c == '\r'; }),
             text.end());
  // Python: index = -1; while -index < len(t) and t[index] == '.': index -= 1 -- the first character
  // is never taken, so "..." keeps "." and gets one more.
  size_t dots = 0;
  while (dots + 1 < text.size() && text[text.size() - 1 - dots] == '.') ++dots;
  text = text.substr(0, text.size() - dots) + ".";
  return strip(text);
}

std::vector<int64_t> tokenize_truncated(const llm::Tokenizer& tokenizer, const std::string& text, int64_t max_tokens) {
  const bool bos = tokenizer.add_bos && tokenizer.bos_id() >= 0, eos = tokenizer.add_eos && tokenizer.eos_id() >= 0;
  std::vector<int64_t> body = tokenizer.encode(text);
  const int64_t room = std::max<int64_t>(0, max_tokens - int64_t(bos) - int64_t(eos));
  if (static_cast<int64_t>(body.size()) > room) body.resize(static_cast<size_t>(room));
  std::vector<int64_t> ids;
  if (bos) ids.push_back(tokenizer.bos_id());
  ids.insert(ids.end(), body.begin(), body.end());
  if (eos) ids.push_back(tokenizer.eos_id());
  return ids;
}

torch::Tensor mean_pooled_states(llm::DecoderLmImpl& lm, const std::vector<std::vector<int64_t>>& sequences,
                                 int64_t batch_tokens) {
  torch::NoGradGuard no_grad;
  const int64_t d = lm.config().hidden_size;
  auto out = torch::zeros({static_cast<int64_t>(sequences.size()), d}, torch::kFloat);      // [N, D]
  for (const auto& group : pack_groups(sequences, batch_tokens)) {
    std::vector<const std::vector<int64_t>*> seqs;
    for (size_t i : group) {
      TORCH_CHECK(!sequences[i].empty(), "mean_pooled_states: empty token sequence ", i);
      seqs.push_back(&sequences[i]);
    }
    auto pooled = pooled_packed(lm, seqs).to(torch::kCPU);                                   // [n, D]
    out.index_copy_(0, torch::tensor(std::vector<int64_t>(group.begin(), group.end()), torch::kLong), pooled);
  }
  return out;
}

torch::Tensor embed_item_texts(llm::DecoderLmImpl& lm, const llm::Tokenizer& tokenizer,
                               const data::ItemCatalog& catalog, const TextEmbeddingOptions& options) {
  for (const auto& f : options.fields) catalog.require_column(f, "--fields");
  const int64_t v = catalog.num_items();
  const auto start = std::chrono::steady_clock::now();
  std::vector<torch::Tensor> per_field;
  for (const auto& f : options.fields) {
    std::vector<std::vector<int64_t>> seqs;
    int64_t tokens = 0;
    for (int64_t id = 1; id <= v; ++id) {
      const std::string raw = catalog.field(id, f);
      seqs.push_back(tokenize_truncated(tokenizer, options.clean_text ? lcrec_clean_text(raw) : raw, options.max_tokens));
      if (seqs.back().empty())
        throw DataError("item " + catalog.raw_id(id) + ": field '" + f + "' gives no tokens (set clean_text or BOS)");
      tokens += static_cast<int64_t>(seqs.back().size());
    }
    per_field.push_back(mean_pooled_states(lm, seqs, options.batch_tokens));                 // [V, D]
    log_info("embed-items: field '%s': %ld items, %ld tokens (%.1fs so far)", f.c_str(), long(v), long(tokens),
             std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  return torch::stack(per_field, 0).mean(0);                                                 // [V, D]
}

}  // namespace seqrec::semantic_id
