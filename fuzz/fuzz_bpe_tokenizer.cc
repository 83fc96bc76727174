// libFuzzer target: the tokenizer.json reader (BpeTokenizer: model vocab and merges, added tokens,
// normalizer, pre-tokenizer, decoder). The input is the whole file; a loaded tokenizer then encodes
// a few fixed texts and the input's first bytes, and decodes the result. DataError is expected;
// anything else is a finding, as is an encoded id outside [0, vocab_size()).
#include <cstdint>
#include <string>

#include "fuzz_support.h"
#include "fuzz_tokenizer.h"
#include "seqrec/llm/bpe_tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& path = seqrec::fuzz::write_scratch(data, size);
  seqrec::fuzz::expect_ok_or_error([&] {
    seqrec::fuzz::exercise_tokenizer(seqrec::llm::BpeTokenizer(path), data, size);
  });
  return 0;
}
