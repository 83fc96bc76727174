// libFuzzer target: the files load_tokenizer reads beside a tokenizer's model: tokenizer_config.json
// (add_bos_token / add_eos_token, bos_token / eos_token as a string, an AddedToken object or null,
// added_tokens_decoder) and the older added_tokens.json. The input is a selector byte (bit 0: the
// base is the SentencePiece model stories260K.model, else the byte-level tokenizer.json
// tiny_bytelevel, both from this folder's corpus), then tokenizer_config.json, then optionally a
// NUL byte and added_tokens.json. A loaded tokenizer then encodes and decodes (fuzz_tokenizer.h);
// anything else than a seqrec::Error is a finding.
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <string_view>

#include "fuzz_support.h"
#include "fuzz_tokenizer.h"
#include "seqrec/llm/tokenizer.h"

namespace {

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::perror(path.c_str());
    std::abort();
  }
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string sentencepiece = slurp(SEQREC_FUZZ_CORPUS "/fuzz_sentencepiece/stories260K.model");
  static const std::string bytelevel = slurp(SEQREC_FUZZ_CORPUS "/fuzz_bpe_tokenizer/tiny_bytelevel");
  if (size == 0) return 0;
  namespace fs = std::filesystem;
  const fs::path dir = seqrec::fuzz::scratch_dir();
  for (const char* f : {"tokenizer.model", "tokenizer.json", "tokenizer_config.json", "added_tokens.json"})
    fs::remove(dir / f);
  const bool sp = (data[0] & 1) != 0;
  const std::string& base = sp ? sentencepiece : bytelevel;
  seqrec::fuzz::write_bytes((dir / (sp ? "tokenizer.model" : "tokenizer.json")).string(), base.data(), base.size());
  const std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  const size_t nul = rest.find('\0');
  const std::string_view config = rest.substr(0, nul);
  seqrec::fuzz::write_bytes((dir / "tokenizer_config.json").string(), config.data(), config.size());
  if (nul != std::string_view::npos) {
    const std::string_view added = rest.substr(nul + 1);
    seqrec::fuzz::write_bytes((dir / "added_tokens.json").string(), added.data(), added.size());
  }
  seqrec::fuzz::expect_ok_or_error([&] {
    const auto tok = seqrec::llm::load_tokenizer(dir.string());
    if (tok->bos_id() >= tok->vocab_size() || tok->eos_id() >= tok->vocab_size())
      seqrec::fuzz::finding("BOS/EOS id outside the vocabulary");
    seqrec::fuzz::exercise_tokenizer(*tok, data, size);
  });
  return 0;
}
