#include "seqrec/llm/bpe_tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <queue>
#include <stdexcept>
#include <string_view>
#include <unordered_map>

#include "seqrec/common/error.h"
#include "seqrec/common/nfc.h"
#include "seqrec/common/utf8.h"

namespace seqrec::llm {

namespace {

using nlohmann::json;

void replace_all(std::string& s, const std::string& from, const std::string& to) {
  if (from.empty()) return;
  std::string out;
  size_t pos = 0;
  for (size_t hit; (hit = s.find(from, pos)) != std::string::npos; pos = hit + from.size()) {
    out.append(s, pos, hit - pos);
    out += to;
  }
  if (pos == 0) return;
  out.append(s, pos, std::string::npos);
  s = std::move(out);
}

// ---------------------------------------------------------------- byte-level alphabet

// GPT-2 bytes_to_unicode: printable Latin-1 bytes map to themselves, the other 68 bytes to
// U+0100.. in byte order, so that every byte is a visible character in vocab strings.
struct ByteAlphabet {
  std::array<std::string, 256> byte_to_piece;
  std::array<int, 0x144> cp_to_byte;  // -1 where the code point is not in the alphabet
  ByteAlphabet() {
    cp_to_byte.fill(-1);
    int next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
      const int cp = printable ? b : next++;
      utf8_append(byte_to_piece[b], static_cast<uint32_t>(cp));
      cp_to_byte[cp] = b;
    }
  }
};

const ByteAlphabet& byte_alphabet() {
  static const ByteAlphabet alphabet;
  return alphabet;
}

// ---------------------------------------------------------------- PCRE2

// A compiled pattern; pcre2_match runs JIT code when pcre2_jit_compile succeeded.
class Regex {
 public:
  Regex(const std::string& pattern, bool literal, const std::string& where) {
    int error = 0;
    PCRE2_SIZE offset = 0;
    uint32_t options = PCRE2_UTF | PCRE2_UCP | (literal ? PCRE2_LITERAL : 0);
    code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), options,
                          &error, &offset, nullptr);
    if (code_ == nullptr) {
      PCRE2_UCHAR message[256];
      pcre2_get_error_message(error, message, sizeof(message));
      throw DataError(where + ": cannot compile regex at offset " + std::to_string(offset) + ": " +
                      reinterpret_cast<const char*>(message));
    }
    // Without JIT support (or on failure) pcre2_match interprets the pattern: slower, same result.
    pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE);
  }
  ~Regex() { pcre2_code_free(code_); }
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  /// Calls emit(piece) for every match and every gap between matches (Split behaviour Isolated).
  /// `subject` must be valid UTF-8 (checked by the caller once per text).
  template <typename Emit>
  void split_isolated(std::string_view subject, const Emit& emit) const {
    pcre2_match_data* md = pcre2_match_data_create_from_pattern(code_, nullptr);
    if (md == nullptr) throw std::bad_alloc();
    const auto* s = reinterpret_cast<PCRE2_SPTR>(subject.data());
    size_t pos = 0, last = 0;
    while (pos <= subject.size()) {
      int rc = pcre2_match(code_, s, subject.size(), pos, PCRE2_NO_UTF_CHECK, md, nullptr);
      if (rc == PCRE2_ERROR_JIT_STACKLIMIT) {
        // Long runs (e.g. \s+(?!\S) on megabytes of spaces) can overflow the 32K JIT stack;
        // the interpreter uses the heap.
        rc = pcre2_match(code_, s, subject.size(), pos, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, md, nullptr);
      }
      if (rc == PCRE2_ERROR_NOMATCH) break;
      if (rc < 0) {
        pcre2_match_data_free(md);
        throw RequestError("tokenizer regex match failed (PCRE2 error " + std::to_string(rc) + ")");
      }
      const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
      const size_t begin = ov[0], end = ov[1];
      if (begin > last) emit(subject.substr(last, begin - last));
      if (end > begin) {
        emit(subject.substr(begin, end - begin));
        pos = last = end;
      } else {
        // An empty match: step over one character so the loop advances.
        int sub = 0;
        const int len = pos < subject.size()
                            ? utf8_char(reinterpret_cast<const unsigned char*>(subject.data()) + pos,
                                        subject.size() - pos, &sub)
                            : 1;
        last = begin;
        pos = begin + std::max(len, 1);
      }
    }
    if (last < subject.size()) emit(subject.substr(last));
    pcre2_match_data_free(md);
  }

 private:
  pcre2_code* code_ = nullptr;
};

// ---------------------------------------------------------------- pipeline steps

struct NormalizerStep {
  enum Kind { kNfc, kPrepend, kReplace } kind;
  std::string a, b;
};

struct PreTokenizerStep {
  enum Kind { kSplit, kByteLevel, kMetaspace } kind;
  std::unique_ptr<Regex> regex;  // kSplit, and kByteLevel with use_regex
  bool add_prefix_space = false;  // kByteLevel
  std::string replacement;        // kMetaspace
  std::string prepend_scheme;     // kMetaspace: always | first | never
  bool split = false;             // kMetaspace
};

struct DecoderStep {
  enum Kind { kByteLevel, kReplace, kByteFallback, kFuse, kStrip, kMetaspace } kind;
  std::string a, b;  // kReplace: pattern, content; kStrip: content; kMetaspace: replacement, scheme
  int start = 0, stop = 0;
};

const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

std::string json_str(const json& j, const char* key, const std::string& where) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_string()) throw DataError(where + "." + key + " must be a string");
  return it->get<std::string>();
}

// A Replace/Split pattern: {"String": s} or {"Regex": r}.
std::string pattern_of(const json& step, bool* is_regex, const std::string& where) {
  auto it = step.find("pattern");
  if (it == step.end() || !it->is_object()) throw DataError(where + ".pattern must be an object");
  if (it->contains("String")) {
    *is_regex = false;
    return json_str(*it, "String", where + ".pattern");
  }
  if (it->contains("Regex")) {
    *is_regex = true;
    return json_str(*it, "Regex", where + ".pattern");
  }
  throw DataError(where + ".pattern must have String or Regex");
}

// Flattens {"type": "Sequence", <list_key>: [...]} into its elements.
void flatten(const json& j, const char* list_key, std::vector<const json*>& out, const std::string& where) {
  if (j.is_null()) return;
  if (!j.is_object()) throw DataError(where + " must be an object or null");
  if (json_str(j, "type", where) == "Sequence") {
    auto it = j.find(list_key);
    if (it == j.end() || !it->is_array()) throw DataError(where + "." + list_key + " must be a list");
    for (const auto& e : *it) flatten(e, list_key, out, where);
    return;
  }
  out.push_back(&j);
}

uint64_t pair_key(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// "<0xNN>" -> NN, else -1.
int byte_token_value(const std::string& t) {
  if (t.size() != 6 || t.compare(0, 3, "<0x") != 0 || t[5] != '>') return -1;
  const int hi = hex_digit(t[3]), lo = hex_digit(t[4]);
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

}  // namespace

// ---------------------------------------------------------------- Impl

struct BpeTokenizer::Impl {
  std::string path;
  std::unordered_map<std::string, int32_t> vocab;  // model vocab plus added tokens
  std::vector<std::string> pieces;                 // id -> string ("" for holes)
  std::vector<uint8_t> special;                    // id -> skipped by decode
  std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> merges;  // (left, right) -> (rank, merged)

  bool byte_level = false;  // a ByteLevel pre-tokenizer: BPE runs on the byte alphabet
  std::array<int32_t, 256> byte_ids{};       // byte-level: id of each byte's alphabet character
  bool byte_fallback = false;
  std::array<int32_t, 256> fallback_ids{};  // id of "<0xNN>", -1 if missing
  int32_t unk_id = -1;
  bool fuse_unk = false;
  bool ignore_merges = false;

  std::vector<NormalizerStep> normalizers;
  std::vector<PreTokenizerStep> pre_tokenizers;
  std::vector<DecoderStep> decoders;

  struct Added {
    std::string content;
    int32_t id;
  };
  std::vector<Added> added;                        // longest first
  std::array<std::vector<int>, 256> added_by_byte;  // first byte -> indices into `added`

  int64_t bos = -1, eos = -1;
  bool add_bos_default = false, add_eos_default = false;  // from the post_processor template

  mutable std::mutex cache_mutex;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache;
  bool cache_enabled = true;
  static constexpr size_t kCacheMaxWord = 64;       // longer words are rare and not worth keeping
  static constexpr size_t kCacheMaxEntries = 1 << 18;

  void load(const json& root);
  void load_model(const json& model);
  void load_added(const json& list);
  /// Rebuilds the leftmost-longest lookup of `added` (after adding to it).
  void index_added();
  void load_normalizer(const json& j);
  void load_pre_tokenizer(const json& j);
  void load_decoder(const json& j);
  void load_post_processor(const json& j);

  void encode_segment(std::string_view segment, bool first, std::vector<int64_t>& out) const;
  template <typename Emit>
  void pre_tokenize(size_t step, std::string_view piece, bool first, const Emit& emit) const;
  void encode_word(std::string_view word, std::vector<int64_t>& out) const;
  void bpe(std::vector<int32_t>& symbols) const;
  int32_t id_of(const std::string& piece) const {
    auto it = vocab.find(piece);
    return it == vocab.end() ? -1 : it->second;
  }
};

void BpeTokenizer::Impl::load(const json& root) {
  if (!root.is_object()) throw DataError("top level must be an object");
  auto model = root.find("model");
  if (model == root.end() || !model->is_object()) throw DataError("model missing");
  load_model(*model);
  if (root.contains("added_tokens")) load_added(root["added_tokens"]);
  special.resize(pieces.size(), 0);  // also without added_tokens: decode reads it for every id
  load_normalizer(root.value("normalizer", json()));
  load_pre_tokenizer(root.value("pre_tokenizer", json()));
  load_decoder(root.value("decoder", json()));
  load_post_processor(root.value("post_processor", json()));
  if (byte_level) {
    const auto& alphabet = byte_alphabet();
    for (int b = 0; b < 256; ++b) {
      byte_ids[b] = id_of(alphabet.byte_to_piece[b]);
      if (byte_ids[b] < 0) {
        throw DataError("byte-level vocab lacks the character of byte " + std::to_string(b));
      }
    }
  }
}

void BpeTokenizer::Impl::load_model(const json& model) {
  const std::string type = model.value("type", std::string("BPE"));
  if (type != "BPE") throw DataError("model.type " + type + " is not supported (only BPE)");
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    auto it = model.find(key);
    if (it != model.end() && !it->is_null() && !(it->is_string() && it->get<std::string>().empty())) {
      throw DataError(std::string("model.") + key + " is not supported");
    }
  }
  if (model.contains("dropout") && !model["dropout"].is_null() && model["dropout"].get<double>() != 0) {
    throw DataError("model.dropout is not supported");
  }
  auto vit = model.find("vocab");
  if (vit == model.end() || !vit->is_object()) throw DataError("model.vocab must be an object");
  vocab.reserve(vit->size() + 64);
  int64_t max_id = -1;
  for (auto it = vit->begin(); it != vit->end(); ++it) {
    if (!it->is_number_integer() || it->get<int64_t>() < 0 || it->get<int64_t>() > INT32_MAX) {
      throw DataError("model.vocab[\"" + it.key() + "\"] must be a non-negative integer id");
    }
    vocab[it.key()] = static_cast<int32_t>(it->get<int64_t>());
    max_id = std::max(max_id, it->get<int64_t>());
  }
  pieces.assign(max_id + 1, std::string());
  for (const auto& [piece, id] : vocab) pieces[id] = piece;

  byte_fallback = model.value("byte_fallback", false);
  fuse_unk = model.value("fuse_unk", false);
  ignore_merges = model.value("ignore_merges", false);
  fallback_ids.fill(-1);
  if (byte_fallback) {
    for (int b = 0; b < 256; ++b) {
      char name[8];
      std::snprintf(name, sizeof(name), "<0x%02X>", b);
      fallback_ids[b] = id_of(name);
    }
  }
  auto unk = model.find("unk_token");
  if (unk != model.end() && unk->is_string()) {
    unk_id = id_of(unk->get<std::string>());
    if (unk_id < 0) throw DataError("model.unk_token \"" + unk->get<std::string>() + "\" is not in the vocab");
  }

  auto mit = model.find("merges");
  if (mit == model.end() || !mit->is_array()) throw DataError("model.merges must be a list");
  merges.reserve(mit->size() * 2);
  int32_t rank = 0;
  for (const auto& m : *mit) {
    std::string left, right;
    if (m.is_string()) {  // older files: "left right"
      const std::string s = m.get<std::string>();
      const size_t space = s.find(' ', 1);
      if (space == std::string::npos) throw DataError("merge \"" + s + "\" has no space");
      left = s.substr(0, space);
      right = s.substr(space + 1);
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      left = m[0].get<std::string>();
      right = m[1].get<std::string>();
    } else {
      throw DataError("merge #" + std::to_string(rank) + " must be \"a b\" or [\"a\", \"b\"]");
    }
    const int32_t a = id_of(left), b = id_of(right), ab = id_of(left + right);
    if (a < 0 || b < 0 || ab < 0) {
      throw DataError("merge #" + std::to_string(rank) + " (" + left + " " + right +
                      ") uses a token missing from the vocab");
    }
    merges.emplace(pair_key(a, b), std::make_pair(rank, ab));  // a duplicate keeps its first rank
    ++rank;
  }
}

void BpeTokenizer::Impl::load_added(const json& list) {
  if (!list.is_array()) throw DataError("added_tokens must be a list");
  for (const auto& t : list) {
    if (!t.is_object()) throw DataError("added_tokens entries must be objects");
    const std::string content = json_str(t, "content", "added_tokens[]");
    auto idj = t.find("id");
    if (idj == t.end() || !idj->is_number_integer() || idj->get<int64_t>() < 0 ||
        idj->get<int64_t>() > INT32_MAX) {
      throw DataError("added token \"" + content + "\" needs a non-negative integer id");
    }
    if (content.empty()) throw DataError("added token " + std::to_string(idj->get<int64_t>()) + " is empty");
    const auto id = static_cast<int32_t>(idj->get<int64_t>());
    if (id >= static_cast<int64_t>(pieces.size())) pieces.resize(id + 1);
    pieces[id] = content;
    vocab[content] = id;
    if (special.size() < pieces.size()) special.resize(pieces.size(), 0);
    special[id] = t.value("special", false) ? 1 : 0;
    added.push_back({content, id});
  }
  special.resize(pieces.size(), 0);
  index_added();
}

void BpeTokenizer::Impl::index_added() {
  // Leftmost-longest matching, as the Hugging Face added-vocabulary trie does.
  std::stable_sort(added.begin(), added.end(),
                   [](const Added& x, const Added& y) { return x.content.size() > y.content.size(); });
  for (auto& bucket : added_by_byte) bucket.clear();
  for (size_t i = 0; i < added.size(); ++i) {
    added_by_byte[static_cast<unsigned char>(added[i].content[0])].push_back(static_cast<int>(i));
  }
}

void BpeTokenizer::Impl::load_normalizer(const json& j) {
  std::vector<const json*> steps;
  flatten(j, "normalizers", steps, "normalizer");
  for (const json* s : steps) {
    const std::string type = json_str(*s, "type", "normalizer");
    if (type == "NFC") {
      normalizers.push_back({NormalizerStep::kNfc, "", ""});
    } else if (type == "Prepend") {
      normalizers.push_back({NormalizerStep::kPrepend, json_str(*s, "prepend", "normalizer"), ""});
    } else if (type == "Replace") {
      bool is_regex = false;
      std::string pattern = pattern_of(*s, &is_regex, "normalizer Replace");
      if (is_regex) throw DataError("normalizer Replace with a Regex pattern is not supported");
      normalizers.push_back({NormalizerStep::kReplace, pattern, json_str(*s, "content", "normalizer")});
    } else {
      throw DataError("normalizer " + type + " is not supported (NFC, Prepend, Replace)");
    }
  }
}

void BpeTokenizer::Impl::load_pre_tokenizer(const json& j) {
  std::vector<const json*> steps;
  flatten(j, "pretokenizers", steps, "pre_tokenizer");
  for (const json* s : steps) {
    const std::string type = json_str(*s, "type", "pre_tokenizer");
    PreTokenizerStep step;
    if (type == "Split") {
      if (s->value("behavior", std::string()) != "Isolated" || s->value("invert", false)) {
        throw DataError("pre_tokenizer Split is supported only with behavior Isolated, invert false");
      }
      bool is_regex = false;
      const std::string pattern = pattern_of(*s, &is_regex, "pre_tokenizer Split");
      step.kind = PreTokenizerStep::kSplit;
      step.regex = std::make_unique<Regex>(pattern, !is_regex, "pre_tokenizer Split");
    } else if (type == "ByteLevel") {
      step.kind = PreTokenizerStep::kByteLevel;
      step.add_prefix_space = s->value("add_prefix_space", false);
      if (s->value("use_regex", true)) step.regex = std::make_unique<Regex>(kGpt2Pattern, false, "ByteLevel");
      byte_level = true;
    } else if (type == "Metaspace") {
      step.kind = PreTokenizerStep::kMetaspace;
      step.replacement = s->value("replacement", std::string("\xE2\x96\x81"));
      step.prepend_scheme = s->value("prepend_scheme", std::string());
      if (step.prepend_scheme.empty()) step.prepend_scheme = s->value("add_prefix_space", true) ? "always" : "never";
      if (step.prepend_scheme != "always" && step.prepend_scheme != "first" && step.prepend_scheme != "never") {
        throw DataError("pre_tokenizer Metaspace prepend_scheme " + step.prepend_scheme + " is not supported");
      }
      step.split = s->value("split", true);
    } else {
      throw DataError("pre_tokenizer " + type + " is not supported (Split, ByteLevel, Metaspace)");
    }
    pre_tokenizers.push_back(std::move(step));
  }
}

void BpeTokenizer::Impl::load_decoder(const json& j) {
  std::vector<const json*> steps;
  flatten(j, "decoders", steps, "decoder");
  for (const json* s : steps) {
    const std::string type = json_str(*s, "type", "decoder");
    DecoderStep step;
    if (type == "ByteLevel") {
      step.kind = DecoderStep::kByteLevel;
    } else if (type == "Replace") {
      bool is_regex = false;
      step.kind = DecoderStep::kReplace;
      step.a = pattern_of(*s, &is_regex, "decoder Replace");
      if (is_regex) throw DataError("decoder Replace with a Regex pattern is not supported");
      step.b = json_str(*s, "content", "decoder Replace");
    } else if (type == "ByteFallback") {
      step.kind = DecoderStep::kByteFallback;
    } else if (type == "Fuse") {
      step.kind = DecoderStep::kFuse;
    } else if (type == "Strip") {
      step.kind = DecoderStep::kStrip;
      step.a = json_str(*s, "content", "decoder Strip");
      step.start = s->value("start", 0);
      step.stop = s->value("stop", 0);
    } else if (type == "Metaspace") {
      step.kind = DecoderStep::kMetaspace;
      step.a = s->value("replacement", std::string("\xE2\x96\x81"));
      step.b = s->value("prepend_scheme", std::string());
      if (step.b.empty()) step.b = s->value("add_prefix_space", true) ? "always" : "never";
    } else {
      throw DataError("decoder " + type + " is not supported");
    }
    decoders.push_back(std::move(step));
  }
}

void BpeTokenizer::Impl::load_post_processor(const json& j) {
  // Only TemplateProcessing says which special tokens wrap a single sequence (LLaMA: "<s> $A");
  // ByteLevel (Qwen) adds nothing.
  if (!j.is_object() || j.value("type", std::string()) != "TemplateProcessing") return;
  auto single = j.find("single");
  if (single == j.end() || !single->is_array() || single->empty()) return;
  auto special_id = [&](const json& item) -> int64_t {
    auto st = item.find("SpecialToken");
    if (st == item.end() || !st->is_object() || !st->contains("id")) return -1;
    return id_of((*st)["id"].get<std::string>());
  };
  bos = special_id(single->front());
  eos = single->size() > 1 ? special_id(single->back()) : -1;
  add_bos_default = bos >= 0;
  add_eos_default = eos >= 0;
}

// ---------------------------------------------------------------- encode

template <typename Emit>
void BpeTokenizer::Impl::pre_tokenize(size_t step, std::string_view piece, bool first, const Emit& emit) const {
  if (piece.empty()) return;
  if (step == pre_tokenizers.size()) {
    emit(piece);
    return;
  }
  const PreTokenizerStep& p = pre_tokenizers[step];
  auto next = [&](std::string_view w) { pre_tokenize(step + 1, w, first, emit); };
  switch (p.kind) {
    case PreTokenizerStep::kSplit:
      p.regex->split_isolated(piece, next);
      return;
    case PreTokenizerStep::kByteLevel: {
      // The byte mapping itself happens in encode_word (bytes -> ids directly).
      std::string prefixed;
      if (p.add_prefix_space && piece.front() != ' ') {
        prefixed = " " + std::string(piece);
        piece = prefixed;
      }
      if (p.regex) {
        p.regex->split_isolated(piece, next);
      } else {
        next(piece);
      }
      return;
    }
    case PreTokenizerStep::kMetaspace: {
      std::string s(piece);
      replace_all(s, " ", p.replacement);
      const bool prepend = p.prepend_scheme == "always" || (p.prepend_scheme == "first" && first);
      if (prepend && s.compare(0, p.replacement.size(), p.replacement) != 0) s.insert(0, p.replacement);
      if (!p.split) {
        next(s);
        return;
      }
      // Split before every replacement character, keeping it with the following word.
      const std::string_view sv(s);
      size_t begin = 0;
      for (size_t hit = sv.find(p.replacement, 1); hit != std::string_view::npos;
           hit = sv.find(p.replacement, hit + 1)) {
        next(sv.substr(begin, hit - begin));
        begin = hit;
      }
      next(sv.substr(begin));
      return;
    }
  }
}

void BpeTokenizer::Impl::encode_segment(std::string_view segment, bool first, std::vector<int64_t>& out) const {
  std::string normalized;
  std::string_view s = segment;
  for (const NormalizerStep& n : normalizers) {
    switch (n.kind) {
      case NormalizerStep::kNfc:
        if (!nfc_quick_yes(s)) {
          normalized = nfc_normalize(std::string(s));
          s = normalized;
        }
        break;
      case NormalizerStep::kPrepend:
        if (!s.empty()) {
          normalized = n.a + std::string(s);
          s = normalized;
        }
        break;
      case NormalizerStep::kReplace:
        if (s.find(n.a) != std::string_view::npos) {
          std::string replaced(s);
          replace_all(replaced, n.a, n.b);
          normalized = std::move(replaced);
          s = normalized;
        }
        break;
    }
  }
  pre_tokenize(0, s, first, [&](std::string_view word) { encode_word(word, out); });
}

void BpeTokenizer::Impl::encode_word(std::string_view word, std::vector<int64_t>& out) const {
  const bool cached = cache_enabled && word.size() <= kCacheMaxWord;
  std::string key;
  if (cached) {
    key.assign(word);
    std::lock_guard<std::mutex> lock(cache_mutex);
    auto it = cache.find(key);
    if (it != cache.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }

  std::vector<int32_t> symbols;
  symbols.reserve(word.size());
  const auto* p = reinterpret_cast<const unsigned char*>(word.data());
  if (byte_level) {
    int32_t whole = -1;
    if (ignore_merges) {  // LLaMA-3: a word that is itself a token skips the merges
      std::string mapped;
      for (size_t i = 0; i < word.size(); ++i) mapped += byte_alphabet().byte_to_piece[p[i]];
      whole = id_of(mapped);
    }
    if (whole >= 0) {
      symbols.push_back(whole);
    } else {
      for (size_t i = 0; i < word.size(); ++i) symbols.push_back(byte_ids[p[i]]);
    }
  } else {
    const int32_t whole = ignore_merges ? id_of(std::string(word)) : -1;
    if (whole >= 0) {
      symbols.push_back(whole);
    } else {
      std::string ch;
      for (size_t i = 0; i < word.size();) {
        int sub = 0;
        int len = utf8_char(p + i, word.size() - i, &sub);
        if (len == 0) len = sub;  // cannot happen after encode() sanitised the text
        ch.assign(word.data() + i, len);
        const int32_t id = id_of(ch);
        bool fallback_ok = byte_fallback;
        for (int k = 0; fallback_ok && k < len; ++k) fallback_ok = fallback_ids[p[i + k]] >= 0;
        if (id >= 0) {
          symbols.push_back(id);
        } else if (fallback_ok) {
          for (int k = 0; k < len; ++k) symbols.push_back(fallback_ids[p[i + k]]);
        } else if (unk_id >= 0) {
          if (!(fuse_unk && !symbols.empty() && symbols.back() == unk_id)) symbols.push_back(unk_id);
        } else {
          throw RequestError(path + ": character \"" + ch + "\" is not in the vocabulary and there is no unk_token");
        }
        i += len;
      }
    }
  }
  bpe(symbols);
  out.insert(out.end(), symbols.begin(), symbols.end());
  if (cached) {
    std::lock_guard<std::mutex> lock(cache_mutex);
    if (cache.size() >= kCacheMaxEntries) cache.clear();  // bounded memory; refills with hot words
    cache.emplace(std::move(key), std::move(symbols));
  }
}

void BpeTokenizer::Impl::bpe(std::vector<int32_t>& symbols) const {
  const auto n = static_cast<int32_t>(symbols.size());
  if (n < 2) return;
  struct Node {
    int32_t id, prev, next;
    bool alive;
  };
  struct Candidate {
    int32_t rank, pos, merged;
    bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::vector<Node> nodes(n);
  std::vector<Candidate> storage;
  storage.reserve(n);
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> heap(
      std::greater<Candidate>(), std::move(storage));
  auto consider = [&](int32_t pos) {
    const Node& left = nodes[pos];
    if (left.next < 0) return;
    auto it = merges.find(pair_key(left.id, nodes[left.next].id));
    if (it != merges.end()) heap.push({it->second.first, pos, it->second.second});
  };
  for (int32_t i = 0; i < n; ++i) nodes[i] = {symbols[i], i - 1, i + 1 < n ? i + 1 : -1, true};
  for (int32_t i = 0; i + 1 < n; ++i) consider(i);
  // Lowest rank first, leftmost among equal ranks (the same pair at several places): the
  // Hugging Face order. Entries made stale by an earlier merge are recognised and dropped.
  while (!heap.empty()) {
    const Candidate c = heap.top();
    heap.pop();
    Node& left = nodes[c.pos];
    if (!left.alive || left.next < 0) continue;
    Node& right = nodes[left.next];
    auto it = merges.find(pair_key(left.id, right.id));
    if (it == merges.end() || it->second.first != c.rank) continue;
    left.id = c.merged;
    right.alive = false;
    left.next = right.next;
    if (left.next >= 0) nodes[left.next].prev = c.pos;
    if (left.prev >= 0) consider(left.prev);
    consider(c.pos);
  }
  symbols.clear();
  for (int32_t i = 0; i >= 0; i = nodes[i].next) symbols.push_back(nodes[i].id);
}

// ---------------------------------------------------------------- public

BpeTokenizer::BpeTokenizer(const std::string& json_path) : impl_(std::make_unique<Impl>()) {
  impl_->path = json_path;
  std::ifstream in(json_path, std::ios::binary);
  if (!in) throw DataError(json_path + ": cannot open tokenizer file");
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  json root;
  try {
    root = json::parse(text);
  } catch (const json::exception& e) {
    throw DataError(json_path + ": not valid JSON: " + e.what());
  }
  try {
    impl_->load(root);
  } catch (const DataError& e) {
    throw DataError(json_path + ": " + e.what());
  } catch (const json::exception& e) {
    throw DataError(json_path + ": unexpected structure: " + e.what());
  }
  add_bos = impl_->add_bos_default;
  add_eos = impl_->add_eos_default;
}

BpeTokenizer::~BpeTokenizer() = default;

std::vector<int64_t> BpeTokenizer::encode(const std::string& text) const {
  const Impl& m = *impl_;
  // PCRE2 in UTF mode must not see invalid UTF-8; such bytes become U+FFFD, as when a file is read
  // with errors="replace", instead of failing the whole text.
  std::string sanitised;
  std::string_view t = text;
  if (!is_valid_utf8(t)) {
    sanitised = to_valid_utf8(t);
    t = sanitised;
  }
  std::vector<int64_t> out;
  out.reserve(t.size() / 3 + 4);
  size_t segment = 0;
  if (!m.added.empty()) {
    for (size_t i = 0; i < t.size();) {
      int match = -1;
      for (int k : m.added_by_byte[static_cast<unsigned char>(t[i])]) {
        const std::string& c = m.added[k].content;
        if (t.size() - i >= c.size() && std::memcmp(t.data() + i, c.data(), c.size()) == 0) {
          match = k;
          break;
        }
      }
      if (match < 0) {
        ++i;
        continue;
      }
      if (i > segment) m.encode_segment(t.substr(segment, i - segment), segment == 0, out);
      out.push_back(m.added[match].id);
      i += m.added[match].content.size();
      segment = i;
    }
  }
  if (segment < t.size()) m.encode_segment(t.substr(segment), segment == 0, out);
  return out;
}

std::string BpeTokenizer::decode(const std::vector<int64_t>& ids) const {
  const Impl& m = *impl_;
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (int64_t id : ids) {
    if (id < 0 || id >= static_cast<int64_t>(m.pieces.size())) {
      throw std::out_of_range("token id " + std::to_string(id) + " out of range");
    }
    if (m.special[id]) continue;
    tokens.push_back(m.pieces[id]);
  }
  for (const DecoderStep& d : m.decoders) {
    switch (d.kind) {
      case DecoderStep::kByteLevel: {
        // All tokens become one byte string; a token with a character outside the byte alphabet
        // (an added token such as "<think>") contributes its UTF-8 bytes unchanged.
        const auto& alphabet = byte_alphabet();
        std::string bytes;
        for (const std::string& t : tokens) {
          const size_t mark = bytes.size();
          const auto* p = reinterpret_cast<const unsigned char*>(t.data());
          bool mapped = true;
          for (size_t i = 0; i < t.size() && mapped;) {
            int sub = 0;
            const int len = utf8_char(p + i, t.size() - i, &sub);
            const uint32_t cp = len > 0 ? utf8_decode(p + i, len) : 0xFFFFFFFFu;
            if (cp < alphabet.cp_to_byte.size() && alphabet.cp_to_byte[cp] >= 0) {
              bytes += static_cast<char>(alphabet.cp_to_byte[cp]);
              i += len;
            } else {
              mapped = false;
            }
          }
          if (!mapped) {
            bytes.resize(mark);
            bytes += t;
          }
        }
        tokens.assign(1, to_valid_utf8(bytes));
        break;
      }
      case DecoderStep::kReplace:
        for (std::string& t : tokens) replace_all(t, d.a, d.b);
        break;
      case DecoderStep::kByteFallback: {
        std::vector<std::string> merged;
        std::string bytes;
        auto flush = [&] {
          if (bytes.empty()) return;
          if (is_valid_utf8(bytes)) {
            merged.push_back(bytes);
          } else {
            for (size_t i = 0; i < bytes.size(); ++i) merged.emplace_back("\xEF\xBF\xBD");
          }
          bytes.clear();
        };
        for (std::string& t : tokens) {
          const int b = byte_token_value(t);
          if (b >= 0) {
            bytes += static_cast<char>(b);
          } else {
            flush();
            merged.push_back(std::move(t));
          }
        }
        flush();
        tokens = std::move(merged);
        break;
      }
      case DecoderStep::kFuse: {
        std::string all;
        for (const std::string& t : tokens) all += t;
        tokens.assign(1, std::move(all));
        break;
      }
      case DecoderStep::kStrip:
        for (std::string& t : tokens) {
          size_t begin = 0, end = t.size();
          for (int k = 0; k < d.start && t.compare(begin, d.a.size(), d.a) == 0; ++k) begin += d.a.size();
          for (int k = 0; k < d.stop && end >= begin + d.a.size() &&
                          t.compare(end - d.a.size(), d.a.size(), d.a) == 0;
               ++k) {
            end -= d.a.size();
          }
          t = t.substr(begin, end - begin);
        }
        break;
      case DecoderStep::kMetaspace:
        for (size_t i = 0; i < tokens.size(); ++i) {
          replace_all(tokens[i], d.a, " ");
          if (i == 0 && d.b != "never" && !tokens[i].empty() && tokens[i][0] == ' ') tokens[i].erase(0, 1);
        }
        break;
    }
  }
  std::string text;
  for (const std::string& t : tokens) text += t;
  return text;
}

int64_t BpeTokenizer::vocab_size() const { return static_cast<int64_t>(impl_->pieces.size()); }

int64_t BpeTokenizer::bos_id() const { return impl_->bos; }

int64_t BpeTokenizer::eos_id() const { return impl_->eos; }

std::string BpeTokenizer::id_to_piece(int64_t id) const {
  if (id < 0 || id >= vocab_size()) throw std::out_of_range("token id " + std::to_string(id) + " out of range");
  return impl_->pieces[id];
}

int64_t BpeTokenizer::piece_to_id(const std::string& piece) const { return impl_->id_of(piece); }

int64_t BpeTokenizer::add_tokens(const std::vector<std::string>& tokens, bool special) {
  Impl& m = *impl_;
  int64_t count = 0;
  for (const std::string& t : tokens) {
    if (t.empty() || m.id_of(t) >= 0) continue;
    const auto id = static_cast<int32_t>(m.pieces.size());
    m.pieces.push_back(t);
    m.special.resize(m.pieces.size(), 0);
    m.special[id] = special ? 1 : 0;
    m.vocab[t] = id;
    m.added.push_back({t, id});
    ++count;
  }
  if (count > 0) m.index_added();
  return count;
}

void BpeTokenizer::set_bos_eos(const std::string& bos_piece, const std::string& eos_piece) {
  auto lookup = [&](const std::string& piece, const char* what) -> int64_t {
    if (piece.empty()) return -1;
    const int32_t id = impl_->id_of(piece);
    if (id < 0) throw DataError(std::string(what) + " \"" + piece + "\" is not in the vocabulary");
    return id;
  };
  const int64_t bos = lookup(bos_piece, "bos_token");
  const int64_t eos = lookup(eos_piece, "eos_token");
  impl_->bos = bos;
  impl_->eos = eos;
}

void BpeTokenizer::set_cache_enabled(bool enabled) {
  std::lock_guard<std::mutex> lock(impl_->cache_mutex);
  impl_->cache_enabled = enabled;
  impl_->cache.clear();
}

}  // namespace seqrec::llm
