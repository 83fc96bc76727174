// Item texts for an item LLM (HLLM, systems.md §1.4), tokenised once at prepare time.
//
//   text_i = prompt + "".join(f"{key}: {value}" for key in text_keys if value is not empty)
//   ids_i  = tokenizer(text_i) with BOS, truncated to max_text_length
//
// The model appends one [ITEM] slot and numbers positions right-aligned: item_positions(m, L) gives
// arange(m + 1) + (L - m), so the [ITEM] slot always sits at position L.
//
// Image words (`image_words: {before, after}`, Molar's "... [Text]. Item Image: [Img]. [Cur_Item]"):
// two constant texts that a model with image soft tokens puts around them, [text][before][Img][after]
// [ITEM]. Each is tokenised alone, without BOS/EOS: as a processor tokenises the text on either side
// of an image placeholder token (Qwen2-VL's); for a byte-level BPE that equals tokenising the whole
// prompt at once unless the text's last character merges with the first of `before`.
//
// <prepared>/item_tokens.bin (little endian): magic "SEQRECIT", u32 version (2), u32 0, i64 num_items
// V, i64 max_text_length, i64 vocab_size, i64 num_tokens, i64 description bytes, the description
// (tokenizer, keys, prompt), i64 before count, i64 after count, the image words' tokens int32
// [before + after], offsets [V + 2] (item 0 = padding, empty), tokens int32 [num_tokens], u64 FNV-1a
// 64 of everything before it. Version 1 files (no image words) still load.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "seqrec/data/interaction_store.h"

namespace seqrec::llm {
class Tokenizer;
}

namespace seqrec::data {

class ItemCatalog;

/// How item texts are built (the `prepare.item_text:` section).
struct ItemTextOptions {
  std::string tokenizer;                          ///< Hugging Face folder with the tokenizer files
  std::vector<std::string> text_keys = {"title"}; ///< item-table columns, in this order
  int64_t max_text_length = 256;                  ///< tokens kept (BOS included), before [ITEM]
  std::string prompt = "Compress the following sentence into embedding: ";
  std::string image_before;  ///< image_words.before: between the text and the image soft tokens
  std::string image_after;   ///< image_words.after: between the image soft tokens and [ITEM]
};

/// The text of dense item `id` (1..V).
std::string item_text(const ItemCatalog& catalog, int64_t id, const ItemTextOptions& options);

/// Right-aligned positions of an item with m text tokens plus the [ITEM] slot: (L - m) .. L.
std::vector<int64_t> item_positions(int64_t m, int64_t max_text_length);

/// The positions of an item's tokens [text m][before nb][image gh x gw][after na][ITEM] under
/// M-RoPE (Qwen2-VL's get_rope_index, one frame): rows t, h, w of m + nb + gh * gw + na + 1 entries.
/// A text token has t = h = w; the image's tokens, row-major, sit at (s, s + row, s + column) for
/// s the position after the words before it, and the words after it continue at s + max(gh, gw).
/// Right-aligned as item_positions with E = nb + max(gh, gw) + na: the [ITEM] slot at L + E.
std::array<std::vector<int64_t>, 3> item_positions_mrope(int64_t m, int64_t nb, int64_t gh, int64_t gw, int64_t na,
                                                         int64_t max_text_length);

/// Token ids of every item (CSR), the content of item_tokens.bin.
class ItemTokens {
 public:
  ItemTokens() = default;
  /// Tokenises every item of `catalog`; throws ConfigError when a text key is not a catalog column.
  static ItemTokens build(const ItemCatalog& catalog, const llm::Tokenizer& tokenizer,
                          const ItemTextOptions& options);
  /// Reads and verifies a file; DataError names the path and what is wrong (magic, version, size,
  /// checksum, token range).
  static ItemTokens load(const std::string& path);
  /// Writes atomically (temp + rename).
  void save(const std::string& path) const;

  int64_t num_items() const { return static_cast<int64_t>(offsets_.size()) - 2; }
  int64_t max_text_length() const { return max_text_length_; }
  int64_t vocab_size() const { return vocab_size_; }
  const std::string& description() const { return description_; }
  /// Token ids of item `id` (1..V).
  Span<int32_t> tokens(int64_t id) const;
  /// The image words' tokens (empty when not configured).
  const std::vector<int32_t>& image_before() const { return image_before_; }
  const std::vector<int32_t>& image_after() const { return image_after_; }
  int64_t total_tokens() const { return static_cast<int64_t>(tokens_.size()); }

 private:
  int64_t max_text_length_ = 0;
  int64_t vocab_size_ = 0;
  std::string description_;
  std::vector<int64_t> offsets_;  // [V + 2]
  std::vector<int32_t> tokens_;
  std::vector<int32_t> image_before_, image_after_;
};

/// The file name inside a prepared directory.
constexpr const char* kItemTokensFile = "item_tokens.bin";

}  // namespace seqrec::data
