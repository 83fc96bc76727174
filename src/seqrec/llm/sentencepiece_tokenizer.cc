#include "seqrec/llm/sentencepiece_tokenizer.h"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>
#include <queue>
#include <stdexcept>
#include <string_view>
#include <unordered_map>
#include <utility>

#include "seqrec/common/error.h"
#include "seqrec/common/utf8.h"

namespace seqrec::llm {
namespace {

constexpr std::string_view kSpaceSymbol = "\xE2\x96\x81";  // U+2581 "▁"
constexpr std::string_view kReplacementChar = "\xEF\xBF\xBD";  // U+FFFD

// ModelProto.SentencePiece.Type
enum PieceType : int { kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6 };
// TrainerSpec.ModelType
enum ModelType : int { kUnigram = 1, kBpe = 2, kWord = 3, kChar = 4 };

// ---------------------------------------------------------------- protobuf wire format

// A cursor over one (sub)message; offsets in errors are from the start of the file.
class WireReader {
 public:
  WireReader(const std::string& path, std::string_view data, size_t base)
      : path_(path), data_(data), base_(base) {}

  bool done() const { return pos_ >= data_.size(); }
  size_t offset() const { return base_ + pos_; }

  uint64_t varint() {
    uint64_t value = 0;
    const size_t start = offset();
    for (int shift = 0; shift < 64; shift += 7) {
      if (pos_ >= data_.size()) fail("truncated protobuf at byte " + std::to_string(start));
      const auto byte = static_cast<uint8_t>(data_[pos_++]);
      value |= static_cast<uint64_t>(byte & 0x7F) << shift;
      if ((byte & 0x80) == 0) return value;
    }
    fail("malformed varint at byte " + std::to_string(start));
  }

  /// Reads a tag; returns {field number, wire type}.
  std::pair<uint32_t, int> tag() {
    const size_t start = offset();
    const uint64_t key = varint();
    const auto field = static_cast<uint32_t>(key >> 3);
    const int wire = static_cast<int>(key & 7);
    if (field == 0 || key >> 3 > 0x1FFFFFFF) fail("bad field number at byte " + std::to_string(start));
    if (wire != 0 && wire != 1 && wire != 2 && wire != 5) {
      fail("bad wire type " + std::to_string(wire) + " at byte " + std::to_string(start));
    }
    return {field, wire};
  }

  /// A length-delimited payload and the file offset where it starts.
  std::pair<std::string_view, size_t> bytes() {
    const size_t start = offset();
    const uint64_t size = varint();
    if (size > data_.size() - pos_) fail("truncated protobuf at byte " + std::to_string(start));
    const size_t at = offset();
    std::string_view out = data_.substr(pos_, size);
    pos_ += size;
    return {out, at};
  }

  float fixed32_float() {
    if (data_.size() - pos_ < 4) fail("truncated protobuf at byte " + std::to_string(offset()));
    uint32_t bits = 0;
    for (int i = 0; i < 4; ++i) bits |= static_cast<uint32_t>(static_cast<uint8_t>(data_[pos_ + i])) << (8 * i);
    pos_ += 4;
    float f;
    std::memcpy(&f, &bits, sizeof(f));
    return f;
  }

  void skip(int wire) {
    switch (wire) {
      case 0: varint(); break;
      case 1:
        if (data_.size() - pos_ < 8) fail("truncated protobuf at byte " + std::to_string(offset()));
        pos_ += 8;
        break;
      case 2: bytes(); break;
      case 5:
        if (data_.size() - pos_ < 4) fail("truncated protobuf at byte " + std::to_string(offset()));
        pos_ += 4;
        break;
      default: fail("bad wire type " + std::to_string(wire) + " at byte " + std::to_string(offset()));
    }
  }

  /// Checks the wire type of a known field.
  void expect(uint32_t field, int wire, int want) const {
    if (wire != want) {
      fail("field " + std::to_string(field) + " has wire type " + std::to_string(wire) + ", expected " +
           std::to_string(want) + " (before byte " + std::to_string(offset()) + ")");
    }
  }

  [[noreturn]] void fail(const std::string& what) const { throw DataError(path_ + ": " + what); }

 private:
  const std::string& path_;
  std::string_view data_;
  size_t base_;
  size_t pos_ = 0;
};

// Length of the valid UTF-8 character at s[pos], 0 if the bytes there are malformed.
size_t utf8_valid_len(std::string_view s, size_t pos) {
  return static_cast<size_t>(utf8_char(reinterpret_cast<const unsigned char*>(s.data()) + pos, s.size() - pos));
}

// Appends `bytes` as UTF-8, each malformed byte becoming U+FFFD (as SentencePiece decodes byte pieces).
void append_utf8_bytes(const std::string& bytes, std::string& out) {
  for (size_t i = 0; i < bytes.size();) {
    const size_t len = utf8_valid_len(bytes, i);
    if (len == 0) {
      out += kReplacementChar;
      ++i;
    } else {
      out.append(bytes, i, len);
      i += len;
    }
  }
}

// "<0xNN>" -> NN, -1 if `piece` is not of that form.
int parse_byte_piece(const std::string& piece) {
  if (piece.size() != 6 || piece.compare(0, 3, "<0x") != 0 || piece[5] != '>') return -1;
  auto hex = [](char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  const int hi = hex(piece[3]), lo = hex(piece[4]);
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw DataError(path + ": cannot open SentencePiece model");
  std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) throw DataError(path + ": cannot read SentencePiece model");
  return data;
}

}  // namespace

// ---------------------------------------------------------------- the model

struct SentencePieceTokenizer::Impl {
  struct Piece {
    std::string text;
    float score = 0.0f;
    int type = kNormal;
  };

  std::vector<Piece> pieces;
  // All pieces by string (views into `pieces`), and the ones the segmenters may produce (NORMAL,
  // USER_DEFINED, UNUSED, as SentencePiece's pieces_ map).
  std::unordered_map<std::string_view, int> all_ids;
  std::unordered_map<std::string_view, int> segment_ids;
  std::vector<std::string_view> user_defined;  // longest first
  size_t max_piece_bytes = 0;
  int byte_ids[256];

  int model_type = kUnigram;
  bool byte_fallback = false;
  int unk_id = -1;
  int bos_id = 1, eos_id = 2, pad_id = -1;
  std::string unk_surface = " \xE2\x81\x87 ";
  bool add_dummy_prefix = true;
  bool remove_extra_whitespaces = true;
  bool escape_whitespaces = true;
  float min_score = 0.0f, max_score = 0.0f;  // over NORMAL pieces (unigram)

  // Tokens added after loading (transformers' add_tokens): id = pieces.size() + index.
  struct Added {
    std::string content;
    bool special = false;
  };
  std::vector<Added> added;
  std::unordered_map<std::string, int64_t> added_ids;
  std::vector<std::vector<int>> added_by_byte = std::vector<std::vector<int>>(256);  // longest first

  /// Appends the ids of `text` (no added tokens in it) to `ids`.
  void encode_plain(const std::string& text, std::vector<int64_t>& ids) const;

  void load(const std::string& path);
  void parse_piece(const std::string& path, std::string_view data, size_t base);
  void parse_trainer_spec(const std::string& path, std::string_view data, size_t base);
  void parse_normalizer_spec(const std::string& path, std::string_view data, size_t base);

  std::string normalize(const std::string& text) const;
  /// Splits normalized text into characters, user-defined pieces matched greedily (frozen).
  void split_chars(std::string_view text, std::vector<std::string_view>& chars, std::vector<char>& frozen) const;
  void encode_bpe(std::string_view text, std::vector<std::pair<std::string_view, int>>& out) const;
  void encode_unigram(std::string_view text, std::vector<std::pair<std::string_view, int>>& out) const;
  int lookup(std::string_view piece) const {
    auto it = segment_ids.find(piece);
    return it == segment_ids.end() ? -1 : it->second;
  }
};

void SentencePieceTokenizer::Impl::parse_piece(const std::string& path, std::string_view data, size_t base) {
  WireReader r(path, data, base);
  Piece piece;
  while (!r.done()) {
    const auto [field, wire] = r.tag();
    switch (field) {
      case 1: r.expect(field, wire, 2); piece.text = std::string(r.bytes().first); break;
      case 2: r.expect(field, wire, 5); piece.score = r.fixed32_float(); break;
      case 3: r.expect(field, wire, 0); piece.type = static_cast<int>(r.varint()); break;
      default: r.skip(wire);
    }
  }
  const std::string where = "piece " + std::to_string(pieces.size()) + " (at byte " + std::to_string(base) + ")";
  if (piece.text.empty()) r.fail(where + " is empty");
  if (piece.type < kNormal || piece.type > kByte) r.fail(where + " has unknown type " + std::to_string(piece.type));
  pieces.push_back(std::move(piece));
}

void SentencePieceTokenizer::Impl::parse_trainer_spec(const std::string& path, std::string_view data, size_t base) {
  WireReader r(path, data, base);
  while (!r.done()) {
    const auto [field, wire] = r.tag();
    auto int32 = [&, f = field, w = wire] {
      r.expect(f, w, 0);
      return static_cast<int>(static_cast<int32_t>(static_cast<uint32_t>(r.varint())));
    };
    switch (field) {
      case 3: model_type = int32(); break;
      case 24:
        if (int32() != 0) r.fail("treat_whitespace_as_suffix SentencePiece models are not supported");
        break;
      case 35: byte_fallback = int32() != 0; break;
      case 40: int32(); break;  // unk_id: the UNKNOWN piece is authoritative
      case 41: bos_id = int32(); break;
      case 42: eos_id = int32(); break;
      case 43: pad_id = int32(); break;
      case 44: r.expect(field, wire, 2); unk_surface = std::string(r.bytes().first); break;
      default: r.skip(wire);
    }
  }
}

void SentencePieceTokenizer::Impl::parse_normalizer_spec(const std::string& path, std::string_view data, size_t base) {
  WireReader r(path, data, base);
  std::string name;
  bool has_charsmap = false;
  while (!r.done()) {
    const auto [field, wire] = r.tag();
    switch (field) {
      case 1: r.expect(field, wire, 2); name = std::string(r.bytes().first); break;
      case 2: r.expect(field, wire, 2); has_charsmap = !r.bytes().first.empty(); break;
      case 3: r.expect(field, wire, 0); add_dummy_prefix = r.varint() != 0; break;
      case 4: r.expect(field, wire, 0); remove_extra_whitespaces = r.varint() != 0; break;
      case 5: r.expect(field, wire, 0); escape_whitespaces = r.varint() != 0; break;
      default: r.skip(wire);
    }
  }
  if (has_charsmap) {
    r.fail("normalizer '" + name + "' uses a precompiled character map, which is not supported (only identity)");
  }
}

void SentencePieceTokenizer::Impl::load(const std::string& path) {
  const std::string data = read_file(path);
  WireReader r(path, data, 0);
  while (!r.done()) {
    const auto [field, wire] = r.tag();
    if (field >= 1 && field <= 3) {
      r.expect(field, wire, 2);
      const auto [payload, at] = r.bytes();
      if (field == 1) parse_piece(path, payload, at);
      if (field == 2) parse_trainer_spec(path, payload, at);
      if (field == 3) parse_normalizer_spec(path, payload, at);
    } else {
      r.skip(wire);
    }
  }
  if (pieces.empty()) throw DataError(path + ": SentencePiece model has no pieces");
  if (model_type != kBpe && model_type != kUnigram) {
    throw DataError(path + ": SentencePiece model type " + std::to_string(model_type) +
                    " is not supported (only BPE and unigram)");
  }

  std::fill(std::begin(byte_ids), std::end(byte_ids), -1);
  bool have_normal = false;
  for (size_t i = 0; i < pieces.size(); ++i) {
    const Piece& p = pieces[i];
    const int id = static_cast<int>(i);
    if (!all_ids.emplace(p.text, id).second) throw DataError(path + ": duplicate piece \"" + p.text + "\"");
    switch (p.type) {
      case kUnknown:
        if (unk_id >= 0) throw DataError(path + ": more than one UNKNOWN piece");
        unk_id = id;
        break;
      case kByte: {
        const int b = parse_byte_piece(p.text);
        if (b < 0) throw DataError(path + ": BYTE piece \"" + p.text + "\" is not of the form <0xNN>");
        byte_ids[b] = id;
        break;
      }
      case kNormal:
      case kUserDefined:
      case kUnused:
        segment_ids.emplace(p.text, id);
        max_piece_bytes = std::max(max_piece_bytes, p.text.size());
        if (p.type == kUserDefined) user_defined.push_back(p.text);
        if (p.type == kNormal) {
          min_score = have_normal ? std::min(min_score, p.score) : p.score;
          max_score = have_normal ? std::max(max_score, p.score) : p.score;
          have_normal = true;
        }
        break;
      default: break;
    }
  }
  if (unk_id < 0) throw DataError(path + ": SentencePiece model has no UNKNOWN piece");
  const int size = static_cast<int>(pieces.size());
  for (int* id : {&bos_id, &eos_id, &pad_id}) {
    if (*id < 0 || *id >= size) *id = -1;
  }
  std::sort(user_defined.begin(), user_defined.end(),
            [](std::string_view a, std::string_view b) { return a.size() > b.size(); });
}

// The identity normaliser with SentencePiece's whitespace handling: malformed UTF-8 becomes U+FFFD,
// extra spaces are removed if asked, a dummy "▁" is prepended, spaces become "▁".
std::string SentencePieceTokenizer::Impl::normalize(const std::string& text) const {
  std::string clean;
  clean.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    const size_t len = utf8_valid_len(text, i);
    if (len == 0) {
      clean += kReplacementChar;
      ++i;
    } else {
      clean.append(text, i, len);
      i += len;
    }
  }
  if (remove_extra_whitespaces) {
    std::string collapsed;
    collapsed.reserve(clean.size());
    for (char c : clean) {
      if (c == ' ' && (collapsed.empty() || collapsed.back() == ' ')) continue;
      collapsed += c;
    }
    while (!collapsed.empty() && collapsed.back() == ' ') collapsed.pop_back();
    clean.swap(collapsed);
  }
  if (clean.empty()) return {};
  const std::string_view space = escape_whitespaces ? kSpaceSymbol : std::string_view(" ");
  std::string out;
  out.reserve(clean.size() * 2 + 3);
  if (add_dummy_prefix) out += space;
  for (char c : clean) {
    if (c == ' ') {
      out += space;
    } else {
      out += c;
    }
  }
  return out;
}

void SentencePieceTokenizer::Impl::split_chars(std::string_view text, std::vector<std::string_view>& chars,
                                               std::vector<char>& frozen) const {
  for (size_t pos = 0; pos < text.size();) {
    size_t len = 0;
    bool is_user = false;
    for (std::string_view u : user_defined) {
      if (text.compare(pos, u.size(), u) == 0) {
        len = u.size();
        is_user = true;
        break;
      }
    }
    if (len == 0) len = std::max<size_t>(1, utf8_valid_len(text, pos));  // valid after normalize()
    chars.push_back(text.substr(pos, len));
    frozen.push_back(is_user);
    pos += len;
  }
}

// SentencePiece BPE: repeatedly merge the adjacent pair whose concatenation is a piece with the
// highest score (ties: leftmost); a priority queue of candidate pairs, invalidated lazily.
void SentencePieceTokenizer::Impl::encode_bpe(std::string_view text,
                                              std::vector<std::pair<std::string_view, int>>& out) const {
  struct Symbol {
    int prev, next;
    bool frozen;
    std::string_view piece;
  };
  struct Pair {
    int left, right;
    float score;
    size_t size;
  };
  auto worse = [](const Pair& a, const Pair& b) {
    return a.score < b.score || (a.score == b.score && a.left > b.left);
  };
  std::vector<std::string_view> chars;
  std::vector<char> frozen;
  split_chars(text, chars, frozen);
  const int n = static_cast<int>(chars.size());
  std::vector<Symbol> symbols(n);
  for (int i = 0; i < n; ++i) symbols[i] = {i - 1, i + 1 == n ? -1 : i + 1, frozen[i] != 0, chars[i]};

  std::priority_queue<Pair, std::vector<Pair>, decltype(worse)> agenda(worse);
  // Merged UNUSED pieces are split back into what they were made of.
  std::unordered_map<std::string_view, std::pair<std::string_view, std::string_view>> rev_merge;
  auto maybe_add = [&](int left, int right) {
    if (left < 0 || right < 0 || symbols[left].frozen || symbols[right].frozen) return;
    const std::string_view merged(symbols[left].piece.data(), symbols[left].piece.size() + symbols[right].piece.size());
    const int id = lookup(merged);
    if (id < 0) return;
    agenda.push({left, right, pieces[id].score, merged.size()});
    if (pieces[id].type == kUnused) rev_merge[merged] = {symbols[left].piece, symbols[right].piece};
  };
  for (int i = 1; i < n; ++i) maybe_add(i - 1, i);
  while (!agenda.empty()) {
    const Pair top = agenda.top();
    agenda.pop();
    Symbol& left = symbols[top.left];
    Symbol& right = symbols[top.right];
    if (left.piece.empty() || right.piece.empty() || left.piece.size() + right.piece.size() != top.size) continue;
    left.piece = std::string_view(left.piece.data(), top.size);
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = top.left;
    right.piece = {};
    maybe_add(left.prev, top.left);
    maybe_add(top.left, left.next);
  }

  auto resegment = [&](auto&& self, std::string_view piece) -> void {
    const int id = lookup(piece);
    if (id >= 0 && pieces[id].type == kUnused) {
      const auto it = rev_merge.find(piece);
      if (it != rev_merge.end()) {
        self(self, it->second.first);
        self(self, it->second.second);
        return;
      }
    }
    out.emplace_back(piece, id);
  };
  for (int i = n == 0 ? -1 : 0; i >= 0; i = symbols[i].next) resegment(resegment, symbols[i].piece);
}

// SentencePiece unigram: the Viterbi path over piece scores; characters no piece covers are unknown
// (score: lowest piece score - 10), and consecutive unknowns are fused.
void SentencePieceTokenizer::Impl::encode_unigram(std::string_view text,
                                                  std::vector<std::pair<std::string_view, int>>& out) const {
  constexpr float kUnkPenalty = 10.0f;
  const float unk_score = min_score - kUnkPenalty;
  std::vector<std::string_view> chars;
  std::vector<char> frozen;
  split_chars(text, chars, frozen);
  const size_t n = chars.size();
  std::vector<size_t> begin(n + 1);  // byte offset of each character
  for (size_t i = 0; i < n; ++i) begin[i + 1] = begin[i] + chars[i].size();
  constexpr double kNone = -std::numeric_limits<double>::infinity();
  std::vector<double> best(n + 1, kNone);
  std::vector<size_t> from(n + 1, 0);
  std::vector<int> via(n + 1, -1);
  best[0] = 0.0;
  for (size_t i = 0; i < n; ++i) {
    if (best[i] == kNone) continue;
    auto relax = [&](size_t j, double score, int id) {
      if (best[i] + score > best[j]) best[j] = best[i] + score, from[j] = i, via[j] = id;
    };
    bool has_single = false;
    for (size_t j = i + 1; j <= n && begin[j] - begin[i] <= max_piece_bytes; ++j) {
      if (frozen[j - 1] && j - 1 != i) break;  // pieces do not span user-defined symbols
      const int id = lookup(text.substr(begin[i], begin[j] - begin[i]));
      if (id < 0 || pieces[id].type == kUnused) {
        if (frozen[i]) break;
        continue;
      }
      const Piece& p = pieces[id];
      const double score = p.type == kUserDefined ? static_cast<double>(j - i) * max_score - 0.1 : p.score;
      relax(j, score, id);
      has_single = has_single || j == i + 1;
      if (frozen[i]) break;
    }
    if (!has_single) relax(i + 1, unk_score, unk_id);
  }
  std::vector<std::pair<std::string_view, int>> path;
  for (size_t j = n; j > 0; j = from[j]) path.emplace_back(text.substr(begin[from[j]], begin[j] - begin[from[j]]), via[j]);
  std::reverse(path.begin(), path.end());
  for (const auto& [piece, id] : path) {
    if (id == unk_id && !out.empty() && out.back().second == unk_id) {
      out.back().first = std::string_view(out.back().first.data(), out.back().first.size() + piece.size());
    } else {
      out.emplace_back(piece, id);
    }
  }
}

// ---------------------------------------------------------------- the class

SentencePieceTokenizer::SentencePieceTokenizer(const std::string& model_path) : impl_(std::make_unique<Impl>()) {
  impl_->load(model_path);
}

SentencePieceTokenizer::~SentencePieceTokenizer() = default;

// Added tokens cut the raw text first; each piece between them is normalised and encoded on its
// own (so it gets its own dummy "▁"), as transformers' slow LlamaTokenizer (legacy) does.
std::vector<int64_t> SentencePieceTokenizer::encode(const std::string& text) const {
  const Impl& m = *impl_;
  std::vector<int64_t> ids;
  if (m.added.empty()) {
    m.encode_plain(text, ids);
    return ids;
  }
  const int64_t base = static_cast<int64_t>(m.pieces.size());
  size_t segment = 0;
  for (size_t i = 0; i < text.size();) {
    int match = -1;
    for (int k : m.added_by_byte[static_cast<unsigned char>(text[i])]) {
      const std::string& c = m.added[k].content;
      if (text.compare(i, c.size(), c) == 0) {
        match = k;
        break;
      }
    }
    if (match < 0) {
      ++i;
      continue;
    }
    if (i > segment) m.encode_plain(text.substr(segment, i - segment), ids);
    ids.push_back(base + match);
    i += m.added[match].content.size();
    segment = i;
  }
  if (segment < text.size()) m.encode_plain(text.substr(segment), ids);
  return ids;
}

void SentencePieceTokenizer::Impl::encode_plain(const std::string& text, std::vector<int64_t>& ids) const {
  const Impl& m = *this;
  const std::string normalized = m.normalize(text);
  std::vector<std::pair<std::string_view, int>> segments;
  if (m.model_type == kBpe) {
    m.encode_bpe(normalized, segments);
  } else {
    m.encode_unigram(normalized, segments);
  }
  ids.reserve(ids.size() + segments.size());
  for (const auto& [piece, id] : segments) {
    if (id >= 0 && id != m.unk_id) {
      ids.push_back(id);
    } else if (m.byte_fallback) {
      for (char c : piece) {
        const int b = m.byte_ids[static_cast<uint8_t>(c)];
        ids.push_back(b >= 0 ? b : m.unk_id);
      }
    } else {
      ids.push_back(m.unk_id);
    }
  }
}

std::string SentencePieceTokenizer::decode(const std::vector<int64_t>& ids) const {
  const Impl& m = *impl_;
  const int64_t size = static_cast<int64_t>(m.pieces.size());
  std::string text;
  std::string bytes;  // a run of byte pieces, reassembled into UTF-8 when it ends
  bool at_start = m.add_dummy_prefix;  // the first visible piece loses its leading "▁"
  const int64_t total = size + static_cast<int64_t>(m.added.size());
  for (int64_t id : ids) {
    if (id < 0 || id >= total) throw std::out_of_range("token id " + std::to_string(id) + " out of range");
    if (id >= size) {  // an added token: verbatim (or skipped); the text after it starts afresh
      if (!bytes.empty()) {
        append_utf8_bytes(bytes, text);
        bytes.clear();
      }
      const Impl::Added& a = m.added[id - size];
      if (!a.special) {
        text += a.content;
        at_start = m.add_dummy_prefix;
      }
      continue;
    }
    const auto& piece = m.pieces[id];
    if (piece.type == kByte) {
      bytes += static_cast<char>(parse_byte_piece(piece.text));
      at_start = false;
      continue;
    }
    if (!bytes.empty()) {
      append_utf8_bytes(bytes, text);
      bytes.clear();
    }
    if (piece.type == kControl || id == m.bos_id || id == m.eos_id || id == m.pad_id) continue;
    if (piece.type == kUnknown) {
      text += m.unk_surface;
      at_start = false;
      continue;
    }
    std::string_view surface = piece.text;
    // The dummy prefix: only the first piece's leading "▁" is dropped.
    if (at_start && surface.substr(0, kSpaceSymbol.size()) == kSpaceSymbol) surface.remove_prefix(kSpaceSymbol.size());
    at_start = false;
    for (size_t pos = 0; pos < surface.size();) {
      if (surface.compare(pos, kSpaceSymbol.size(), kSpaceSymbol) == 0) {
        text += ' ';
        pos += kSpaceSymbol.size();
      } else {
        text += surface[pos++];
      }
    }
  }
  if (!bytes.empty()) append_utf8_bytes(bytes, text);
  return text;
}

int64_t SentencePieceTokenizer::vocab_size() const {
  return static_cast<int64_t>(impl_->pieces.size() + impl_->added.size());
}

int64_t SentencePieceTokenizer::bos_id() const { return impl_->bos_id; }

int64_t SentencePieceTokenizer::eos_id() const { return impl_->eos_id; }

std::string SentencePieceTokenizer::id_to_piece(int64_t id) const {
  if (id < 0 || id >= vocab_size()) throw std::out_of_range("token id " + std::to_string(id) + " out of range");
  const int64_t size = static_cast<int64_t>(impl_->pieces.size());
  return id < size ? impl_->pieces[id].text : impl_->added[id - size].content;
}

int64_t SentencePieceTokenizer::piece_to_id(const std::string& piece) const {
  const auto it = impl_->all_ids.find(piece);
  if (it != impl_->all_ids.end()) return it->second;
  const auto added = impl_->added_ids.find(piece);
  return added == impl_->added_ids.end() ? -1 : added->second;
}

int64_t SentencePieceTokenizer::add_tokens(const std::vector<std::string>& tokens, bool special) {
  Impl& m = *impl_;
  int64_t count = 0;
  for (const std::string& t : tokens) {
    if (t.empty() || piece_to_id(t) >= 0) continue;
    m.added_ids.emplace(t, vocab_size());
    m.added.push_back({t, special});
    ++count;
  }
  if (count == 0) return 0;
  // Leftmost-longest: per first byte, candidates longest first.
  for (auto& bucket : m.added_by_byte) bucket.clear();
  std::vector<int> order(m.added.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int>(i);
  std::stable_sort(order.begin(), order.end(),
                   [&](int a, int b) { return m.added[a].content.size() > m.added[b].content.size(); });
  for (int i : order) m.added_by_byte[static_cast<unsigned char>(m.added[i].content[0])].push_back(i);
  return count;
}

}  // namespace seqrec::llm
