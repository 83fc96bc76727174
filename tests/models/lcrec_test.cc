// LC-Rec as a recommender: stories260K with code tokens added (as `seqrec finetune` exports it),
// item codes -> token ids -> constrained beam search -> ranked items, and the generative protocol's
// per-template averaging.
#include "seqrec/models/lcrec.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <set>

#include "seqrec/common/fs.h"
#include "seqrec/data/lcrec_tasks.h"
#include "seqrec/llm/tokenizer.h"
#include "seqrec/train/finetune.h"
#include "seqrec/train/hf_export.h"
#include "support.h"

namespace seqrec::models {
namespace {

using semantic_id::ItemIndex;
using seqrec::testing::TempDir;

const std::string kStories = SEQREC_SOURCE_DIR "/../shared/models/stories260K/hf";

// An index of `codes` (one row per item, each a list of per-level codes).
ItemIndex make_index(const std::vector<std::vector<int64_t>>& codes) {
  ItemIndex index;
  index.num_levels = static_cast<int64_t>(codes.front().size());
  for (const auto& c : codes) index.codes.insert(index.codes.end(), c.begin(), c.end());
  return index;
}

// stories260K with every code token of `index` added, the new rows random (as if tuned), exported
// as a Hugging Face folder.
std::string export_with_codes(const ItemIndex& index, const TempDir& dir) {
  auto tokenizer = llm::load_tokenizer(kStories);
  std::set<std::string> tokens;
  for (int64_t row = 0; row < index.num_items(); ++row)
    for (const auto& t : index.row_tokens(row)) tokens.insert(t);
  const int64_t old_vocab = tokenizer->vocab_size();
  tokenizer->add_tokens(std::vector<std::string>(tokens.begin(), tokens.end()));
  llm::DecoderLm lm = llm::load_decoder_lm(kStories);
  train::init_added_token_rows(*lm, old_vocab, tokenizer->vocab_size());
  train::HfExportSpec spec;
  spec.base_dir = kStories;
  {
    torch::NoGradGuard no_grad;
    torch::manual_seed(5);
    auto rows = lm->model->embed_tokens->weight.narrow(0, old_vocab, tokenizer->vocab_size() - old_vocab);
    rows.add_(torch::randn(rows.sizes()) * rows.std());
  }
  for (int64_t id = old_vocab; id < tokenizer->vocab_size(); ++id) spec.added_tokens.emplace_back(id, tokenizer->id_to_piece(id));
  const std::string out = dir.file("model");
  train::export_hf_model(*lm, spec, out);
  return out;
}

data::LcRecExample example(int64_t template_id, int32_t target, const std::string& history) {
  data::LcRecExample e;
  e.template_id = template_id;
  e.target_item = target;
  e.user = target;
  e.prompt = data::alpaca_prompt("The user has interacted with items " + history +
                                 " in chronological order. Can you predict the next possible item?");
  return e;
}

TEST(LcRecTest, EveryTrieBeamIsAnItemAndMetricsAverageOverTemplates) {
  if (!path_exists(kStories + "/config.json")) GTEST_SKIP() << "no " << kStories;
  TempDir dir;
  // 6 items: every pair (a_i, b_j), i < 3, j < 2.
  const ItemIndex index = make_index({{0, 0}, {0, 1}, {1, 0}, {1, 1}, {2, 0}, {2, 1}});
  LcRecOptions options;
  options.num_beams = 6;  // = the catalogue: the trie makes every beam an item, so all 6 come back
  options.batch_size = 2;
  LcRec model(export_with_codes(index, dir), index, options);
  EXPECT_EQ(model.code_ids(4).size(), 2u);

  std::vector<data::LcRecExample> examples = {example(3, 1, "<a_0><b_0>"), example(3, 4, "<a_1><b_1>, <a_2><b_0>"),
                                              example(3, 6, "<a_2><b_1>"), example(7, 2, "<a_0><b_1>"),
                                              example(7, 5, "<a_2><b_0>, <a_1><b_0>"), example(7, 3, "<a_1><b_0>")};
  std::vector<std::string> prompts;
  for (const auto& e : examples) prompts.push_back(e.prompt);
  const auto ranked = model.generate(prompts);
  ASSERT_EQ(ranked.size(), examples.size());
  std::vector<double> hr1(2, 0.0), ndcg5(2, 0.0);
  for (size_t i = 0; i < ranked.size(); ++i) {
    std::vector<int64_t> items = ranked[i].items;
    ASSERT_EQ(items.size(), 6u) << i;
    EXPECT_TRUE(std::is_sorted(ranked[i].scores.rbegin(), ranked[i].scores.rend())) << i;
    std::sort(items.begin(), items.end());
    EXPECT_EQ(items, (std::vector<int64_t>{1, 2, 3, 4, 5, 6})) << i;
    const auto at = std::find(ranked[i].items.begin(), ranked[i].items.end(), examples[i].target_item);
    const int64_t rank = at - ranked[i].items.begin();
    hr1[i / 3] += rank == 0 ? 1.0 / 3 : 0.0;
    ndcg5[i / 3] += rank < 5 ? 1.0 / std::log2(static_cast<double>(rank) + 2) / 3 : 0.0;
  }

  const GenerativeResult r = evaluate_generative(model, examples, {1, 5, 6}, "");
  EXPECT_EQ(r.queries, 6);
  EXPECT_EQ(r.template_ids, (std::vector<int64_t>{3, 7}));
  ASSERT_EQ(r.per_template.size(), 2u);
  for (size_t t = 0; t < 2; ++t) {
    EXPECT_NEAR(r.per_template[t].at("hr@1"), hr1[t], 1e-12) << t;
    EXPECT_NEAR(r.per_template[t].at("ndcg@5"), ndcg5[t], 1e-12) << t;
    EXPECT_DOUBLE_EQ(r.per_template[t].at("hr@6"), 1.0) << t;
  }
  EXPECT_NEAR(r.metrics.at("hr@1"), (hr1[0] + hr1[1]) / 2, 1e-12);
  EXPECT_NEAR(r.metrics.at("ndcg@5"), (ndcg5[0] + ndcg5[1]) / 2, 1e-12);
  EXPECT_NEAR(r.metrics.at("ndcg@5_min"), std::min(ndcg5[0], ndcg5[1]), 1e-12);
  EXPECT_NEAR(r.metrics.at("ndcg@5_max"), std::max(ndcg5[0], ndcg5[1]), 1e-12);
  EXPECT_DOUBLE_EQ(r.metrics.at("non_item_share"), 0.0);
}

TEST(LcRecTest, WhitelistBeamsCanBeNoItemTheTrieNever) {
  if (!path_exists(kStories + "/config.json")) GTEST_SKIP() << "no " << kStories;
  TempDir dir;
  // Two items, (a_0, b_0) and (a_1, b_1): the per-level whitelist also allows (a_0, b_1), (a_1, b_0).
  const ItemIndex index = make_index({{0, 0}, {1, 1}});
  const std::string folder = export_with_codes(index, dir);
  const std::vector<data::LcRecExample> examples = {example(0, 1, "<a_1><b_1>"), example(0, 2, "<a_0><b_0>")};
  LcRecOptions options;
  options.num_beams = 4;
  options.constraint = semantic_id::CodeConstraint::kLevelWhitelist;
  {
    LcRec whitelist(folder, index, options);
    const GenerativeResult r = evaluate_generative(whitelist, examples, {1, 4}, "");
    EXPECT_DOUBLE_EQ(r.metrics.at("non_item_share"), 0.5);  // 4 combinations, 2 of them items
    EXPECT_DOUBLE_EQ(r.metrics.at("hr@4"), 1.0);
  }
  options.constraint = semantic_id::CodeConstraint::kTrie;
  LcRec trie(folder, index, options);
  const auto ranked = trie.generate({examples[0].prompt});
  EXPECT_EQ(ranked[0].items.size(), 2u);  // only the two codes exist
  EXPECT_DOUBLE_EQ(evaluate_generative(trie, examples, {1, 4}, "").metrics.at("non_item_share"), 0.0);
}

TEST(LcRecTest, RefusesAModelWithoutTheCodeTokensAndExamplesWithoutTargets) {
  if (!path_exists(kStories + "/config.json")) GTEST_SKIP() << "no " << kStories;
  const ItemIndex index = make_index({{0, 0}, {1, 1}});
  ASSERT_THROWS_WITH(LcRec(kStories, index, LcRecOptions{}),
                     kStories + ": the tokenizer has no token <a_0> (item row 0): was this model tuned with another "
                                "index.json?");
  TempDir dir;
  LcRec model(export_with_codes(index, dir), index, LcRecOptions{});
  data::LcRecExample e = example(0, 1, "<a_1><b_1>");
  e.target_item = 0;
  ASSERT_THROWS_WITH(evaluate_generative(model, {e}, {1}, ""), "example 0 (task seqrec) has no target item");
}

}  // namespace
}  // namespace seqrec::models
