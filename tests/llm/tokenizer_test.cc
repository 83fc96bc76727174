// Tokenizers: the shared reference encodings (stories260K, LLaMA-2, Qwen3) where /work/shared is
// present, and hand-made tokenizer.json files that run anywhere.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "seqrec/common/error.h"
#include "seqrec/common/nfc.h"
#include "seqrec/llm/bpe_tokenizer.h"
#include "seqrec/llm/sentencepiece_tokenizer.h"
#include "seqrec/llm/tokenizer.h"
#include "llm/tokenizer_fixtures.h"
#include "support.h"

namespace seqrec::llm {
namespace {

using nlohmann::json;
using seqrec::testing::TempDir;
using seqrec::testing::byte_alphabet;
using seqrec::testing::tiny_byte_level;
using seqrec::testing::tiny_sentencepiece_style;

std::string shared_model(const std::string& rel) { return SEQREC_SOURCE_DIR "/../shared/models/" + rel; }

json read_json(const std::string& path) {
  std::ifstream in(path);
  return json::parse(in);
}

#define SKIP_IF_MISSING(path) \
  if (!std::filesystem::exists(path)) GTEST_SKIP() << (path) << " not present"

// Checks every case of an expected-encodings file; `pieces`/`decoded` are checked when present.
// `strip_from_decoded` are special tokens that decode() skips but the reference kept.
void check_cases(const Tokenizer& tok, const json& cases, const std::vector<std::string>& strip_from_decoded = {}) {
  int passed = 0;
  for (const auto& c : cases) {
    const std::string text = c["text"].get<std::string>();
    SCOPED_TRACE("text: " + text);
    const auto expected = c["ids"].get<std::vector<int64_t>>();
    const auto ids = tok.encode(text);
    EXPECT_EQ(ids, expected);
    bool ok = ids == expected;
    if (c.contains("pieces")) {
      std::vector<std::string> pieces;
      for (int64_t id : expected) pieces.push_back(tok.id_to_piece(id));
      EXPECT_EQ(pieces, c["pieces"].get<std::vector<std::string>>());
      ok = ok && pieces == c["pieces"].get<std::vector<std::string>>();
      for (const auto& piece : c["pieces"]) EXPECT_GE(tok.piece_to_id(piece.get<std::string>()), 0);
    }
    std::string decoded = c.value("decoded", text);
    for (const std::string& s : strip_from_decoded) {
      for (size_t pos; (pos = decoded.find(s)) != std::string::npos;) decoded.erase(pos, s.size());
    }
    EXPECT_EQ(tok.decode(expected), decoded);
    ok = ok && tok.decode(expected) == decoded;
    passed += ok;
  }
  EXPECT_EQ(passed, static_cast<int>(cases.size()));
  std::cout << "[ cases    ] " << passed << "/" << cases.size() << " passed\n";
}

// ---------------------------------------------------------------- shared reference files

TEST(SentencePieceTokenizer, Stories260KCases) {
  const std::string model = shared_model("stories260K/hf/tokenizer.model");
  SKIP_IF_MISSING(model);
  SentencePieceTokenizer tok(model);
  EXPECT_EQ(tok.vocab_size(), 512);
  EXPECT_EQ(tok.bos_id(), 1);
  EXPECT_EQ(tok.eos_id(), 2);
  EXPECT_EQ(tok.piece_to_id("no such piece"), -1);
  check_cases(tok, read_json(shared_model("stories260K/expected/tokenizer_cases.json"))["cases"]);
}

TEST(BpeTokenizer, Stories260KJsonSentencePieceStyle) {
  // hf/tokenizer.json is the converted SentencePiece model: Prepend/Replace "▁" normalizer, no
  // pre-tokenizer, byte fallback; the reference says tokenizers.js gives the same ids.
  const std::string path = shared_model("stories260K/hf/tokenizer.json");
  SKIP_IF_MISSING(path);
  BpeTokenizer tok(path);
  EXPECT_EQ(tok.vocab_size(), 512);
  EXPECT_EQ(tok.bos_id(), 1);
  EXPECT_TRUE(tok.add_bos);
  check_cases(tok, read_json(shared_model("stories260K/expected/tokenizer_cases.json"))["cases"]);
}

TEST(Tokenizer, LoadStories260KPrefersSentencePiece) {
  const std::string dir = shared_model("stories260K/hf");
  SKIP_IF_MISSING(dir);
  auto tok = load_tokenizer(dir);
  EXPECT_NE(dynamic_cast<SentencePieceTokenizer*>(tok.get()), nullptr);
  EXPECT_TRUE(tok->add_bos);
  EXPECT_FALSE(tok->add_eos);
  const auto ids = tok->encode_with_special("Once upon a time");
  ASSERT_FALSE(ids.empty());
  EXPECT_EQ(ids.front(), 1);
  EXPECT_EQ(tok->decode(ids), "Once upon a time");
}

TEST(SentencePieceTokenizer, Llama2ExpectedEncodings) {
  const std::string model = shared_model("tokenizers/llama2/tokenizer.model");
  SKIP_IF_MISSING(model);
  const json expected = read_json(shared_model("tokenizers/llama2/expected_encodings.json"));
  SentencePieceTokenizer tok(model);
  EXPECT_EQ(tok.vocab_size(), expected["vocab_size"].get<int64_t>());
  check_cases(tok, expected["cases"]);
}

TEST(BpeTokenizer, Qwen3ExpectedEncodings) {
  const std::string dir = shared_model("tokenizers/qwen3");
  SKIP_IF_MISSING(dir + "/tokenizer.json");
  auto tok = load_tokenizer(dir);
  auto* bpe = dynamic_cast<BpeTokenizer*>(tok.get());
  ASSERT_NE(bpe, nullptr);
  EXPECT_EQ(tok->vocab_size(), 151669);
  EXPECT_EQ(tok->bos_id(), -1);
  EXPECT_EQ(tok->eos_id(), tok->piece_to_id("<|im_end|>"));
  EXPECT_FALSE(tok->add_bos);
  EXPECT_FALSE(tok->add_eos);
  const json cases = read_json(dir + "/expected_encodings.json")["cases"];
  // The reference decoded with special tokens kept; decode() skips them.
  check_cases(*tok, cases, {"<|im_start|>", "<|im_end|>"});
  bpe->set_cache_enabled(false);
  for (const auto& c : cases) EXPECT_EQ(tok->encode(c["text"]), c["ids"].get<std::vector<int64_t>>());
  bpe->set_cache_enabled(true);

  // NFC: a decomposed "ü" and a Hangul jamo sequence encode like their composed forms.
  EXPECT_EQ(tok->encode("Zu\xCC\x88rich"), tok->encode("Z\xC3\xBCrich"));
  EXPECT_EQ(tok->encode("\xE1\x84\x80\xE1\x85\xA1"), tok->encode("\xEA\xB0\x80"));
  // Non-special added tokens come out whole and survive decode.
  const auto think = tok->encode("<think>hi</think>");
  ASSERT_EQ(think.size(), 3u);
  EXPECT_EQ(think.front(), tok->piece_to_id("<think>"));
  EXPECT_EQ(tok->decode(think), "<think>hi</think>");
}

// ---------------------------------------------------------------- hand-made files

TEST(BpeTokenizer, TinyByteLevelByHand) {
  TempDir dir;
  dir.write("tokenizer.json", tiny_byte_level().dump());
  auto tok = load_tokenizer(dir.path());
  EXPECT_EQ(tok->vocab_size(), 263);
  EXPECT_EQ(tok->bos_id(), -1);
  EXPECT_EQ(tok->eos_id(), -1);
  EXPECT_FALSE(tok->add_bos);
  EXPECT_EQ(tok->piece_to_id("\xC4\xA0w"), 260);
  EXPECT_EQ(tok->id_to_piece(259), "hello");
  EXPECT_EQ(tok->piece_to_id("nope"), -1);

  const std::vector<int64_t> ids = tok->encode("hello world<|end|>");
  EXPECT_EQ(ids, (std::vector<int64_t>{259, 260, 'o', 'r', 'l', 'd', 261}));
  EXPECT_EQ(tok->decode(ids), "hello world");  // the special token is skipped
  EXPECT_EQ(tok->encode_with_special("hello"), std::vector<int64_t>{259});
  // Merges go by rank over the whole word: h e | l l twice, then hell twice, then hello once.
  EXPECT_EQ(tok->encode("hellhello"), (std::vector<int64_t>{258, 259}));
  EXPECT_EQ(tok->encode("lll"), (std::vector<int64_t>{257, 'l'}));  // leftmost first
  // Bytes beyond ASCII map through the byte alphabet; a non-special added token survives decode.
  EXPECT_EQ(tok->encode("\xC3\xA9"), (std::vector<int64_t>{0xC3, 0xA9}));
  const auto with_tool = tok->encode("<tool>h\xC3\xA9");
  EXPECT_EQ(with_tool, (std::vector<int64_t>{262, 'h', 0xC3, 0xA9}));
  EXPECT_EQ(tok->decode(with_tool), "<tool>h\xC3\xA9");
  // NFC before the split: e + combining acute becomes é.
  EXPECT_EQ(tok->encode("e\xCC\x81"), tok->encode("\xC3\xA9"));
  // Invalid UTF-8 becomes U+FFFD instead of failing; a lone continuation byte decodes to U+FFFD.
  EXPECT_EQ(tok->encode("\xFF"), (std::vector<int64_t>{0xEF, 0xBF, 0xBD}));
  EXPECT_EQ(tok->decode({0xA9}), "\xEF\xBF\xBD");
  EXPECT_EQ(tok->encode(""), std::vector<int64_t>{});
  EXPECT_THROW(tok->decode({263}), std::out_of_range);
}

TEST(BpeTokenizer, TinySentencePieceStyleByHand) {
  TempDir dir;
  dir.write("tokenizer.json", tiny_sentencepiece_style().dump());
  auto tok = load_tokenizer(dir.path());
  EXPECT_EQ(tok->bos_id(), 1);  // from the TemplateProcessing post_processor
  EXPECT_TRUE(tok->add_bos);
  // "a ab" -> "▁a▁ab": "▁ a" (rank 0) wins over "a b" at both places.
  EXPECT_EQ(tok->encode("a ab"), (std::vector<int64_t>{262, 262, 261}));
  EXPECT_EQ(tok->encode_with_special("a"), (std::vector<int64_t>{1, 262}));
  EXPECT_EQ(tok->decode({1, 262, 262, 261, 2}), "a ab");
  // é is not in the vocab: byte fallback <0xC3> <0xA9>, and back.
  const auto e = tok->encode("\xC3\xA9");
  EXPECT_EQ(e, (std::vector<int64_t>{259, 3 + 0xC3, 3 + 0xA9}));
  EXPECT_EQ(tok->decode(e), "\xC3\xA9");
  EXPECT_EQ(tok->decode({3 + 0xC3}), "\xEF\xBF\xBD");  // a lone lead byte
}

// ---------------------------------------------------------------- hand-made tokenizer.model

// A minimal protobuf writer for ModelProto, independent of the reader.
std::string pb_varint(uint64_t v) {
  std::string out;
  do {
    uint8_t b = v & 0x7F;
    v >>= 7;
    if (v != 0) b |= 0x80;
    out += static_cast<char>(b);
  } while (v != 0);
  return out;
}
std::string pb_tag(int field, int wire) { return pb_varint(static_cast<uint64_t>(field) << 3 | wire); }
std::string pb_int(int field, int64_t v) { return pb_tag(field, 0) + pb_varint(static_cast<uint64_t>(v)); }
std::string pb_bytes(int field, const std::string& s) { return pb_tag(field, 2) + pb_varint(s.size()) + s; }
std::string pb_float(int field, float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  std::string out = pb_tag(field, 5);
  for (int i = 0; i < 4; ++i) out += static_cast<char>((bits >> (8 * i)) & 0xFF);
  return out;
}
// Fields the reader does not know, one of each wire type.
std::string pb_unknown_fields() {
  return pb_int(1001, 7) + pb_tag(1002, 1) + std::string(8, '\x01') + pb_float(1003, 1.5f) + pb_bytes(1004, "junk");
}

struct SpModelOptions {
  int model_type = 2;  // BPE
  bool byte_fallback = true;
  bool remove_extra_whitespaces = false;
};

// <unk> <s> </s>, 256 byte pieces, then ▁ a b ▁a ab aa (scores -5 -6 -7 -3 -1 -4) and the
// user-defined <sep>.
std::string tiny_sentencepiece_model(const SpModelOptions& o = {}) {
  auto piece = [](const std::string& text, float score, int type) {
    return pb_bytes(1, pb_bytes(1, text) + pb_float(2, score) + (type == 1 ? "" : pb_int(3, type)) +
                           pb_unknown_fields());
  };
  std::string model;
  model += piece("<unk>", 0, 2);
  model += piece("<s>", 0, 3);
  model += piece("</s>", 0, 3);
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    model += piece(name, 0, 6);
  }
  model += piece("\xE2\x96\x81", -5, 1);
  model += piece("a", -6, 1);
  model += piece("b", -7, 1);
  model += piece("\xE2\x96\x81" "a", -3, 1);
  model += piece("ab", -1, 1);
  model += piece("aa", -4, 1);
  model += piece("<sep>", 0, 4);
  model += pb_unknown_fields();
  model += pb_bytes(2, pb_bytes(1, "train.txt") + pb_int(3, o.model_type) + pb_int(35, o.byte_fallback) +
                           pb_unknown_fields() + pb_int(40, 0) + pb_int(41, 1) + pb_int(42, 2) + pb_int(43, -1));
  model += pb_bytes(3, pb_bytes(1, "identity") + pb_int(3, 1) + pb_int(4, o.remove_extra_whitespaces) +
                           pb_int(5, 1) + pb_unknown_fields());
  return model;
}

TEST(SentencePieceTokenizer, TinyModelByHand) {
  TempDir dir;
  SentencePieceTokenizer tok(dir.write("tokenizer.model", tiny_sentencepiece_model()));
  EXPECT_EQ(tok.vocab_size(), 266);
  EXPECT_EQ(tok.bos_id(), 1);
  EXPECT_EQ(tok.eos_id(), 2);
  EXPECT_EQ(tok.piece_to_id("<s>"), 1);
  EXPECT_EQ(tok.piece_to_id("<0x41>"), 3 + 0x41);
  EXPECT_EQ(tok.piece_to_id("ab"), 263);
  EXPECT_EQ(tok.piece_to_id("zz"), -1);
  EXPECT_EQ(tok.id_to_piece(265), "<sep>");
  EXPECT_THROW(tok.id_to_piece(266), std::out_of_range);

  EXPECT_EQ(tok.encode(""), std::vector<int64_t>{});
  // "▁ab": "ab" (-1) beats "▁a" (-3); there is no "▁ab".
  EXPECT_EQ(tok.encode("ab"), (std::vector<int64_t>{259, 263}));
  // "▁a▁ab": ab first, then the first ▁a; the second ▁ stays alone.
  EXPECT_EQ(tok.encode("a ab"), (std::vector<int64_t>{262, 259, 263}));
  // The user-defined piece is kept whole and frozen; equal-score "aa" pairs merge leftmost first.
  EXPECT_EQ(tok.encode("<sep>aaa"), (std::vector<int64_t>{259, 265, 264, 260}));
  // Spaces are kept (remove_extra_whitespaces is off).
  EXPECT_EQ(tok.encode(" a"), (std::vector<int64_t>{259, 262}));
  // Byte fallback for characters outside the vocabulary.
  const auto e = tok.encode("\xC3\xA9");
  EXPECT_EQ(e, (std::vector<int64_t>{259, 3 + 0xC3, 3 + 0xA9}));

  EXPECT_EQ(tok.decode({1, 262, 259, 263, 2}), "a ab");
  EXPECT_EQ(tok.decode(e), "\xC3\xA9");
  EXPECT_EQ(tok.decode(tok.encode("<sep>aaa b")), "<sep>aaa b");
  EXPECT_EQ(tok.decode(tok.encode(" a")), " a");
  EXPECT_EQ(tok.decode({3 + 0xC3}), "\xEF\xBF\xBD");  // a lone lead byte
  EXPECT_EQ(tok.decode({260, 0}), "a \xE2\x81\x87 ");  // unknown -> " ⁇ "
  EXPECT_THROW(tok.decode({266}), std::out_of_range);
}

TEST(SentencePieceTokenizer, TinyModelOptions) {
  TempDir dir;
  SpModelOptions o;
  o.remove_extra_whitespaces = true;
  o.byte_fallback = false;
  SentencePieceTokenizer tok(dir.write("a.model", tiny_sentencepiece_model(o)));
  EXPECT_EQ(tok.encode("  a   ab "), tok.encode("a ab"));
  EXPECT_EQ(tok.encode("   "), std::vector<int64_t>{});
  EXPECT_EQ(tok.encode("\xC3\xA9"), (std::vector<int64_t>{259, 0}));  // no byte fallback: unk

  o = {};
  o.model_type = 1;  // unigram: Viterbi over the scores
  SentencePieceTokenizer uni(dir.write("u.model", tiny_sentencepiece_model(o)));
  EXPECT_EQ(uni.encode("ab"), (std::vector<int64_t>{259, 263}));  // -5 + -1 beats -3 + -7
  EXPECT_EQ(uni.encode("a"), (std::vector<int64_t>{262}));
  EXPECT_EQ(uni.encode("\xC3\xA9"), (std::vector<int64_t>{259, 3 + 0xC3, 3 + 0xA9}));
}

TEST(SentencePieceTokenizer, BadModelFiles) {
  TempDir dir;
  const std::string model = tiny_sentencepiece_model();
  const std::string truncated = dir.write("truncated.model", model.substr(0, model.size() - 3));
  ASSERT_THROWS_WITH(SentencePieceTokenizer{truncated}, truncated + ": truncated protobuf at byte");
  EXPECT_THROW(SentencePieceTokenizer{truncated}, DataError);
  const std::string cut = dir.write("cut.model", model.substr(0, 100));
  ASSERT_THROWS_WITH(SentencePieceTokenizer{cut}, cut + ": truncated protobuf at byte");
  const std::string garbage = dir.write("garbage.model", "\x0f\x01");
  ASSERT_THROWS_WITH(SentencePieceTokenizer{garbage}, garbage + ": bad wire type 7 at byte 0");
  const std::string empty = dir.write("empty.model", "");
  ASSERT_THROWS_WITH(SentencePieceTokenizer{empty}, empty + ": SentencePiece model has no pieces");
  ASSERT_THROWS_WITH(SentencePieceTokenizer{dir.file("absent.model")}, dir.file("absent.model"));
}

TEST(Tokenizer, ConfigOverridesDefaults) {
  TempDir dir;
  dir.write("tokenizer.json", tiny_sentencepiece_style().dump());
  dir.write("tokenizer_config.json", R"({"add_bos_token": false, "add_eos_token": true, "eos_token": {"content": "</s>"}})");
  auto tok = load_tokenizer(dir.path());
  EXPECT_FALSE(tok->add_bos);
  EXPECT_TRUE(tok->add_eos);
  EXPECT_EQ(tok->eos_id(), 2);
  EXPECT_EQ(tok->encode_with_special("a"), (std::vector<int64_t>{262, 2}));

  dir.write("tokenizer_config.json", R"({"eos_token": "<missing>"})");
  ASSERT_THROWS_WITH(load_tokenizer(dir.path()), "tokenizer_config.json");
}

TEST(Tokenizer, NfcNormalize) {
  EXPECT_EQ(nfc_normalize("plain ascii"), "plain ascii");
  EXPECT_EQ(nfc_normalize("e\xCC\x81"), "\xC3\xA9");                            // e + U+0301 -> é
  EXPECT_EQ(nfc_normalize("a\xCC\x82\xCC\xA3"), "\xE1\xBA\xAD");               // reordered -> U+1EAD
  EXPECT_EQ(nfc_normalize("\xE2\x84\xA6"), "\xCE\xA9");                         // Ohm sign -> Omega
  EXPECT_EQ(nfc_normalize("\xE1\x84\x80\xE1\x85\xA1\xE1\x86\xA8"), "\xEA\xB0\x81");  // jamo -> 각
  EXPECT_EQ(nfc_normalize("\xE3\x82\xAB\xE3\x82\x99"), "\xE3\x82\xAC");         // カ + dakuten -> ガ
  EXPECT_EQ(nfc_normalize("\xC3\xA9\xE6\x97\xA5"), "\xC3\xA9\xE6\x97\xA5");     // already NFC
  EXPECT_EQ(nfc_normalize("x\xFF" "e\xCC\x81"), "x\xFF\xC3\xA9");               // bad bytes kept
}

TEST(Tokenizer, ErrorsNameTheFile) {
  TempDir dir;
  ASSERT_THROWS_WITH(load_tokenizer(dir.file("absent")), dir.file("absent"));
  ASSERT_THROWS_WITH(load_tokenizer(dir.path()), "no tokenizer.model or tokenizer.json");

  const std::string path = dir.write("tokenizer.json", "{ \"model\": [1, 2");
  EXPECT_THROW(load_tokenizer(dir.path()), DataError);
  ASSERT_THROWS_WITH(load_tokenizer(dir.path()), path);

  json j = tiny_byte_level();
  j["normalizer"] = {{"type", "NFKC"}};
  dir.write("tokenizer.json", j.dump());
  ASSERT_THROWS_WITH(load_tokenizer(dir.path()), path + ": normalizer NFKC is not supported");

  j = tiny_byte_level();
  j["model"]["merges"].push_back(json::array({"x", "y"}));
  dir.write("tokenizer.json", j.dump());
  ASSERT_THROWS_WITH(load_tokenizer(dir.path()), "uses a token missing from the vocab");

  j = tiny_byte_level();
  j["model"]["vocab"] = "not an object";
  dir.write("tokenizer.json", j.dump());
  ASSERT_THROWS_WITH(load_tokenizer(dir.path()), path + ": model.vocab must be an object");

  const std::string model = dir.write("tokenizer.model", "not a protobuf");
  EXPECT_THROW(load_tokenizer(dir.path()), DataError);
  ASSERT_THROWS_WITH(load_tokenizer(dir.path()), model);
}

// ---------------------------------------------------------------- added tokens

TEST(SentencePieceTokenizer, AddedTokensAreSingleIdsAndRoundTrip) {
  TempDir dir;
  SentencePieceTokenizer tok(dir.write("tokenizer.model", tiny_sentencepiece_model()));
  // Repeats and pieces already in the vocabulary ("ab") are skipped; ids continue from 266.
  EXPECT_EQ(tok.add_tokens({"<a_1>", "<a_12>", "<b_2>", "<a_1>", "ab"}), 3);
  EXPECT_EQ(tok.vocab_size(), 269);
  EXPECT_EQ(tok.piece_to_id("<a_12>"), 267);
  EXPECT_EQ(tok.id_to_piece(268), "<b_2>");
  // Leftmost-longest: "<a_12>" wins over its prefix "<a_1>".
  EXPECT_EQ(tok.encode("<a_12><b_2>"), (std::vector<int64_t>{267, 268}));
  EXPECT_EQ(tok.encode("<a_1>2"), (std::vector<int64_t>{266, 259, 3 + '2'}));
  // Text between added tokens is encoded on its own, with its own dummy prefix ("▁ab" twice).
  const std::vector<int64_t> mixed = tok.encode("ab<a_1>ab");
  EXPECT_EQ(mixed, (std::vector<int64_t>{259, 263, 266, 259, 263}));
  EXPECT_EQ(tok.decode(mixed), "ab<a_1>ab");
  EXPECT_EQ(tok.decode({1, 267, 268, 2}), "<a_12><b_2>");
  // A special added token encodes to its id and is skipped by decode.
  EXPECT_EQ(tok.add_tokens({"<x>"}, /*special=*/true), 1);
  EXPECT_EQ(tok.encode("a<x>"), (std::vector<int64_t>{262, 269}));
  EXPECT_EQ(tok.decode({262, 269}), "a");
  EXPECT_THROW(tok.decode({270}), std::out_of_range);
}

TEST(BpeTokenizer, AddedTokensAreSingleIdsAndRoundTrip) {
  TempDir dir;
  dir.write("tokenizer.json", tiny_byte_level().dump());
  auto tok = load_tokenizer(dir.path());
  // "<tool>" is an added token of the file and "hello" a vocabulary entry: both skipped.
  EXPECT_EQ(tok->add_tokens({"<a_1>", "<tool>", "hello"}), 1);
  EXPECT_EQ(tok->vocab_size(), 264);
  const std::vector<int64_t> ids = tok->encode("hello<a_1>world");
  EXPECT_EQ(ids, (std::vector<int64_t>{259, 263, 'w', 'o', 'r', 'l', 'd'}));
  EXPECT_EQ(tok->decode(ids), "hello<a_1>world");
  EXPECT_EQ(tok->id_to_piece(263), "<a_1>");
  EXPECT_EQ(tok->add_tokens({"<s1>"}, /*special=*/true), 1);
  EXPECT_EQ(tok->decode(tok->encode("he<s1>")), "he");
}

TEST(Tokenizer, Stories260KAddedTokensAgreeBetweenModelAndJson) {
  const std::string dir = shared_model("stories260K/hf");
  SKIP_IF_MISSING(dir + "/tokenizer.json");
  SentencePieceTokenizer sp(dir + "/tokenizer.model");
  BpeTokenizer bpe(dir + "/tokenizer.json");
  const std::vector<std::string> codes = {"<a_12>", "<b_3>", "<c_0>", "<a_1>"};
  ASSERT_EQ(sp.add_tokens(codes), 4);
  ASSERT_EQ(bpe.add_tokens(codes), 4);
  for (const std::string text : {"### Response:<a_12><b_3><c_0>", "Once <a_1> upon<a_12>a time", "<a_1>, <a_12>"}) {
    SCOPED_TRACE(text);
    EXPECT_EQ(sp.encode(text), bpe.encode(text));
  }
  EXPECT_EQ(sp.encode("<a_12><b_3><c_0>"), (std::vector<int64_t>{512, 513, 514}));
  EXPECT_EQ(sp.decode(sp.encode("Response:<a_12><b_3>")), "Response:<a_12><b_3>");
}

TEST(Tokenizer, LoadsTokensAddedToASentencePieceModel) {
  TempDir dir;
  dir.write("tokenizer.model", tiny_sentencepiece_model());
  // transformers >= 4.34 lists them in tokenizer_config.json (ids below 266 are the model's own).
  dir.write("tokenizer_config.json", R"({"added_tokens_decoder": {
      "0": {"content": "<unk>", "special": true},
      "267": {"content": "<b_2>", "special": false}, "266": {"content": "<a_1>", "special": false}}})");
  auto tok = load_tokenizer(dir.path());
  EXPECT_EQ(tok->vocab_size(), 268);
  EXPECT_EQ(tok->encode_with_special("<a_1><b_2>"), (std::vector<int64_t>{1, 266, 267}));
  // Older files: added_tokens.json only.
  dir.write("tokenizer_config.json", "{}");
  dir.write("added_tokens.json", R"({"<a_1>": 266, "<b_2>": 267})");
  EXPECT_EQ(load_tokenizer(dir.path())->encode("<b_2>"), (std::vector<int64_t>{267}));
  dir.write("added_tokens.json", R"({"<b_2>": 267})");
  ASSERT_THROWS_WITH(load_tokenizer(dir.path()), "added_tokens.json: \"<b_2>\": added token id 267 leaves a gap");
  dir.write("added_tokens.json", R"({"ab": 266})");
  ASSERT_THROWS_WITH(load_tokenizer(dir.path()), "\"ab\" is already in the vocabulary");
  // Found by fuzz_tokenizer_config: a "special" that is not a boolean escaped as a JSON type error.
  std::filesystem::remove(dir.file("added_tokens.json"));
  dir.write("tokenizer_config.json", R"({"added_tokens_decoder": {"266": {"content": "<a_1>", "special": 5}}})");
  ASSERT_THROWS_WITH(load_tokenizer(dir.path()),
                     dir.file("tokenizer_config.json") + ": added_tokens_decoder[\"266\"]: \"special\" must be true or false");
}

}  // namespace
}  // namespace seqrec::llm
