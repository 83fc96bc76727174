// SFT data: JSONL examples, response-only label masks against hand-built ids, token lists.
#include <gtest/gtest.h>

#include "llm/tokenizer_fixtures.h"
#include "seqrec/common/error.h"
#include "seqrec/llm/sft_data.h"
#include "seqrec/llm/tokenizer.h"
#include "support.h"

namespace seqrec::llm {
namespace {

using seqrec::testing::TempDir;

// The hand-made SentencePiece-style tokenizer.json: <s> = 1 (added), </s> = 2 (EOS per the config),
// "▁" = 259, "b" = 261, "▁a" = 262, "ab" = 263.
std::unique_ptr<Tokenizer> tiny_tokenizer(const TempDir& dir) {
  dir.write("tokenizer.json", seqrec::testing::tiny_sentencepiece_style().dump());
  dir.write("tokenizer_config.json", R"({"eos_token": "</s>"})");
  return load_tokenizer(dir.path());
}

constexpr int64_t kIgnore = kIgnoreLabel;

TEST(SftDataTest, ResponseOnlyLabelsMaskThePromptTokens) {
  TempDir dir;
  auto tok = tiny_tokenizer(dir);
  ASSERT_EQ(tok->add_tokens({"<a_1>", "<b_2>"}), 2);  // ids 264, 265
  // prompt "a" = <s> ▁a; full "a" + "<a_1><b_2>" = <s> ▁a <a_1> <b_2>, then </s>.
  TokenizedExample t = tokenize_example(*tok, {"a", "<a_1><b_2>"}, {});
  EXPECT_EQ(t.input_ids, (std::vector<int64_t>{1, 262, 264, 265, 2}));
  EXPECT_EQ(t.labels, (std::vector<int64_t>{kIgnore, kIgnore, 264, 265, 2}));
  EXPECT_EQ(t.num_targets(), 3);
  // Training on every token keeps all labels (position 0 is never a target: nothing precedes it).
  SftTokenizeOptions all;
  all.only_train_response = false;
  t = tokenize_example(*tok, {"a", "<a_1><b_2>"}, all);
  EXPECT_EQ(t.labels, t.input_ids);
  EXPECT_EQ(t.num_targets(), 4);
  // Text responses: prompt "a a" = <s> ▁a ▁a; full "▁a▁ab" = <s> ▁a ▁a b </s> ("▁ a" merges before
  // "a b"), masked by the prompt's token count: 3 positions.
  t = tokenize_example(*tok, {"a a", "b"}, {});
  EXPECT_EQ(t.input_ids, (std::vector<int64_t>{1, 262, 262, 261, 2}));
  EXPECT_EQ(t.labels, (std::vector<int64_t>{kIgnore, kIgnore, kIgnore, 261, 2}));
  // Right truncation cuts EOS first, then the response.
  SftTokenizeOptions shorter;
  shorter.max_length = 3;
  t = tokenize_example(*tok, {"a", "<a_1><b_2>"}, shorter);
  EXPECT_EQ(t.input_ids, (std::vector<int64_t>{1, 262, 264}));
  EXPECT_EQ(t.labels, (std::vector<int64_t>{kIgnore, kIgnore, 264}));
  shorter.max_length = 2;
  EXPECT_EQ(tokenize_example(*tok, {"a", "<a_1>"}, shorter).num_targets(), 0);
}

TEST(SftDataTest, ReadsJsonlAndNamesFileAndLineOnErrors) {
  TempDir dir;
  const std::string good = dir.write("good.jsonl", "{\"prompt\": \"p1\", \"response\": \"r1\", \"task\": \"seqrec\"}\n\n"
                                                   "{\"response\": \"r2\", \"prompt\": \"p2\"}\n");
  const auto examples = read_sft_examples(good);
  ASSERT_EQ(examples.size(), 2u);
  EXPECT_EQ(examples[1].prompt, "p2");
  EXPECT_EQ(examples[1].response, "r2");
  const std::string bad_json = dir.write("a.jsonl", "{\"prompt\": \"p\", \"response\": \"r\"}\n{\"prompt\": \n");
  ASSERT_THROWS_WITH(read_sft_examples(bad_json), bad_json + ":2: not valid JSON");
  const std::string missing = dir.write("b.jsonl", "\n{\"prompt\": \"p\"}\n");
  ASSERT_THROWS_WITH(read_sft_examples(missing), missing + ":2: missing field \"response\"");
  const std::string typed = dir.write("c.jsonl", "{\"prompt\": 3, \"response\": \"r\"}\n");
  ASSERT_THROWS_WITH(read_sft_examples(typed), typed + ":1: field \"prompt\" must be a string");
  const std::string empty = dir.write("d.jsonl", "\n");
  ASSERT_THROWS_WITH(read_sft_examples(empty), empty + ": no examples");
  EXPECT_THROW(read_sft_examples(dir.file("absent.jsonl")), DataError);
}

TEST(SftDataTest, TokenListsAndIndexTokens) {
  TempDir dir;
  EXPECT_EQ(read_token_list(dir.write("t.txt", " <a_1>\n\n<b_2>\r\n")), (std::vector<std::string>{"<a_1>", "<b_2>"}));
  // Unique and byte-sorted, as upstream's sorted(set(...)): "<b_10>" before "<b_2>".
  const std::string index = dir.write("x.index.json", R"({"0": ["<a_1>", "<b_2>"], "1": ["<a_1>", "<b_10>"]})");
  EXPECT_EQ(read_index_tokens(index), (std::vector<std::string>{"<a_1>", "<b_10>", "<b_2>"}));
  const std::string bad = dir.write("bad.index.json", R"({"0": ["<a_1>"], "7": "<a_2>"})");
  ASSERT_THROWS_WITH(read_index_tokens(bad), bad + ": item \"7\": expected a non-empty list");
  const std::string blank = dir.write("blank.index.json", R"({"3": ["<a_1>", ""]})");
  ASSERT_THROWS_WITH(read_index_tokens(blank), blank + ": item \"3\": tokens must be non-empty strings");
}

}  // namespace
}  // namespace seqrec::llm
