// Tokenizer: the text <-> token-id interface of the LLM layer, and load_tokenizer() which picks the
// implementation from a Hugging Face model folder (SentencePiece tokenizer.model, else the
// byte-level / SentencePiece-style BPE of tokenizer.json).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace seqrec::llm {

/// A tokenizer; encode/decode are const and safe to call from several threads.
class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  /// Token ids of `text`, without BOS/EOS; added tokens in the text ("<|im_start|>") map to their id.
  virtual std::vector<int64_t> encode(const std::string& text) const = 0;
  /// UTF-8 text of `ids`; special tokens (BOS, EOS, pad, <|im_end|> ...) are skipped.
  virtual std::string decode(const std::vector<int64_t>& ids) const = 0;
  /// One more than the largest id (added tokens included).
  virtual int64_t vocab_size() const = 0;
  /// The BOS id, -1 if none.
  virtual int64_t bos_id() const = 0;
  /// The EOS id, -1 if none.
  virtual int64_t eos_id() const = 0;
  /// The vocabulary string of `id` (e.g. "▁He", "Ġworld"); throws std::out_of_range if invalid.
  virtual std::string id_to_piece(int64_t id) const = 0;
  /// The id of vocabulary string `piece`, -1 if unknown.
  virtual int64_t piece_to_id(const std::string& piece) const = 0;
  /// Adds tokens as transformers' add_tokens does: ids continue from vocab_size(), tokens already in
  /// the vocabulary (and repeats) are skipped. encode() cuts the raw text at added tokens first
  /// (leftmost-longest) and encodes the text between them as usual; decode() writes a non-special
  /// added token verbatim and skips a special one. Returns the number of tokens added.
  virtual int64_t add_tokens(const std::vector<std::string>& tokens, bool special = false) = 0;

  /// encode() plus BOS/EOS as add_bos/add_eos say (and only where the tokenizer has them).
  std::vector<int64_t> encode_with_special(const std::string& text) const;

  /// Whether encode_with_special adds BOS / EOS; load_tokenizer sets them from tokenizer_config.json
  /// (add_bos_token / add_eos_token), defaulting to the LLaMA SentencePiece rule (BOS only) for
  /// tokenizer.model and to the post_processor template of tokenizer.json (Qwen: nothing).
  bool add_bos = false;
  bool add_eos = false;
};

/// Loads from a Hugging Face model folder: tokenizer.model (SentencePiece) if present, else
/// tokenizer.json (BPE); reads tokenizer_config.json if present. Throws DataError naming the path.
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& dir);

}  // namespace seqrec::llm
