// LSVCR at inference: next videos over the whole catalogue and a video's comment section, ranked by
// the model's cosine / temperature (checked against the heads' outputs by hand), histories cut to the
// newest max_history, in eval mode (the model's own mode restored), masked ids never returned.
#include "seqrec/serve/lsvcr_ranker.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <numeric>
#include <set>

#include "seqrec/common/error.h"
#include "seqrec/data/item_catalog.h"
#include "seqrec/models/lsvcr.h"
#include "train/lsvcr_support.h"

namespace seqrec::serve {
namespace {

constexpr int64_t kTextDim = 6, kMaxHistory = 3;

models::Lsvcr small_model(const data::LsvcrStore& store) {
  models::LsvcrOptions o;
  o.num_videos = store.num_videos;
  o.num_comments = store.num_comments;
  o.text_input_dim = kTextDim;
  o.max_history = kMaxHistory;
  o.max_position = 8;
  o.hidden_dim = 8;
  o.num_heads = 2;
  o.ffn_dim = 16;
  o.text_hidden_dim = 12;
  o.text_dim = 6;
  torch::manual_seed(5);
  models::Lsvcr m(o);
  m->set_text_tables(testing::random_text_tables(store, kTextDim));
  return m;  // in training mode, dropout 0.3: the ranker must switch it off
}

/// cosine(user [D], candidates [N, D]) / temperature, written out.
torch::Tensor cosine_scores(const torch::Tensor& user, const torch::Tensor& candidates) {
  return candidates.matmul(user) / (candidates.norm(2, 1) * user.norm()) / 0.07;
}

/// Checks `r` against `expected` [N] scores of `candidates`: every unmasked candidate once, best first,
/// each score equal to the hand computation.
void expect_ranking(const Ranked& r, const std::vector<int64_t>& candidates, const torch::Tensor& expected,
                    const std::set<int64_t>& masked) {
  size_t unmasked = 0;
  for (int64_t c : candidates) unmasked += masked.count(c) == 0;
  ASSERT_EQ(r.ids.size(), unmasked);
  for (size_t i = 0; i < r.ids.size(); ++i) {
    EXPECT_EQ(masked.count(r.ids[i]), 0u) << r.ids[i];
    const auto at = std::find(candidates.begin(), candidates.end(), r.ids[i]) - candidates.begin();
    ASSERT_LT(at, static_cast<long>(candidates.size())) << r.ids[i] << " is no candidate";
    EXPECT_NEAR(r.scores[i], expected[at].item<float>(), 1e-4) << "rank " << i;
    if (i > 0) {
      EXPECT_GE(r.scores[i - 1], r.scores[i]);
    }
  }
}

TEST(LsvcrRankerTest, HistoryBatchKeepsTheNewestEventsAndOnePaddingSlotForAnEmptyHistory) {
  const models::LsvcrBatch b = lsvcr_history_batch({{4, 5, 6, 7, 8}, {}}, kMaxHistory);
  EXPECT_TRUE(b.video_ids.equal(torch::tensor({6, 7, 8}, torch::kInt64).view({1, 3})));
  EXPECT_TRUE(b.comment_ids.equal(torch::zeros({1, 1}, torch::kInt64)));
  const models::LsvcrBatch c = lsvcr_history_batch({{}, {2, 9}}, kMaxHistory);
  EXPECT_TRUE(c.comment_ids.equal(torch::tensor({2, 9}, torch::kInt64).view({1, 2})));
  EXPECT_THROW(lsvcr_history_batch({}, kMaxHistory), RequestError);
}

TEST(LsvcrRankerTest, NextVideosAreTheCatalogueByCosineOverTemperatureWithoutTheMasked) {
  testing::SyntheticLsvcr data(testing::small_lsvcr(30, 60, 3, 12));
  models::Lsvcr model = small_model(data.store);
  const LsvcrHistories h{data.store.video_histories[0].ids, data.store.comment_histories[0].ids};
  ASSERT_GT(h.videos.size(), static_cast<size_t>(kMaxHistory));
  const Ranked all = lsvcr_next_videos(*model, h, 1000, h.videos);
  ASSERT_GE(all.ids.size(), 4u);
  EXPECT_TRUE(model->is_training());  // the caller's mode is restored
  const Ranked again = lsvcr_next_videos(*model, h, 1000, h.videos);
  EXPECT_EQ(again.ids, all.ids);  // no dropout at inference
  EXPECT_EQ(again.scores, all.scores);

  torch::NoGradGuard no_grad;
  model->eval();
  const int64_t V = data.store.num_videos;
  const torch::Tensor user = model->video_user(model->encode(lsvcr_history_batch(h, kMaxHistory)))[0];
  std::vector<int64_t> catalogue(static_cast<size_t>(V));
  std::iota(catalogue.begin(), catalogue.end(), 1);
  expect_ranking(all, catalogue, cosine_scores(user, model->video_embedding(torch::arange(1, V + 1))),
                 std::set<int64_t>(h.videos.begin(), h.videos.end()));
  const Ranked top3 = lsvcr_next_videos(*model, h, 3, h.videos);
  EXPECT_EQ(top3.ids, std::vector<int64_t>(all.ids.begin(), all.ids.begin() + 3));

  // Only the newest max_history events count: an older video in front changes nothing, a newer one does.
  LsvcrHistories older = h, newer = h;
  older.videos.insert(older.videos.begin(), all.ids.back());
  newer.videos.push_back(all.ids.back());
  EXPECT_EQ(lsvcr_next_videos(*model, older, 1000, h.videos).scores, all.scores);
  EXPECT_NE(lsvcr_next_videos(*model, newer, 1000, h.videos).scores, all.scores);
}

TEST(LsvcrRankerTest, CommentsAreTheVideosSectionRankedWithTheVideoAsQuery) {
  testing::SyntheticLsvcr data(testing::small_lsvcr(30, 20, 4, 12));
  models::Lsvcr model = small_model(data.store);
  const LsvcrHistories h{data.store.video_histories[1].ids, data.store.comment_histories[1].ids};
  const int64_t video = 3;
  const std::vector<int64_t>& section = data.store.video_comments[video];
  ASSERT_GE(section.size(), 4u);
  const Ranked r = lsvcr_rank_comments(*model, data.store, h, video, 1000, {section[1]});

  torch::NoGradGuard no_grad;
  model->eval();
  const torch::Tensor user =
      model->comment_user(model->encode(lsvcr_history_batch(h, kMaxHistory)), torch::tensor({video}, torch::kInt64))[0];
  expect_ranking(r, section, cosine_scores(user, model->comment_text(torch::tensor(section, torch::kInt64))),
                 {section[1]});
  // Another current video is another query: the same comments score differently.
  const torch::Tensor other =
      model->comment_user(model->encode(lsvcr_history_batch(h, kMaxHistory)), torch::tensor({video + 1}, torch::kInt64))[0];
  EXPECT_FALSE(torch::allclose(user, other));
  EXPECT_THROW(lsvcr_rank_comments(*model, data.store, h, data.store.num_videos + 1, 5, {}), RequestError);
  EXPECT_THROW(lsvcr_rank_comments(*model, data.store, h, 0, 5, {}), RequestError);
}

// The serving backend ranks a batch of queries of different history lengths (rows padded together)
// exactly as the one-user functions rank each alone: next videos through user_states . item_table,
// comment sections through rank_comments.
TEST(LsvcrRankerTest, TheBackendRanksABatchAsEachQueryAlone) {
  testing::SyntheticLsvcr data(testing::small_lsvcr(30, 40, 3, 12));
  models::Lsvcr model = small_model(data.store);
  const auto store = std::make_shared<const data::LsvcrStore>(data.store);
  const LsvcrBackend backend(model.ptr(), store, data::ItemCatalog::load(data.prepared.file("comments")));
  int64_t video = 1;  // the largest section
  for (int64_t v = 1; v <= store->num_videos; ++v)
    if (store->video_comments[v].size() > store->video_comments[video].size()) video = v;
  std::vector<Query> queries;
  std::vector<LsvcrHistories> alone;
  for (int64_t u : {0, 3, 11, 17}) {  // "user" queries: both rows of the store
    Query q;
    q.by_user = true;
    q.user = u;
    q.history.assign(store->video_histories[u].ids.begin(), store->video_histories[u].ids.end());
    queries.push_back(q);
    alone.push_back({store->video_histories[u].ids, store->comment_histories[u].ids});
  }
  Query spelled;  // a "history" query: one video, no comments
  spelled.history = {5};
  queries.push_back(spelled);
  alone.push_back({{5}, {}});
  std::vector<const Query*> batch;
  for (const Query& q : queries) batch.push_back(&q);

  const torch::Tensor scores = backend.user_states(batch).matmul(backend.item_table().t());  // [B, V+1]
  for (size_t i = 0; i < queries.size(); ++i) {
    const Ranked want = lsvcr_next_videos(*model, alone[i], 1000, {});
    for (size_t j = 0; j < want.ids.size(); ++j)
      EXPECT_NEAR(scores[i][want.ids[j]].item<float>(), want.scores[j], 1e-4) << "query " << i << " video " << want.ids[j];
  }

  for (size_t i = 0; i < queries.size(); ++i) {  // the same users as comment queries
    queries[i].video = video;
    queries[i].comments = alone[i].comments;
    queries[i].masked = {store->video_comments[video][0]};
    queries[i].k = 1000;
  }
  const std::vector<Ranked> ranked = backend.rank_comments(batch);
  for (size_t i = 0; i < queries.size(); ++i) {
    const Ranked want = lsvcr_rank_comments(*model, *store, alone[i], video, 1000, queries[i].masked);
    EXPECT_EQ(ranked[i].ids, want.ids) << "query " << i;
    ASSERT_EQ(ranked[i].scores.size(), want.scores.size());
    for (size_t j = 0; j < want.scores.size(); ++j) EXPECT_NEAR(ranked[i].scores[j], want.scores[j], 1e-4);
  }
}

}  // namespace
}  // namespace seqrec::serve
