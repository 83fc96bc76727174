// libFuzzer target: the tokenizer.model reader (SentencePieceTokenizer: the ModelProto protobuf, pieces,
// scores, types, trainer and normalizer specs). The input is the whole file; a loaded tokenizer then encodes
// a few fixed texts and the input's first bytes, and decodes the result. DataError is expected;
// anything else is a finding, as is an encoded id outside [0, vocab_size()).
#include <cstdint>
#include <string>

#include "fuzz_support.h"
#include "fuzz_tokenizer.h"
#include "seqrec/llm/sentencepiece_tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& path = seqrec::fuzz::write_scratch(data, size);
  seqrec::fuzz::expect_ok_or_error([&] {
    seqrec::fuzz::exercise_tokenizer(seqrec::llm::SentencePieceTokenizer(path), data, size);
  });
  return 0;
}
