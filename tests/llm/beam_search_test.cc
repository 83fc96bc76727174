// Batched beam search: Hugging Face BeamSearchScorer rules on a hand-made next-token table, prompts
// batched = one at a time, and the DecoderLm scorer's left padding and cache reordering.
#include "seqrec/llm/beam_search.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <functional>
#include <map>

#include "support.h"
#include "llm/tiny_decoder.h"

namespace seqrec::llm {
namespace {

using Tokens = std::vector<int64_t>;
constexpr int64_t kEos = 3;  // vocabulary {0, 1, 2, EOS}

// Next-token probabilities as a function of (prompt, generated prefix); unlisted prefixes get a
// fixed distribution without ties. Tracks rows through start/next exactly as a model's cache would.
class TableScorer : public NextTokenScorer {
 public:
  using Table = std::map<std::pair<int64_t, Tokens>, std::vector<double>>;
  explicit TableScorer(Table table) : table_(std::move(table)) {}
  torch::Tensor start(const std::vector<Tokens>& prompts) override {
    rows_.clear();
    for (const auto& p : prompts) rows_.push_back({p[0], {}});
    return logprobs();
  }
  torch::Tensor next(const Tokens& parents, const Tokens& tokens) override {
    std::vector<std::pair<int64_t, Tokens>> rows;
    for (size_t n = 0; n < parents.size(); ++n) {
      auto row = rows_.at(parents[n]);
      row.second.push_back(tokens[n]);
      rows.push_back(row);
    }
    rows_ = rows;
    ++calls;
    return logprobs();
  }
  int64_t calls = 0;

 private:
  torch::Tensor logprobs() {
    auto out = torch::empty({static_cast<int64_t>(rows_.size()), 4});
    for (size_t n = 0; n < rows_.size(); ++n) {
      auto it = table_.find(rows_[n]);
      const std::vector<double> p = it == table_.end() ? std::vector<double>{0.21, 0.23, 0.25, 0.31} : it->second;
      for (int64_t t = 0; t < 4; ++t) out[n][t] = std::log(p[t]);
    }
    return out;
  }
  Table table_;
  std::vector<std::pair<int64_t, Tokens>> rows_;
};

// Prompt 0: EOS right away is second best; [0] then EOS; [0, 0] then EOS is better still per token.
// Prompt 1: a plain path 2, 2, EOS. Prompt 2: at step 1 an EOS ranks third (>= K = 2).
TableScorer::Table crafted_table() {
  return {
      {{0, {}}, {0.5, 0.15, 0.05, 0.3}},
      {{0, {0}}, {0.4, 0.06, 0.04, 0.5}},
      {{0, {1}}, {0.1, 0.1, 0.1, 0.7}},
      {{0, {0, 0}}, {0.004, 0.003, 0.003, 0.99}},
      {{1, {}}, {0.12, 0.08, 0.7, 0.1}},
      {{1, {2}}, {0.05, 0.04, 0.8, 0.11}},
      {{1, {2, 2}}, {0.01, 0.012, 0.008, 0.97}},
      {{2, {}}, {0.5, 0.4, 0.06, 0.04}},
      {{2, {0}}, {0.5, 0.15, 0.05, 0.3}},
      {{2, {1}}, {0.1, 0.06, 0.04, 0.8}},
      {{2, {0, 0}}, {0.1, 0.12, 0.08, 0.7}},
  };
}

BeamSearchOptions options(int64_t k, EarlyStopping rule) {
  BeamSearchOptions o;
  o.num_beams = k;
  o.max_new_tokens = 3;
  o.eos_id = kEos;
  o.early_stopping = rule;
  return o;
}

TEST(BeamSearchTest, FirstKStopsAtKFinishedHypotheses) {
  TableScorer scorer(crafted_table());
  auto out = beam_search(scorer, {{0}}, options(2, EarlyStopping::kFirstK));
  ASSERT_EQ(out[0].size(), 2u);
  // Step 0 closes [] (EOS ranked 2nd < K), step 1 closes [0]: two finished, stop.
  EXPECT_EQ(out[0][0].ids, Tokens{0});
  EXPECT_NEAR(out[0][0].score, (std::log(0.5) + std::log(0.5)) / 2, 1e-6);  // EOS counts in the length
  EXPECT_EQ(out[0][1].ids, Tokens{});
  EXPECT_NEAR(out[0][1].score, std::log(0.3) / 1, 1e-6);
  EXPECT_EQ(scorer.calls, 1);
}

TEST(BeamSearchTest, HeuristicKeepsSearchingWhileALiveBeamCanWin) {
  TableScorer scorer(crafted_table());
  auto out = beam_search(scorer, {{0}}, options(2, EarlyStopping::kHeuristic));
  ASSERT_EQ(out[0].size(), 2u);
  // After step 1 the worst finished (-1.20) is below the best candidate at length 2 (-0.69):
  // continue; [0, 0] + EOS then beats both and [] drops out.
  EXPECT_EQ(out[0][0].ids, (Tokens{0, 0}));
  EXPECT_NEAR(out[0][0].score, (std::log(0.5) + std::log(0.4) + std::log(0.99)) / 3, 1e-6);
  EXPECT_EQ(out[0][1].ids, Tokens{0});
}

TEST(BeamSearchTest, EosOutsideTheTopKDoesNotFinish) {
  // Prompt 2, step 1: [1]+EOS (rank 0) finishes, [0, 0] (rank 1) lives, [0]+EOS ranks 2 >= K and is
  // dropped as HF drops it; otherwise [0] would be the second hypothesis and stop the search.
  TableScorer scorer(crafted_table());
  auto out = beam_search(scorer, {{2}}, options(2, EarlyStopping::kFirstK));
  ASSERT_EQ(out[0].size(), 2u);
  EXPECT_EQ(out[0][0].ids, Tokens{1});
  EXPECT_NEAR(out[0][0].score, (std::log(0.4) + std::log(0.8)) / 2, 1e-6);
  EXPECT_EQ(out[0][1].ids, (Tokens{0, 0}));
  EXPECT_NEAR(out[0][1].score, (std::log(0.5) + std::log(0.5) + std::log(0.7)) / 3, 1e-6);
}

TEST(BeamSearchTest, UnfinishedBeamsJoinAtMaxLengthWithTheirOwnLength) {
  TableScorer scorer(crafted_table());
  BeamSearchOptions o = options(1, EarlyStopping::kFirstK);
  o.max_new_tokens = 2;  // prompt 1 never reaches its EOS
  auto out = beam_search(scorer, {{1}}, o);
  ASSERT_EQ(out[0].size(), 1u);
  EXPECT_EQ(out[0][0].ids, (Tokens{2, 2}));
  EXPECT_NEAR(out[0][0].score, (std::log(0.7) + std::log(0.8)) / 2, 1e-6);
}

TEST(BeamSearchTest, BatchedPromptsEqualOneAtATime) {
  for (auto rule : {EarlyStopping::kFirstK, EarlyStopping::kHeuristic}) {
    const std::vector<Tokens> prompts = {{1}, {0}, {2}, {1}, {0}};
    TableScorer batched_scorer(crafted_table());
    auto batched = beam_search(batched_scorer, prompts, options(2, rule));
    ASSERT_EQ(batched.size(), prompts.size());
    for (size_t i = 0; i < prompts.size(); ++i) {
      TableScorer single_scorer(crafted_table());
      auto single = beam_search(single_scorer, {prompts[i]}, options(2, rule));
      ASSERT_EQ(batched[i].size(), single[0].size());
      for (size_t h = 0; h < single[0].size(); ++h) {
        EXPECT_EQ(batched[i][h].ids, single[0][h].ids) << "prompt " << i;
        EXPECT_DOUBLE_EQ(batched[i][h].score, single[0][h].score);
      }
    }
  }
}

TEST(BeamSearchTest, NumReturnCutsTheList) {
  TableScorer scorer(crafted_table());
  BeamSearchOptions o = options(2, EarlyStopping::kFirstK);
  o.num_return = 1;
  auto out = beam_search(scorer, {{0}}, o);
  ASSERT_EQ(out[0].size(), 1u);
  EXPECT_EQ(out[0][0].ids, Tokens{0});
}

// Log-probabilities of the token after `ids`, without padding or cache: [V].
torch::Tensor reference_next(DecoderLm& lm, const Tokens& ids) {
  DecoderInput in;
  in.input_ids = torch::tensor(ids, torch::kLong).unsqueeze(0);
  auto h = lm->forward_hidden(in);
  return torch::log_softmax(lm->logits(h[0][h.size(1) - 1]), -1);
}

TEST(DecoderLmScorerTest, LeftPaddedPrefillAndReorderedCacheMatchUnpaddedRuns) {
  DecoderLm lm = testing::tiny_decoder_lm(16, 5);
  torch::NoGradGuard no_grad;
  const std::vector<Tokens> prompts = {{1, 5, 7, 9, 3}, {1, 4}, {1, 8, 8}};
  DecoderLmScorer scorer(lm);
  auto first = scorer.start(prompts);  // [3, V]
  ASSERT_EQ(first.sizes(), (std::vector<int64_t>{3, 16}));
  for (size_t i = 0; i < prompts.size(); ++i)
    EXPECT_TRUE(torch::allclose(first[i], reference_next(lm, prompts[i]), 1e-5, 1e-5)) << "prompt " << i;
  // Rows: prompt 1 twice, prompt 0 once, prompt 2 dropped; then reorder again.
  auto second = scorer.next({1, 0, 1}, {6, 2, 11});
  EXPECT_TRUE(torch::allclose(second[0], reference_next(lm, {1, 4, 6}), 1e-5, 1e-5));
  EXPECT_TRUE(torch::allclose(second[1], reference_next(lm, {1, 5, 7, 9, 3, 2}), 1e-5, 1e-5));
  EXPECT_TRUE(torch::allclose(second[2], reference_next(lm, {1, 4, 11}), 1e-5, 1e-5));
  auto third = scorer.next({2, 2, 1}, {0, 13, 10});
  EXPECT_TRUE(torch::allclose(third[0], reference_next(lm, {1, 4, 11, 0}), 1e-5, 1e-5));
  EXPECT_TRUE(torch::allclose(third[1], reference_next(lm, {1, 4, 11, 13}), 1e-5, 1e-5));
  EXPECT_TRUE(torch::allclose(third[2], reference_next(lm, {1, 5, 7, 9, 3, 2, 10}), 1e-5, 1e-5));
}

TEST(DecoderLmScorerTest, EmptyPromptIsRejected) {
  DecoderLm lm = testing::tiny_decoder_lm(16, 5);
  ASSERT_THROWS_WITH(beam_search(lm, {{1, 2}, {}}, BeamSearchOptions{}), "prompt 1 has no tokens");
}

}  // namespace
}  // namespace seqrec::llm
