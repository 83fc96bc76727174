// libFuzzer target: the item_tokens.bin reader (ItemTokens::load: header, version 1 and 2, the image
// words, offsets, tokens, checksum). The input is the whole file. DataError is expected; anything
// else is a finding, as is an accepted file with a token outside its vocabulary or offsets that do
// not cover its tokens, or one that does not survive save + load unchanged.
#include <cstdint>
#include <string>
#include <vector>

#include "fuzz_support.h"
#include "seqrec/data/item_text.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& path = seqrec::fuzz::write_scratch(data, size);
  seqrec::fuzz::expect_ok_or_error([&] {
    const seqrec::data::ItemTokens t = seqrec::data::ItemTokens::load(path);
    int64_t total = 0;
    auto in_vocab = [&](int32_t x) { return x >= 0 && x < t.vocab_size(); };
    for (int64_t id = 1; id <= t.num_items(); ++id) {
      const auto span = t.tokens(id);
      total += span.size();
      for (int32_t x : span)
        if (!in_vocab(x)) seqrec::fuzz::finding("item token outside the vocabulary");
    }
    if (total != t.total_tokens()) seqrec::fuzz::finding("offsets do not cover the tokens");
    for (const auto* words : {&t.image_before(), &t.image_after()})
      for (int32_t x : *words)
        if (!in_vocab(x)) seqrec::fuzz::finding("image word outside the vocabulary");
    const std::string again = path + ".again";
    t.save(again);
    const seqrec::data::ItemTokens back = seqrec::data::ItemTokens::load(again);
    if (back.num_items() != t.num_items() || back.total_tokens() != t.total_tokens() ||
        back.image_before() != t.image_before() || back.image_after() != t.image_after() ||
        back.description() != t.description() || back.max_text_length() != t.max_text_length())
      seqrec::fuzz::finding("save + load changed the file");
  });
  return 0;
}
