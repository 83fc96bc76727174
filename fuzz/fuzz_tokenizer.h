// The part of the two tokenizer targets that does not depend on the file format: a loaded tokenizer
// encodes a few fixed texts and the input's first bytes, every id must lie in [0, vocab_size()),
// and the ids are turned back into pieces and decoded.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "fuzz_support.h"
#include "seqrec/llm/tokenizer.h"

namespace seqrec::fuzz {

inline void exercise_tokenizer(const llm::Tokenizer& tok, const uint8_t* data, size_t size) {
  const std::vector<std::string> texts = {
      "Hello world! Once upon a time, there was a little girl.", "  tabs\tand\nnew lines  ",
      "caf\xC3\xA9 \xE6\x97\xA5\xE6\x9C\xAC 123 <|im_start|>", "\xFF\xFE invalid utf-8 \xC3",
      std::string(reinterpret_cast<const char*>(data), size < 64 ? size : 64)};
  for (const std::string& text : texts) {
    const std::vector<int64_t> ids = tok.encode(text);
    for (int64_t id : ids) {
      if (id < 0 || id >= tok.vocab_size()) finding("encode gave id " + std::to_string(id));
      tok.id_to_piece(id);
    }
    tok.decode(ids);
  }
}

}  // namespace seqrec::fuzz
