// Tests of the evaluation protocols on a hand-built model with known scores.
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "seqrec/data/batcher.h"
#include "seqrec/data/interaction_store.h"
#include "seqrec/data/split.h"
#include "seqrec/eval/evaluator.h"
#include "seqrec/models/recommender.h"
#include "support.h"

namespace seqrec::eval {
namespace {

/// Hidden state [1, s] where s = +1 normally, or -1 when the newest input item is `flip_item`;
/// item embedding [score_i, 0]. So for ordinary histories score(i) = score_i, the table below.
class FixedModel : public models::SequenceRecommenderImpl {
 public:
  explicit FixedModel(std::vector<float> scores, int64_t flip_item = -1) : flip_item_(flip_item) {
    auto t = torch::zeros({static_cast<int64_t>(scores.size()), 2});
    for (size_t i = 0; i < scores.size(); ++i) t[i][0] = scores[i];
    table_ = register_buffer("table", t);
  }
  torch::Tensor encode(const data::SequenceBatch& batch) override {
    const int64_t b = batch.item_ids.size(0), w = batch.item_ids.size(1);
    auto h = torch::zeros({b, w, 2});
    h.select(2, 0).fill_(1.f);
    auto flip = batch.item_ids.eq(flip_item_);
    h.select(2, 0).masked_fill_(flip, -1.f);
    return h;
  }
  torch::Tensor item_embeddings(const torch::Tensor& ids) override {
    auto sizes = ids.sizes().vec();
    sizes.push_back(2);
    return table_.index_select(0, ids.reshape({-1})).view(sizes);
  }
  torch::Tensor all_item_embeddings() override { return table_; }

 private:
  torch::Tensor table_;
  int64_t flip_item_;
};

/// Scores of items 0..6: item i (1..6) scores 7 - i, so item 1 is the best; padding scores 100.
std::vector<float> default_scores() { return {100.f, 6.f, 5.f, 4.f, 3.f, 2.f, 1.f}; }

data::InteractionStore make_store(const std::vector<std::vector<int32_t>>& seqs, int64_t num_items) {
  data::StoreData d;
  d.num_items = num_items;
  d.user_offsets.push_back(0);
  for (const auto& s : seqs) {
    d.item_ids.insert(d.item_ids.end(), s.begin(), s.end());
    d.user_offsets.push_back(d.item_ids.size());
  }
  return data::InteractionStore::from_data(std::move(d));
}

using Mask = config::HistoryMask;

config::EvalOptions full_options(Mask mask) {
  config::EvalOptions o;
  o.protocol = config::Protocol::kFull;
  o.history_mask = mask;
  o.ks = {1, 2, 3};
  return o;
}

TEST(Evaluator, FullProtocolHistoryMasks) {
  // Valid query: history [1 2 4], target 3 (score 4). Items above 3: 1 (6), 2 (5).
  //  full   -> 1, 2, 4 masked -> rank 0
  //  window (L = 2: the last 2 history items 2, 4 masked) -> 1 above -> rank 1
  //  none   -> 1, 2 above (4 scores 3 < 4) -> rank 2
  FixedModel model(default_scores());
  auto store = make_store({{1, 2, 4, 3, 5}}, 6);
  auto full = evaluate(model, store, data::Split::kValid, full_options(Mask::kFull), 2);
  auto window = evaluate(model, store, data::Split::kValid, full_options(Mask::kWindow), 2);
  auto none = evaluate(model, store, data::Split::kValid, full_options(Mask::kNone), 2);
  EXPECT_EQ(full.users, 1);
  EXPECT_DOUBLE_EQ(full.metrics.at("mrr"), 1.0);
  EXPECT_DOUBLE_EQ(window.metrics.at("mrr"), 0.5);
  EXPECT_DOUBLE_EQ(none.metrics.at("mrr"), 1.0 / 3);
  EXPECT_DOUBLE_EQ(window.metrics.at("hr@1"), 0.0);
  EXPECT_DOUBLE_EQ(window.metrics.at("hr@2"), 1.0);
  EXPECT_DOUBLE_EQ(none.metrics.at("hr@2"), 0.0);
  EXPECT_DOUBLE_EQ(none.metrics.at("hr@3"), 1.0);
  // With a window covering the whole history, window == full.
  auto wide = evaluate(model, store, data::Split::kValid, full_options(Mask::kWindow), 10);
  EXPECT_DOUBLE_EQ(wide.metrics.at("mrr"), 1.0);
  // Test split: history [1 2 4 3], target 5 (score 2); full mask -> only 6 remains below -> rank 0;
  // none -> 1, 2, 3, 4 above -> rank 4.
  EXPECT_DOUBLE_EQ(evaluate(model, store, data::Split::kTest, full_options(Mask::kFull), 2).metrics.at("mrr"), 1.0);
  EXPECT_DOUBLE_EQ(evaluate(model, store, data::Split::kTest, full_options(Mask::kNone), 2).metrics.at("mrr"), 0.2);
}

TEST(Evaluator, RefusesTheGenerativeProtocolForARankingModel) {
  FixedModel model(default_scores());
  auto store = make_store({{1, 2, 4, 3, 5}}, 6);
  config::EvalOptions o = full_options(Mask::kFull);
  o.protocol = config::Protocol::kGenerative;
  ASSERT_THROWS_WITH(evaluate(model, store, data::Split::kTest, o, 2),
                     "eval.protocol: generative is LC-Rec's protocol (beam search over item codes)");
}

TEST(Evaluator, ColdStartMetricsCoverOnlyColdTargets) {
  // Test targets: user 0 -> 3 (rank 0 after masking 1, 2), user 1 -> 6 (rank 3: 2, 3, 4 above after
  // masking 1 and 5), user 2 -> 5 (rank 1: 3 above after masking 1, 2, 4). Items 5 and 6 are cold.
  FixedModel model(default_scores());
  auto store = make_store({{1, 2, 3}, {1, 5, 6}, {1, 2, 4, 5}}, 6);
  std::vector<char> cold(7, 0);
  cold[5] = cold[6] = 1;
  auto r = evaluate(model, store, data::Split::kTest, full_options(Mask::kFull), 5, cold);
  EXPECT_EQ(r.users, 3);
  EXPECT_DOUBLE_EQ(r.metrics.at("cold_users"), 2.0);
  EXPECT_DOUBLE_EQ(r.metrics.at("mrr"), (1.0 + 1.0 / 4 + 1.0 / 2) / 3);
  EXPECT_DOUBLE_EQ(r.metrics.at("cold_mrr"), (1.0 / 4 + 1.0 / 2) / 2);
  EXPECT_DOUBLE_EQ(r.metrics.at("cold_hr@2"), 0.5);
  EXPECT_EQ(evaluate(model, store, data::Split::kTest, full_options(Mask::kFull), 5).metrics.count("cold_mrr"), 0u);
}

TEST(Evaluator, FullScoresMasksPaddingAndHistoryButKeepsTarget) {
  FixedModel model(default_scores());
  // History [1 3 2], target 3 (repeated).
  auto store = make_store({{1, 3, 2, 3, 6}}, 6);
  auto q = data::eval_queries(store, data::Split::kValid);
  ASSERT_EQ(q.size(), 1u);
  ASSERT_EQ(q[0].target, 3);
  auto batch = data::make_eval_batch(q, 0, 1, 5);
  auto scores = full_scores(model, batch, {q[0].history}, Mask::kFull, 5, batch.targets);
  ASSERT_EQ(scores.sizes(), (torch::IntArrayRef{1, 7}));
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(scores[0][0].item<float>(), -inf);  // padding
  EXPECT_EQ(scores[0][1].item<float>(), -inf);  // history
  EXPECT_EQ(scores[0][2].item<float>(), -inf);
  EXPECT_EQ(scores[0][3].item<float>(), 4.f);   // target kept rankable
  EXPECT_EQ(scores[0][4].item<float>(), 3.f);
  EXPECT_EQ(scores[0][6].item<float>(), 1.f);
  // Without `keep` the repeated item is masked like the rest of the history.
  auto masked = full_scores(model, batch, {q[0].history}, Mask::kFull, 5, torch::Tensor());
  EXPECT_EQ(masked[0][3].item<float>(), -inf);
  // So the evaluator ranks the repeated target first.
  EXPECT_DOUBLE_EQ(evaluate(model, store, data::Split::kValid, full_options(Mask::kFull), 5).metrics.at("mrr"), 1.0);
}

TEST(Evaluator, UsesTheNewestHistoryItemAndSkipsShortUsers) {
  // Flip the hidden state when the newest history item is 5: all scores negate, so the worst item
  // (6) becomes the best. User 0: history [2 5] (newest 5), target 6 -> rank 0 (full mask).
  // User 1: history [5 2] (newest 2), target 6 -> items 1, 3, 4 above -> rank 3.
  // User 2 has 2 events: training only, not evaluated.
  FixedModel model(default_scores(), /*flip_item=*/5);
  auto store = make_store({{2, 5, 6, 1}, {5, 2, 6, 1}, {1, 2}}, 6);
  auto o = full_options(Mask::kFull);
  o.batch_size = 1;  // several batches
  auto r = evaluate(model, store, data::Split::kValid, o, 4);
  EXPECT_EQ(r.users, 2);
  EXPECT_DOUBLE_EQ(r.metrics.at("mrr"), (1.0 + 0.25) / 2);
  EXPECT_DOUBLE_EQ(r.metrics.at("hr@1"), 0.5);
  // max_users keeps the first N queries.
  o.max_users = 1;
  auto first = evaluate(model, store, data::Split::kValid, o, 4);
  EXPECT_EQ(first.users, 1);
  EXPECT_DOUBLE_EQ(first.metrics.at("mrr"), 1.0);
}

TEST(Evaluator, SampledCandidates) {
  std::vector<int32_t> hist = {1, 2, 3};
  data::EvalQuery q;
  q.user = 17;
  q.history = {hist.data(), 3};
  q.target = 4;
  auto c = sampled_candidates(q, 50, 10, 7);
  ASSERT_EQ(c.size(), 11u);
  EXPECT_EQ(c[0], 4);
  std::set<int64_t> distinct(c.begin(), c.end());
  EXPECT_EQ(distinct.size(), 11u);
  for (size_t i = 1; i < c.size(); ++i) {
    EXPECT_GE(c[i], 1);
    EXPECT_LE(c[i], 50);
    EXPECT_TRUE(c[i] != 1 && c[i] != 2 && c[i] != 3 && c[i] != 4) << c[i];
  }
  EXPECT_EQ(sampled_candidates(q, 50, 10, 7), c);  // deterministic for (seed, user)
  EXPECT_NE(sampled_candidates(q, 50, 10, 8), c);  // another seed
  data::EvalQuery other = q;
  other.user = 18;
  EXPECT_NE(sampled_candidates(other, 50, 10, 7), c);  // another user
  // Fewer items available than asked for: every non-history item, once.
  auto small = sampled_candidates(q, 6, 10, 7);
  ASSERT_EQ(small.size(), 3u);
  EXPECT_EQ(small[0], 4);
  EXPECT_EQ(std::set<int64_t>(small.begin() + 1, small.end()), (std::set<int64_t>{5, 6}));
}

TEST(Evaluator, SampledProtocolRanks) {
  FixedModel model(default_scores());
  // Valid: history [1 2 3], target 6 (score 1); only 4 and 5 are left as negatives, both above -> rank 2.
  auto store = make_store({{1, 2, 3, 6, 5}}, 6);
  config::EvalOptions o;
  o.protocol = config::Protocol::kSampled;
  o.num_negatives = 2;
  o.ks = {1, 3};
  auto r = evaluate(model, store, data::Split::kValid, o, 5);
  EXPECT_EQ(r.users, 1);
  EXPECT_DOUBLE_EQ(r.metrics.at("mrr"), 1.0 / 3);
  EXPECT_DOUBLE_EQ(r.metrics.at("hr@1"), 0.0);
  EXPECT_DOUBLE_EQ(r.metrics.at("hr@3"), 1.0);
  // More negatives than this user has unseen items ranks among what is left (same answer; logged).
  o.num_negatives = 4;
  EXPECT_DOUBLE_EQ(evaluate(model, store, data::Split::kValid, o, 5).metrics.at("mrr"), 1.0 / 3);
  // As many negatives as the catalogue has other items is full ranking: refused, not labelled sampled.
  o.num_negatives = 5;
  ASSERT_THROWS_WITH(evaluate(model, store, data::Split::kValid, o, 5),
                     "eval.num_negatives: 5 negatives leave no item of the 6-item catalogue unsampled: that is full ranking");
}

TEST(Evaluator, SampledProtocolMatchesCandidates) {
  // 40 items scoring 40 - i; the rank of each query is the number of sampled negatives with a
  // smaller id than the target.
  std::vector<float> scores = {100.f};
  for (int i = 1; i <= 40; ++i) scores.push_back(static_cast<float>(40 - i));
  FixedModel model(scores);
  std::vector<std::vector<int32_t>> seqs = {{3, 9, 20, 11}, {30, 2, 25, 7}, {12, 13, 14, 15, 16}};
  auto store = make_store(seqs, 40);
  config::EvalOptions o;
  o.protocol = config::Protocol::kSampled;
  o.num_negatives = 8;
  o.seed = 3;
  o.ks = {1};
  auto queries = data::eval_queries(store, data::Split::kTest);
  double mrr = 0;
  for (const auto& q : queries) {
    auto c = sampled_candidates(q, 40, 8, 3);
    int64_t rank = 0;
    for (size_t j = 1; j < c.size(); ++j) rank += c[j] < q.target;
    mrr += 1.0 / (rank + 1);
  }
  mrr /= queries.size();
  auto r = evaluate(model, store, data::Split::kTest, o, 10);
  EXPECT_EQ(r.users, 3);
  EXPECT_NEAR(r.metrics.at("mrr"), mrr, 1e-12);
}

TEST(Evaluator, RecommendExcludesHistoryAndSortsByScore) {
  FixedModel model(default_scores());
  auto top = recommend(model, {1, 2}, 3, 5);
  EXPECT_EQ(top.ids, (std::vector<int64_t>{3, 4, 5}));
  EXPECT_EQ(top.scores, (std::vector<float>{4.f, 3.f, 2.f}));
  // k beyond what is left: every non-history, non-padding item.
  auto all = recommend(model, {1, 2, 2}, 10, 5);
  EXPECT_EQ(all.ids, (std::vector<int64_t>{3, 4, 5, 6}));
  // The newest item decides the state: with 5 last, scores flip and 6 is best.
  FixedModel flipping(default_scores(), 5);
  auto flipped = recommend(flipping, {1, 5}, 2, 5);
  EXPECT_EQ(flipped.ids, (std::vector<int64_t>{6, 4}));
  EXPECT_EQ(flipped.scores, (std::vector<float>{-1.f, -3.f}));
  // History longer than L: every history item is still excluded.
  auto longer = recommend(model, {1, 2, 3, 4}, 2, 2);
  EXPECT_EQ(longer.ids, (std::vector<int64_t>{5, 6}));
}

}  // namespace
}  // namespace seqrec::eval
