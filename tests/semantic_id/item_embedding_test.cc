// Item text embeddings: LC-Rec's text cleaning, truncation like the Hugging Face tokenizer call, and
// packed mean-pooled states against one unpacked forward per text on the real stories260K model
// (skipped without ../shared).
#include "seqrec/semantic_id/item_embedding.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "seqrec/common/fs.h"
#include "seqrec/data/item_catalog.h"
#include "seqrec/llm/decoder_lm.h"
#include "seqrec/llm/tokenizer.h"
#include "support.h"

namespace seqrec::semantic_id {
namespace {

using seqrec::testing::TempDir;

const std::string kStories = SEQREC_SOURCE_DIR "/../shared/models/stories260K/hf";

TEST(ItemEmbeddingTest, CleanTextFollowsLcRec) {
  EXPECT_EQ(lcrec_clean_text("Hello"), "Hello.");
  EXPECT_EQ(lcrec_clean_text("  <b>Big</b> &amp; \"bold\"\r\n"), "Big & bold.");
  EXPECT_EQ(lcrec_clean_text("Ends here..."), "Ends here.");
  EXPECT_EQ(lcrec_clean_text("Already."), "Already.");
  EXPECT_EQ(lcrec_clean_text(""), ".");
  EXPECT_EQ(lcrec_clean_text("..."), "..");  // Python's loop never takes the first character
  EXPECT_EQ(lcrec_clean_text("It&#39;s &#x41; &lt;3"), "It's A <3.");
  EXPECT_EQ(lcrec_clean_text("a < b and c > d"), "a < b and c > d.");  // "< b and c >" is no tag: '<' then space
  EXPECT_EQ(lcrec_clean_text("x<br/>y</p>"), "xy.");
  EXPECT_EQ(lcrec_clean_text("caf\xc3\xa9 &eacute;"), "caf\xc3\xa9 \xc3\xa9.");
}

TEST(ItemEmbeddingTest, TruncationKeepsBosAndTheFirstTokens) {
  if (!path_exists(kStories + "/config.json")) GTEST_SKIP() << "no " << kStories;
  auto tok = llm::load_tokenizer(kStories);
  const std::string text = "Once upon a time there was a little girl named Lily.";
  const auto full = tok->encode_with_special(text);
  ASSERT_GT(full.size(), 6u);
  EXPECT_EQ(tokenize_truncated(*tok, text, 2048), full);
  const auto cut = tokenize_truncated(*tok, text, 5);
  EXPECT_EQ(cut, std::vector<int64_t>(full.begin(), full.begin() + 5));
  EXPECT_EQ(cut[0], tok->bos_id());
}

TEST(ItemEmbeddingTest, PackedMeanPoolingEqualsOneForwardPerText) {
  if (!path_exists(kStories + "/config.json")) GTEST_SKIP() << "no " << kStories;
  auto tok = llm::load_tokenizer(kStories);
  llm::DecoderLm lm = llm::load_decoder_lm(kStories);
  lm->eval();
  std::vector<std::vector<int64_t>> seqs;
  for (const char* t : {"A red ball.", "The cat sat on the mat and looked at the big dog for a long time.", ".",
                        "Tom and Sue went to the park.", "Sunny day."})
    seqs.push_back(tokenize_truncated(*tok, t, 2048));
  // A small budget forces several packed rows with different segment counts.
  auto packed = mean_pooled_states(*lm, seqs, 24);                                       // [5, 64]
  ASSERT_EQ(packed.sizes(), (std::vector<int64_t>{5, 64}));
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < seqs.size(); ++i) {
    llm::DecoderInput in;
    in.input_ids = torch::tensor(seqs[i], torch::kLong).unsqueeze(0);
    auto alone = lm->forward_hidden(in).mean(1).squeeze(0);                              // [64]
    EXPECT_TRUE(torch::allclose(packed[i], alone, 1e-4, 1e-5)) << "text " << i << " max diff "
        << (packed[i] - alone).abs().max().item<double>();
  }
  // One big row gives the same numbers as the small rows.
  EXPECT_TRUE(torch::allclose(mean_pooled_states(*lm, seqs, 4096), packed, 1e-4, 1e-5));
}

TEST(ItemEmbeddingTest, ItemVectorIsTheMeanOfItsFieldVectors) {
  if (!path_exists(kStories + "/config.json")) GTEST_SKIP() << "no " << kStories;
  TempDir dir;
  dir.write("items.tsv",
            "item_id\traw_id\ttitle\tdescription\n1\tA1\tA red ball\tIt bounces &amp; rolls.\n"
            "2\tB2\tThe dog\t\n3\tC3\tSunny day...\tWarm and <i>bright</i>\n");
  const data::ItemCatalog catalog = data::ItemCatalog::load(dir.path());
  auto tok = llm::load_tokenizer(kStories);
  llm::DecoderLm lm = llm::load_decoder_lm(kStories);
  lm->eval();
  TextEmbeddingOptions o;
  o.fields = {"title", "description"};
  auto emb = embed_item_texts(*lm, *tok, catalog, o);                                    // [3, 64]
  ASSERT_EQ(emb.sizes(), (std::vector<int64_t>{3, 64}));
  // By hand: each field cleaned ("" -> "."), one forward each, mean over tokens, mean over fields.
  const std::vector<std::vector<std::string>> texts = {{"A red ball.", "It bounces & rolls."},
                                                       {"The dog.", "."},
                                                       {"Sunny day.", "Warm and bright."}};
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < texts.size(); ++i) {
    std::vector<torch::Tensor> fields;
    for (const auto& t : texts[i]) {
      llm::DecoderInput in;
      in.input_ids = torch::tensor(tok->encode_with_special(t), torch::kLong).unsqueeze(0);
      fields.push_back(lm->forward_hidden(in).mean(1).squeeze(0));
    }
    auto expected = (fields[0] + fields[1]) / 2;
    EXPECT_TRUE(torch::allclose(emb[i], expected, 1e-4, 1e-5)) << "item " << i + 1;
  }
  o.fields = {"title", "brand"};
  ASSERT_THROWS_WITH(embed_item_texts(*lm, *tok, catalog, o),
                     "--fields: 'brand' is not a column of the item table (columns: title, description)");
}

}  // namespace
}  // namespace seqrec::semantic_id
