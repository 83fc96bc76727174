// The serving core against the `seqrec recommend` path (eval::recommend), batching, masking, the
// faiss indexes where they are exact, and reload.
#include "seqrec/serve/recommender_service.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <set>

#include "seqrec/eval/evaluator.h"
#include "seqrec/serve/item_index.h"
#include "serve/serve_support.h"

namespace {

using namespace seqrec;
using namespace seqrec::testing::serve;
using seqrec::serve::Query;
using seqrec::serve::Ranked;
using seqrec::serve::RecommendRequest;

RecommendRequest user_request(const seqrec::serve::RecommenderService& s, int64_t user, int64_t k) {
  RecommendRequest r;
  r.user = s.data().users.raw_id(user);
  r.k = k;
  return r;
}

RecommendRequest history_request(const seqrec::serve::RecommenderService& s, const std::vector<int64_t>& items, int64_t k) {
  RecommendRequest r;
  for (int64_t i : items) r.history.push_back(s.data().catalog.raw_id(i));
  r.k = k;
  return r;
}

Ranked rank_one(const seqrec::serve::RecommenderService& s, const RecommendRequest& r) {
  const Query q = s.resolve(r);
  return s.rank({&q}).front();
}

void expect_same(const Ranked& a, const std::vector<int64_t>& ids, const std::vector<float>& scores, const std::string& what) {
  ASSERT_EQ(a.ids, ids) << what;
  ASSERT_EQ(a.scores.size(), scores.size()) << what;
  for (size_t i = 0; i < scores.size(); ++i) EXPECT_NEAR(a.scores[i], scores[i], 1e-5) << what << " rank " << i;
}

class RecommenderServiceTest : public ::testing::Test {
 protected:
  void SetUp() override { torch::set_num_threads(1); }
};

// The served answer equals eval::recommend (what `seqrec recommend` prints) for user requests
// (history and timestamps from the store) and history requests, for SASRec, HSTU (time bias) and
// LLaMA-ID.
TEST_F(RecommenderServiceTest, AnswersEqualTheRecommendPath) {
  for (const std::string& ckpt : {ServeData::get().sasrec(), ServeData::get().hstu(), ServeData::get().llama_id()}) {
    auto service = make_service(ckpt);
    train::LoadedModel reference = train::load_checkpoint(ckpt, ServeData::get().dir());
    const auto& store = service->data().store;
    for (int64_t u : {0, 7, 42, 199}) {
      std::vector<int32_t> history(store.items(u).begin(), store.items(u).end());
      std::vector<int64_t> ts(store.timestamps(u).begin(), store.timestamps(u).end());
      const eval::TopK want = eval::recommend(*reference.model, history, 10, kMaxLen, u, ts);
      expect_same(rank_one(*service, user_request(*service, u, 10)), want.ids, want.scores, ckpt + " user " + std::to_string(u));
    }
    const std::vector<int64_t> items = {3, 17, 17, 40, 5};
    const eval::TopK want = eval::recommend(*reference.model, {3, 17, 17, 40, 5}, 7, kMaxLen);
    expect_same(rank_one(*service, history_request(*service, items, 7)), want.ids, want.scores, ckpt + " history");
  }
}

// One forward over a mixed batch (timed user rows, untimed history rows, different lengths) gives
// each query the answer it gets alone.
TEST_F(RecommenderServiceTest, BatchedRanksEqualSingleRanks) {
  auto service = make_service(ServeData::get().hstu());
  std::vector<RecommendRequest> requests;
  for (int64_t u = 0; u < 12; ++u) requests.push_back(user_request(*service, u * 13, 5 + u));
  for (int64_t n = 1; n < 30; n += 7) {
    std::vector<int64_t> items;
    for (int64_t i = 0; i < n; ++i) items.push_back(1 + (i * 7 + n) % 80);
    requests.push_back(history_request(*service, items, 10));
  }
  std::vector<Query> queries;
  for (const auto& r : requests) queries.push_back(service->resolve(r));
  std::vector<const Query*> ptrs;
  for (const auto& q : queries) ptrs.push_back(&q);
  const std::vector<Ranked> batched = service->rank(ptrs);
  ASSERT_EQ(batched.size(), requests.size());
  for (size_t i = 0; i < requests.size(); ++i) {
    const Ranked alone = service->rank({&queries[i]}).front();
    expect_same(batched[i], alone.ids, alone.scores, "query " + std::to_string(i));
    EXPECT_EQ(static_cast<int64_t>(batched[i].ids.size()), requests[i].k);
  }
}

// exclude_history, deny and allow against the full ranking of every item: each is that ranking with
// the masked items removed (or only the allowed ones kept).
TEST_F(RecommenderServiceTest, MaskingAndListsFilterTheFullRanking) {
  auto service = make_service(ServeData::get().sasrec());
  RecommendRequest all = user_request(*service, 5, 80);
  all.exclude_history = false;
  const Ranked full = rank_one(*service, all);
  ASSERT_EQ(full.ids.size(), 80u);
  EXPECT_TRUE(std::is_sorted(full.scores.rbegin(), full.scores.rend()));
  const auto& hist = service->data().store.items(5);
  const std::set<int64_t> history(hist.begin(), hist.end());
  auto filtered = [&](auto keep, size_t k) {
    std::vector<int64_t> out;
    for (int64_t id : full.ids)
      if (keep(id) && out.size() < k) out.push_back(id);
    return out;
  };

  RecommendRequest excl = user_request(*service, 5, 80);
  EXPECT_EQ(rank_one(*service, excl).ids, filtered([&](int64_t id) { return !history.count(id); }, 80));

  RecommendRequest deny = user_request(*service, 5, 10);
  const std::set<int64_t> denied = {full.ids[0], full.ids[3], full.ids[20]};
  for (int64_t id : denied) deny.deny.push_back(service->data().catalog.raw_id(id));
  EXPECT_EQ(rank_one(*service, deny).ids, filtered([&](int64_t id) { return !history.count(id) && !denied.count(id); }, 10));

  RecommendRequest allow = user_request(*service, 5, 4);
  allow.exclude_history = false;
  const std::set<int64_t> allowed = {full.ids[70], full.ids[2], full.ids[50], full.ids[9], full.ids[30], full.ids[1]};
  for (int64_t id : allowed) allow.allow.push_back(service->data().catalog.raw_id(id));
  allow.deny = {service->data().catalog.raw_id(full.ids[9])};
  const Ranked a = rank_one(*service, allow);
  EXPECT_EQ(a.ids, filtered([&](int64_t id) { return allowed.count(id) && id != full.ids[9]; }, 4));
  for (size_t i = 0; i < a.ids.size(); ++i) {
    const size_t at = std::find(full.ids.begin(), full.ids.end(), a.ids[i]) - full.ids.begin();
    EXPECT_NEAR(a.scores[i], full.scores[at], 1e-5);
  }
}

TEST_F(RecommenderServiceTest, UnknownIdsAreNotFoundNamingTheField) {
  auto service = make_service(ServeData::get().sasrec());
  auto status_of = [&](const RecommendRequest& r, const std::string& sub) {
    try {
      service->resolve(r);
      ADD_FAILURE() << "expected an ApiError containing " << sub;
    } catch (const seqrec::serve::ApiError& e) {
      EXPECT_NE(std::string(e.what()).find(sub), std::string::npos) << e.what();
      return e.status();
    }
    return 0;
  };
  RecommendRequest r;
  r.user = "nobody";
  EXPECT_EQ(status_of(r, "user: unknown user id 'nobody'"), 404);
  r = history_request(*service, {1, 2}, 5);
  r.history.insert(r.history.begin() + 1, "no_such_item");
  r.field = "requests[3]";
  EXPECT_EQ(status_of(r, "requests[3].history[1]: unknown item id 'no_such_item'"), 404);
  r = history_request(*service, {1}, 5);
  r.deny = {service->data().catalog.raw_id(2), "zzz"};
  EXPECT_EQ(status_of(r, "deny[1]: unknown item id 'zzz'"), 404);
}

// HNSW with a candidate list wider than the catalogue and IVF-Flat visiting every list are exact:
// their answers equal the blocked product's, and the recall measured at load is 1.
TEST_F(RecommenderServiceTest, FaissIndexesWithExactParametersEqualExact) {
  auto exact = make_service(ServeData::get().sasrec());
  seqrec::serve::IndexOptions hnsw;
  hnsw.kind = "hnsw";
  hnsw.ef_search = 200;
  seqrec::serve::IndexOptions ivf;
  ivf.kind = "ivfflat";
  ivf.nlist = 2;
  ivf.nprobe = 2;
  for (const auto& options : {hnsw, ivf}) {
    auto approx = make_service(ServeData::get().sasrec(), options);
    const auto snap = approx->snapshot();
    ASSERT_TRUE(snap->index) << options.kind;
    EXPECT_DOUBLE_EQ(snap->index_recall, 1.0) << options.kind;
    for (int64_t u = 0; u < 200; u += 9) {
      RecommendRequest r = user_request(*exact, u, 10);
      if (u % 2) r.deny = {exact->data().catalog.raw_id(1 + u % 80)};
      const Ranked want = rank_one(*exact, r);
      expect_same(rank_one(*approx, r), want.ids, want.scores, options.kind + " user " + std::to_string(u));
    }
  }
}

// IVF-PQ is approximate: its answers are still k unmasked items with exact scores, best first, and
// an index written to a file and read back answers the same.
TEST_F(RecommenderServiceTest, IvfPqAnswersAreWellFormedAndSurviveSaveAndLoad) {
  seqrec::serve::IndexOptions pq;
  pq.kind = "ivfpq";
  pq.nlist = 2;
  pq.nprobe = 1;
  pq.pq_bits = 4;
  seqrec::serve::ServiceOptions o;
  o.checkpoint = ServeData::get().sasrec();
  o.index = pq;
  o.save_index = ServeData::get().temp().file("pq.faiss");
  seqrec::serve::RecommenderService built(service_data(), o);
  EXPECT_GE(built.snapshot()->index_recall, 0.0);
  EXPECT_LE(built.snapshot()->index_recall, 1.0);
  o.save_index.clear();
  o.index_file = ServeData::get().temp().file("pq.faiss");
  seqrec::serve::RecommenderService loaded(service_data(), o);
  auto exact = make_service(ServeData::get().sasrec());
  for (int64_t u = 0; u < 200; u += 17) {
    const RecommendRequest r = user_request(built, u, 10);
    const Ranked a = rank_one(built, r), b = rank_one(loaded, r);
    EXPECT_EQ(a.ids, b.ids);
    ASSERT_EQ(a.ids.size(), 10u);
    EXPECT_TRUE(std::is_sorted(a.scores.rbegin(), a.scores.rend()));
    const auto& hist = built.data().store.items(u);
    RecommendRequest all = r;
    all.k = 80;
    all.exclude_history = false;
    const Ranked full = rank_one(*exact, all);
    for (size_t i = 0; i < a.ids.size(); ++i) {
      EXPECT_EQ(std::find(hist.begin(), hist.end(), a.ids[i]), hist.end());
      const size_t at = std::find(full.ids.begin(), full.ids.end(), a.ids[i]) - full.ids.begin();
      EXPECT_NEAR(a.scores[i], full.scores[at], 1e-5);  // re-scored exactly
    }
  }
  seqrec::serve::IndexOptions wrong = pq;
  wrong.pq_m = 5;  // does not divide D = 16
  ASSERT_THROWS_WITH(make_service(ServeData::get().sasrec(), wrong), "serve.index.pq_m: 5 must divide the embedding dimension 16");
}

// A reload swaps the model in; a snapshot taken before keeps answering with the old one; a failed
// reload keeps the current model and says why.
TEST_F(RecommenderServiceTest, ReloadSwapsAndAFailedReloadKeepsTheModel) {
  auto service = make_service(ServeData::get().sasrec());
  const Query q = service->resolve(user_request(*service, 3, 10));
  const auto before = service->snapshot();
  const Ranked first = service->rank({&q}).front();
  EXPECT_EQ(first.model_version, 1);

  const seqrec::serve::ReloadReport ok = service->reload(ServeData::get().sasrec_other());
  ASSERT_TRUE(ok.ok) << ok.error;
  EXPECT_EQ(ok.version, 2);
  const Ranked second = service->rank({&q}).front();
  EXPECT_EQ(second.model_version, 2);
  EXPECT_NE(second.scores, first.scores);
  const Ranked old = service->rank(*before, {&q}).front();
  expect_same(old, first.ids, first.scores, "old snapshot");

  const seqrec::serve::ReloadReport missing = service->reload(ServeData::get().temp().file("nope.safetensors"));
  EXPECT_FALSE(missing.ok);
  EXPECT_NE(missing.error.find("nope.safetensors"), std::string::npos) << missing.error;
  EXPECT_EQ(missing.version, 2);
  EXPECT_EQ(service->snapshot()->version, 2);

  // A checkpoint built for another catalogue size does not fit the data.
  models::ModelContext ctx;
  ctx.num_items = 50;
  ctx.max_seq_len = kMaxLen;
  config::ConfigNode node = config::ConfigNode::parse(kSasRecYaml);
  const std::string other = ServeData::get().temp().file("small.safetensors");
  train::save_checkpoint(other, *models::make_model(node, ctx), kSasRecYaml, ctx);
  const seqrec::serve::ReloadReport small = service->reload(other);
  EXPECT_FALSE(small.ok);
  EXPECT_NE(small.error.find("built for 50 items"), std::string::npos) << small.error;
  expect_same(service->rank({&q}).front(), second.ids, second.scores, "after failed reloads");
}

}  // namespace
