// SentencePieceTokenizer: LLaMA-style tokenizer.model read and applied without the sentencepiece
// library (whose bundled protobuf clashes with LibTorch's): a hand-written reader of the ModelProto
// wire format, the identity normaliser, BPE (with byte fallback) and unigram (Viterbi) encoding.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "seqrec/llm/tokenizer.h"

namespace seqrec::llm {

/// A SentencePiece model (tokenizer.model); encode() adds no BOS/EOS.
class SentencePieceTokenizer : public Tokenizer {
 public:
  /// Loads `model_path`; throws DataError naming the file if it cannot be read or parsed.
  explicit SentencePieceTokenizer(const std::string& model_path);
  ~SentencePieceTokenizer() override;

  std::vector<int64_t> encode(const std::string& text) const override;
  std::string decode(const std::vector<int64_t>& ids) const override;
  int64_t vocab_size() const override;
  int64_t bos_id() const override;
  int64_t eos_id() const override;
  std::string id_to_piece(int64_t id) const override;
  int64_t piece_to_id(const std::string& piece) const override;
  int64_t add_tokens(const std::vector<std::string>& tokens, bool special = false) override;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace seqrec::llm
