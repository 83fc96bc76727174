// BpeTokenizer: the BPE model of a Hugging Face tokenizer.json, in its two common flavours:
//  - byte-level (GPT-2 / Qwen2 / LLaMA-3): NFC, Split(regex, Isolated) + ByteLevel pre-tokenizer,
//    ByteLevel decoder;
//  - SentencePiece-style (converted LLaMA): Prepend("▁") + Replace(" ", "▁") normalizer or a
//    Metaspace pre-tokenizer, byte fallback to <0xNN>, Replace/ByteFallback/Fuse/Strip decoder.
// Anything else in the file (other normalizers, pre-tokenizers, decoders, BPE options) is rejected
// with a DataError rather than silently tokenized differently. Added tokens are matched on the raw
// text (leftmost-longest); their lstrip/rstrip/single_word/normalized flags are not applied.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "seqrec/llm/tokenizer.h"

namespace seqrec::llm {

/// A tokenizer.json BPE tokenizer (vocab, merges by rank, added tokens, per-word cache).
class BpeTokenizer : public Tokenizer {
 public:
  /// Loads `json_path`; throws DataError naming the file and the unsupported or malformed part.
  explicit BpeTokenizer(const std::string& json_path);
  ~BpeTokenizer() override;

  std::vector<int64_t> encode(const std::string& text) const override;
  std::string decode(const std::vector<int64_t>& ids) const override;
  int64_t vocab_size() const override;
  int64_t bos_id() const override;
  int64_t eos_id() const override;
  std::string id_to_piece(int64_t id) const override;
  int64_t piece_to_id(const std::string& piece) const override;
  int64_t add_tokens(const std::vector<std::string>& tokens, bool special = false) override;

  /// Sets BOS / EOS by piece ("" = none); throws DataError if a piece is not in the vocabulary.
  void set_bos_eos(const std::string& bos_piece, const std::string& eos_piece);
  /// Turns the per-word encoding cache on (default) or off and empties it; not while encoding.
  void set_cache_enabled(bool enabled);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace seqrec::llm
