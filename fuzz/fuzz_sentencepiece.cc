// libFuzzer target: the tokenizer.model reader (SentencePieceTokenizer: the ModelProto protobuf, pieces,
// scores, types, trainer and normalizer specs). The input is the whole file; a loaded tokenizer then encodes
// a few fixed texts and the input's first bytes, and decodes the result. DataError is expected;
// anything else is a finding, as is an encoded id outside [0, vocab_size()).
#include <cstdint>
#include <string>
#include <vector>

#include "fuzz_support.h"
#include "seqrec/llm/sentencepiece_tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& path = seqrec::fuzz::write_scratch(data, size);
  seqrec::fuzz::expect_ok_or_error([&] {
    const seqrec::llm::SentencePieceTokenizer tok(path);
    const std::vector<std::string> texts = {
        "Hello world! Once upon a time, there was a little girl.", "  tabs\tand\nnew lines  ",
        "caf\xC3\xA9 \xE6\x97\xA5\xE6\x9C\xAC 123 <|im_start|>", "\xFF\xFE invalid utf-8 \xC3",
        std::string(reinterpret_cast<const char*>(data), size < 64 ? size : 64)};
    for (const std::string& text : texts) {
      const std::vector<int64_t> ids = tok.encode(text);
      for (int64_t id : ids) {
        if (id < 0 || id >= tok.vocab_size()) seqrec::fuzz::finding("encode gave id " + std::to_string(id));
        tok.id_to_piece(id);
      }
      tok.decode(ids);
    }
  });
  return 0;
}
