// Item texts: building, tokenising and the item_tokens.bin file.
#include "seqrec/data/item_text.h"

#include <algorithm>
#include <cstring>

#include "seqrec/common/error.h"
#include "seqrec/common/fs.h"
#include "seqrec/common/hash.h"
#include "seqrec/data/item_catalog.h"
#include "seqrec/llm/tokenizer.h"

namespace seqrec::data {
namespace {

constexpr char kMagic[8] = {'S', 'E', 'Q', 'R', 'E', 'C', 'I', 'T'};
constexpr uint32_t kVersion = 2;  // 1: without the image words

template <typename T>
void put(std::string* out, const T& v) {
  out->append(reinterpret_cast<const char*>(&v), sizeof(T));
}

// Reads values from a byte buffer, failing with the file name on truncation.
struct Reader {
  const std::string& path;
  const std::string& buf;
  size_t pos = 0;
  void need(size_t n, const char* what) {
    if (buf.size() - pos < n)
      throw DataError(path + ": truncated item token file (reading " + what + " at byte " + std::to_string(pos) + ")");
  }
  template <typename T>
  T get(const char* what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, buf.data() + pos, sizeof(T));
    pos += sizeof(T);
    return v;
  }
};

}  // namespace

std::string item_text(const ItemCatalog& catalog, int64_t id, const ItemTextOptions& options) {
  std::string text = options.prompt;
  for (const auto& key : options.text_keys) {
    std::string value = catalog.field(id, key);
    if (!value.empty()) text += key + ": " + value;
  }
  return text;
}

std::vector<int64_t> item_positions(int64_t m, int64_t max_text_length) {
  std::vector<int64_t> pos(m + 1);
  for (int64_t j = 0; j <= m; ++j) pos[j] = j + (max_text_length - m);
  return pos;
}

std::array<std::vector<int64_t>, 3> item_positions_mrope(int64_t m, int64_t nb, int64_t gh, int64_t gw, int64_t na,
                                                         int64_t max_text_length) {
  const int64_t span = std::max(gh, gw), e = nb + span + na;
  const std::vector<int64_t> p = item_positions(m + e, max_text_length + e);  // [text][before][span][after][ITEM]
  std::array<std::vector<int64_t>, 3> out;
  auto text = [&](int64_t q) {
    for (auto& row : out) row.push_back(q);
  };
  for (int64_t j = 0; j < m + nb; ++j) text(p[j]);
  const int64_t s = p[m + nb];
  for (int64_t r = 0; r < gh; ++r)
    for (int64_t c = 0; c < gw; ++c) {
      out[0].push_back(s);
      out[1].push_back(s + r);
      out[2].push_back(s + c);
    }
  for (int64_t j = m + nb + span; j <= m + e; ++j) text(p[j]);
  return out;
}

ItemTokens ItemTokens::build(const ItemCatalog& catalog, const llm::Tokenizer& tokenizer,
                             const ItemTextOptions& options) {
  if (options.max_text_length < 1) throw ConfigError("prepare.item_text.max_text_length", "must be >= 1");
  if (options.text_keys.empty()) throw ConfigError("prepare.item_text.text_keys", "must name at least one column");
  for (const auto& key : options.text_keys) catalog.require_column(key, "prepare.item_text.text_keys");
  ItemTokens t;
  t.max_text_length_ = options.max_text_length;
  t.vocab_size_ = tokenizer.vocab_size();
  t.description_ = "tokenizer=" + options.tokenizer + "; text_keys=";
  for (size_t i = 0; i < options.text_keys.size(); ++i) t.description_ += (i ? "," : "") + options.text_keys[i];
  t.description_ += "; prompt=" + options.prompt;
  if (!options.image_before.empty() || !options.image_after.empty())
    t.description_ += "; image_words=[" + options.image_before + "][" + options.image_after + "]";
  for (auto [text, out] : {std::pair{&options.image_before, &t.image_before_}, {&options.image_after, &t.image_after_}})
    for (int64_t x : tokenizer.encode(*text)) out->push_back(static_cast<int32_t>(x));
  const int64_t v = catalog.num_items();
  t.offsets_.assign(v + 2, 0);
  for (int64_t id = 1; id <= v; ++id) {
    std::vector<int64_t> ids = tokenizer.encode_with_special(item_text(catalog, id, options));
    if (static_cast<int64_t>(ids.size()) > options.max_text_length) ids.resize(options.max_text_length);
    for (int64_t x : ids) t.tokens_.push_back(static_cast<int32_t>(x));
    t.offsets_[id + 1] = static_cast<int64_t>(t.tokens_.size());
  }
  return t;
}

Span<int32_t> ItemTokens::tokens(int64_t id) const {
  if (id < 1 || id > num_items())
    throw DataError("item " + std::to_string(id) + " has no text tokens (items are 1.." + std::to_string(num_items()) +
                    ")");
  return {tokens_.data() + offsets_[id], offsets_[id + 1] - offsets_[id]};
}

void ItemTokens::save(const std::string& path) const {
  std::string out(kMagic, sizeof kMagic);
  put(&out, kVersion);
  put(&out, uint32_t{0});
  put(&out, num_items());
  put(&out, max_text_length_);
  put(&out, vocab_size_);
  put(&out, total_tokens());
  put(&out, static_cast<int64_t>(description_.size()));
  out += description_;
  put(&out, static_cast<int64_t>(image_before_.size()));
  put(&out, static_cast<int64_t>(image_after_.size()));
  for (const auto* words : {&image_before_, &image_after_})
    out.append(reinterpret_cast<const char*>(words->data()), words->size() * sizeof(int32_t));
  out.append(reinterpret_cast<const char*>(offsets_.data()), offsets_.size() * sizeof(int64_t));
  out.append(reinterpret_cast<const char*>(tokens_.data()), tokens_.size() * sizeof(int32_t));
  put(&out, fnv1a(kFnvOffset, out.data(), out.size()));
  write_file_atomic(path, out);
}

ItemTokens ItemTokens::load(const std::string& path) {
  if (!path_exists(path))
    throw DataError(path + ": no such file (prepare the data with a prepare.item_text section to tokenise item texts)");
  const std::string buf = read_file(path);
  Reader r{path, buf};
  r.need(sizeof kMagic, "magic");
  if (std::memcmp(buf.data(), kMagic, sizeof kMagic) != 0) throw DataError(path + ": not a seqrec item token file");
  r.pos = sizeof kMagic;
  const auto version = r.get<uint32_t>("version");
  if (version != kVersion && version != 1)
    throw DataError(path + ": item token file version " + std::to_string(version) + ", expected " +
                    std::to_string(kVersion) + " (re-run seqrec prepare)");
  r.get<uint32_t>("reserved");
  ItemTokens t;
  const auto v = r.get<int64_t>("num_items");
  t.max_text_length_ = r.get<int64_t>("max_text_length");
  t.vocab_size_ = r.get<int64_t>("vocab_size");
  const auto n = r.get<int64_t>("num_tokens");
  const auto d = r.get<int64_t>("description size");
  if (v < 0 || n < 0 || d < 0) throw DataError(path + ": corrupt header");
  if (static_cast<uint64_t>(v) > buf.size() / sizeof(int64_t) || static_cast<uint64_t>(n) > buf.size() / sizeof(int32_t))
    throw DataError(path + ": corrupt header (counts larger than the file)");
  r.need(static_cast<size_t>(d), "description");
  t.description_ = buf.substr(r.pos, d);
  r.pos += d;
  if (version >= 2) {
    const auto nb = r.get<int64_t>("image words (before) count");
    const auto na = r.get<int64_t>("image words (after) count");
    if (nb < 0 || na < 0 || nb > 1 << 20 || na > 1 << 20) throw DataError(path + ": corrupt header (image words)");
    r.need(static_cast<size_t>(nb + na) * sizeof(int32_t), "image words");
    for (auto [count, out] : {std::pair{nb, &t.image_before_}, {na, &t.image_after_}}) {
      out->resize(count);
      if (count > 0) std::memcpy(out->data(), buf.data() + r.pos, count * sizeof(int32_t));
      r.pos += count * sizeof(int32_t);
    }
  }
  const size_t payload = static_cast<size_t>(v + 2) * sizeof(int64_t) + static_cast<size_t>(n) * sizeof(int32_t);
  r.need(payload + sizeof(uint64_t), "offsets and tokens");
  if (buf.size() != r.pos + payload + sizeof(uint64_t))
    throw DataError(path + ": size " + std::to_string(buf.size()) + " does not match its header");
  uint64_t stored;
  std::memcpy(&stored, buf.data() + r.pos + payload, sizeof stored);
  if (fnv1a(kFnvOffset, buf.data(), r.pos + payload) != stored)
    throw DataError(path + ": checksum mismatch (the file is corrupt)");
  t.offsets_.resize(v + 2);
  std::memcpy(t.offsets_.data(), buf.data() + r.pos, (v + 2) * sizeof(int64_t));
  t.tokens_.resize(n);
  if (n > 0) std::memcpy(t.tokens_.data(), buf.data() + r.pos + (v + 2) * sizeof(int64_t), n * sizeof(int32_t));
  for (int64_t i = 0; i <= v; ++i)
    if (t.offsets_[i] > t.offsets_[i + 1]) throw DataError(path + ": offsets are not increasing");
  if (t.offsets_[0] != 0 || t.offsets_[1] != 0 || t.offsets_[v + 1] != n) throw DataError(path + ": bad offsets");
  for (const auto* words : {&t.tokens_, &t.image_before_, &t.image_after_})
    for (int32_t x : *words)
      if (x < 0 || x >= t.vocab_size_)
        throw DataError(path + ": token id " + std::to_string(x) + " outside the vocabulary of " +
                        std::to_string(t.vocab_size_));
  return t;
}

}  // namespace seqrec::data
