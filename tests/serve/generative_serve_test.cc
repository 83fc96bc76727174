// seqrec serve over an LC-Rec folder (stories260K with the item code tokens added, as `seqrec
// finetune` exports it): batched beam search equal to LcRec prompt by prompt, the beams filtered by
// masking and lists, k above the beams refused, and the HTTP answers equal to `seqrec recommend`.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <set>

#include "seqrec/common/fs.h"
#include "seqrec/data/lcrec_tasks.h"
#include "seqrec/llm/tokenizer.h"
#include "seqrec/models/lcrec.h"
#include "seqrec/semantic_id/item_index.h"
#include "seqrec/serve/generative_backend.h"
#include "seqrec/train/finetune.h"
#include "seqrec/train/hf_export.h"
#include "serve/http_support.h"

namespace {

using namespace seqrec;
using namespace seqrec::testing::serve;
using nlohmann::json;
using seqrec::serve::Query;
using seqrec::serve::Ranked;
using seqrec::serve::RecommendRequest;

const std::string kStories = SEQREC_SOURCE_DIR "/../shared/models/stories260K/hf";
constexpr int64_t kBeams = 12;

// The LC-Rec folder over the serving fixture's 80 items: codes <a_r/8><b_r%8>, stories260K with
// those 18 tokens added (random rows, as if tuned), index.json, and the seqrec_finetune.yaml that
// `seqrec recommend` / `seqrec serve` read from the folder.
class LcRecFolder {
 public:
  static LcRecFolder& get() {
    static LcRecFolder folder;
    return folder;
  }
  std::string folder() const { return ServeData::get().temp().file("lcrec/model"); }
  std::string index_path() const { return ServeData::get().temp().file("lcrec/index.json"); }

  // What the CLI's loader builds from the folder's config: the first test template over the history.
  std::shared_ptr<const seqrec::serve::GenerativeBackend> load(const std::string& folder, int64_t batch_size) const {
    const std::string dir = ServeData::get().dir();
    const semantic_id::ItemIndex index = semantic_id::read_index_json(index_path(), 80);
    data::LcRecDataOptions o;
    o.tasks = {{data::LcRecTask::kSeqRec, 1, 0}};
    auto tasks = std::make_shared<const data::LcRecTaskSet>(
        data::InteractionStore::open(dir + "/interactions.bin"),
        data::lcrec_items(data::ItemCatalog::load(dir), index.item_texts(), "title", "description"), data::LcRecUserTexts{}, o);
    models::LcRecOptions gen;
    gen.num_beams = kBeams;
    gen.batch_size = batch_size;
    return std::make_shared<seqrec::serve::GenerativeBackend>(
        std::make_unique<models::LcRec>(folder, index, gen),
        [tasks](const std::vector<int32_t>& history) { return tasks->query_example(history, 0).prompt; });
  }

  std::unique_ptr<seqrec::serve::RecommenderService> service() const {
    seqrec::serve::ServiceOptions o;
    o.checkpoint = folder();
    o.load_generative = [this](const std::string& f) { return load(f, 32); };
    return std::make_unique<seqrec::serve::RecommenderService>(service_data(), o);
  }

 private:
  LcRecFolder() {
    semantic_id::ItemIndex index;
    index.num_levels = 2;
    for (int64_t row = 0; row < 80; ++row) index.codes.insert(index.codes.end(), {row / 8, row % 8});
    std::filesystem::create_directories(ServeData::get().temp().file("lcrec"));
    semantic_id::write_index_json(index_path(), index);
    auto tokenizer = llm::load_tokenizer(kStories);
    std::set<std::string> tokens;
    for (int64_t row = 0; row < index.num_items(); ++row)
      for (const auto& t : index.row_tokens(row)) tokens.insert(t);
    const int64_t old_vocab = tokenizer->vocab_size();
    tokenizer->add_tokens(std::vector<std::string>(tokens.begin(), tokens.end()));
    llm::DecoderLm lm = llm::load_decoder_lm(kStories);
    train::init_added_token_rows(*lm, old_vocab, tokenizer->vocab_size());
    {
      torch::NoGradGuard no_grad;
      torch::manual_seed(5);
      auto rows = lm->model->embed_tokens->weight.narrow(0, old_vocab, tokenizer->vocab_size() - old_vocab);
      rows.add_(torch::randn(rows.sizes()) * rows.std() * 3);
    }
    train::HfExportSpec spec;
    spec.base_dir = kStories;
    for (int64_t id = old_vocab; id < tokenizer->vocab_size(); ++id) spec.added_tokens.emplace_back(id, tokenizer->id_to_piece(id));
    train::export_hf_model(*lm, spec, folder());
    write_file_atomic(folder() + "/seqrec_finetune.yaml", "data:\n  dir: " + ServeData::get().dir() + "\nlcrec:\n  index: " +
                                                       index_path() + "\n  tasks: [seqrec]\neval:\n  num_beams: " +
                                                       std::to_string(kBeams) + "\n");
  }
};

bool have_stories() { return path_exists(kStories + "/config.json"); }

RecommendRequest user_request(const seqrec::serve::RecommenderService& s, int64_t user, int64_t k) {
  RecommendRequest r;
  r.user = s.data().users.raw_id(user);
  r.k = k;
  r.exclude_history = false;  // as `seqrec recommend` prints the beams
  return r;
}

class GenerativeServeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!have_stories()) GTEST_SKIP() << "no " << kStories;
    torch::set_num_threads(1);
  }
};

// One batched beam search over user and history queries gives each query LcRec's beams for its
// prompt alone; exclude_history, deny and allow filter those beams.
TEST_F(GenerativeServeTest, BatchedAnswersEqualLcRecPromptByPromptAndFiltersDropBeams) {
  auto service = LcRecFolder::get().service();
  EXPECT_EQ(service->snapshot()->index_description, "lcrec beam search (12 beams, trie)");
  std::vector<RecommendRequest> requests;
  for (int64_t u : {0, 7, 42, 199}) requests.push_back(user_request(*service, u, kBeams));
  RecommendRequest h;
  for (int64_t i : {3, 17, 40}) h.history.push_back(service->data().catalog.raw_id(i));
  h.k = 5;
  h.exclude_history = false;
  requests.push_back(h);
  std::vector<Query> queries;
  for (const auto& r : requests) queries.push_back(service->resolve(r));
  std::vector<const Query*> ptrs;
  for (const auto& q : queries) ptrs.push_back(&q);
  const std::vector<Ranked> batched = service->rank(ptrs);

  const auto reference = LcRecFolder::get().load(LcRecFolder::get().folder(), 1);  // one prompt per beam search
  ASSERT_EQ(batched.size(), queries.size());
  for (size_t i = 0; i < queries.size(); ++i) {
    const Ranked alone = reference->rank({&queries[i]}).front();
    ASSERT_EQ(batched[i].ids, alone.ids) << "query " << i;
    EXPECT_EQ(static_cast<int64_t>(alone.ids.size()), queries[i].k) << i;  // the trie: every beam is an item
    for (size_t r = 0; r < alone.ids.size(); ++r) EXPECT_NEAR(batched[i].scores[r], alone.scores[r], 1e-4) << i << " " << r;
    EXPECT_TRUE(std::is_sorted(alone.scores.rbegin(), alone.scores.rend())) << i;
    EXPECT_LT(alone.scores.front(), 0.0f) << i;  // log-probabilities
    EXPECT_EQ(batched[i].model_version, 1);
  }

  // Filters: the unfiltered beams (k = all of them) minus the masked items, cut to k.
  const Ranked all = batched[1];
  RecommendRequest f = user_request(*service, 7, 4);
  f.exclude_history = true;
  f.deny = {service->data().catalog.raw_id(all.ids[0])};
  const Query fq = service->resolve(f);
  std::vector<int64_t> want;
  for (int64_t id : all.ids)
    if (!std::binary_search(fq.masked.begin(), fq.masked.end(), id) && want.size() < 4) want.push_back(id);
  EXPECT_EQ(service->rank({&fq}).front().ids, want);
  RecommendRequest a = user_request(*service, 7, 10);
  a.allow = {service->data().catalog.raw_id(all.ids[5]), service->data().catalog.raw_id(all.ids[2]), service->data().catalog.raw_id(80)};
  const Query aq = service->resolve(a);
  std::vector<int64_t> allowed;  // beams in the allow list, in beam order; an allowed item outside the beams is not returned
  for (int64_t id : all.ids)
    if (std::binary_search(aq.allow.begin(), aq.allow.end(), id)) allowed.push_back(id);
  EXPECT_EQ(service->rank({&aq}).front().ids, allowed);
}

TEST_F(GenerativeServeTest, KAboveTheBeamsIsRefusedNamingK) {
  auto service = LcRecFolder::get().service();
  RecommendRequest r = user_request(*service, 3, kBeams + 1);
  r.field = "requests[2]";
  try {
    service->resolve(r);
    FAIL() << "k above the beams was accepted";
  } catch (const seqrec::serve::ApiError& e) {
    EXPECT_EQ(e.status(), 400);
    EXPECT_NE(std::string(e.what()).find("requests[2].k: must be <= 12 for this generative model"), std::string::npos) << e.what();
  }
  // A faiss index has nothing to index.
  seqrec::serve::ServiceOptions o;
  o.checkpoint = LcRecFolder::get().folder();
  o.index.kind = "hnsw";
  o.load_generative = [](const std::string& f) { return LcRecFolder::get().load(f, 8); };
  ASSERT_THROWS_WITH(seqrec::serve::RecommenderService(service_data(), o), "serve.index.kind: 'hnsw'");
}

// Over HTTP: answers equal `seqrec recommend --checkpoint <folder>`, the batch route, k refused with
// 400, /healthz, and a reload of the folder.
TEST_F(GenerativeServeTest, HttpAnswersEqualSeqrecRecommend) {
  seqrec::serve::ServeOptions options;
  options.threads = 4;
  options.max_wait_us = 2000;
  RunningServer server(LcRecFolder::get().service(), options);
  const auto& s = server.service();
  const std::string folder = LcRecFolder::get().folder();
  const std::string u = s.data().users.raw_id(17);
  const std::vector<std::string> history = {s.data().catalog.raw_id(4), s.data().catalog.raw_id(9), s.data().catalog.raw_id(33)};
  auto [status, body] = post_json(server.port(), "/v1/recommend", {{"user", u}, {"k", 5}, {"exclude_history", false}});
  EXPECT_EQ(status, 200) << body.dump();
  expect_items_equal(body, recommend_rows("--checkpoint " + folder + " --user " + u + " --k 5"), "user");
  std::tie(status, body) = post_json(server.port(), "/v1/recommend", {{"history", history}, {"k", 8}, {"exclude_history", false}});
  EXPECT_EQ(status, 200) << body.dump();
  const auto rows = recommend_rows("--checkpoint " + folder + " --history " + history[0] + "," + history[1] + "," + history[2] + " --k 8");
  expect_items_equal(body, rows, "history");

  json requests = json::array({{{"user", u}, {"k", 5}, {"exclude_history", false}},
                               {{"history", history}, {"k", 8}, {"exclude_history", false}}});
  std::tie(status, body) = post_json(server.port(), "/v1/recommend/batch", {{"requests", requests}});
  ASSERT_EQ(status, 200) << body.dump();
  expect_items_equal(body["results"][1], rows, "batch");

  std::tie(status, body) = post_json(server.port(), "/v1/recommend/batch",
                                     {{"requests", {{{"user", u}}, {{"user", u}, {"k", kBeams + 1}}}}});
  EXPECT_EQ(status, 400);
  EXPECT_NE(body.dump().find("requests[1].k: must be <= 12"), std::string::npos) << body.dump();

  auto c = server.client();
  auto health = c.Get("/healthz");
  ASSERT_TRUE(health);
  EXPECT_EQ(json::parse(health->body).at("index"), "lcrec beam search (12 beams, trie)");
  auto reload = c.Post("/admin/reload", "", "application/json");
  ASSERT_TRUE(reload);
  EXPECT_EQ(reload->status, 200) << reload->body;
  std::tie(status, body) = post_json(server.port(), "/v1/recommend", {{"history", history}, {"k", 8}, {"exclude_history", false}});
  EXPECT_EQ(body.at("model_version"), 2);
  expect_items_equal(body, rows, "after reload");
}

// Concurrent clients through the micro-batcher (two workers, so two batches contend for the one
// model): batches of several prompts form, and every client gets the beams of its own prompt.
TEST_F(GenerativeServeTest, ConcurrentRequestsShareBeamSearchesAndGetTheirOwnBeams) {
  seqrec::serve::ServeOptions options;
  options.threads = 12;
  options.workers = 2;
  options.max_wait_us = 20000;
  RunningServer server(LcRecFolder::get().service(), options);
  const auto& s = server.service();
  constexpr int kClients = 10;
  std::vector<json> bodies, answers(kClients);
  std::vector<std::vector<int64_t>> want(kClients);
  for (int c = 0; c < kClients; ++c) {
    json history = json::array();
    for (int i = 0; i < 1 + c % 4; ++i) history.push_back(s.data().catalog.raw_id(1 + (c * 13 + i * 7) % 80));
    bodies.push_back({{"history", history}, {"k", 6}, {"exclude_history", false}});
    RecommendRequest r;
    for (const auto& id : history) r.history.push_back(id.get<std::string>());
    r.k = 6;
    r.exclude_history = false;
    const Query q = s.resolve(r);
    want[c] = s.rank({&q}).front().ids;
  }
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c)
    clients.emplace_back([&, c] { answers[c] = post_json(server.port(), "/v1/recommend", bodies[c]).second; });
  for (auto& t : clients) t.join();
  for (int c = 0; c < kClients; ++c) {
    ASSERT_TRUE(answers[c].contains("items")) << c << ": " << answers[c].dump();
    std::vector<int64_t> got;
    for (const auto& item : answers[c]["items"]) got.push_back(s.data().catalog.find(item.at("id").get<std::string>()));
    EXPECT_EQ(got, want[c]) << "client " << c;
  }
  auto metrics = server.client().Get("/metrics");
  ASSERT_TRUE(metrics);
  // Fewer beam searches than the kClients queries: batches formed (the reference ranks above bypass the batcher).
  const std::string text = metrics->body;
  const auto at = text.find("seqrec_batch_size_count ");
  ASSERT_NE(at, std::string::npos) << text;
  EXPECT_LT(std::stoll(text.substr(at + 24)), kClients) << text;
}

// The binary: `seqrec serve --checkpoint <folder>` reads the folder's config and answers as
// `seqrec recommend`; an index over a generative model is a config error.
TEST_F(GenerativeServeTest, TheServeBinaryServesAnLcRecFolder) {
  const std::string folder = LcRecFolder::get().folder();
  const auto catalog = data::ItemCatalog::load(ServeData::get().dir());
  const std::vector<std::string> history = {catalog.raw_id(11), catalog.raw_id(12)};
  {
    ServeProcess serve({"--checkpoint", folder}, ServeData::get().temp().file("lcrec_serve.stderr"));
    ASSERT_GT(serve.port(), 0) << serve.err();
    auto [status, body] = post_json(serve.port(), "/v1/recommend", {{"history", history}, {"k", 6}, {"exclude_history", false}});
    EXPECT_EQ(status, 200) << body.dump();
    expect_items_equal(body, recommend_rows("--checkpoint " + folder + " --history " + history[0] + "," + history[1] + " --k 6"),
                       "binary");
    EXPECT_EQ(serve.stop(), 0) << serve.err();
  }
  seqrec::testing::TempDir tmp;
  const auto r = seqrec::testing::cli::run_seqrec("serve --checkpoint " + folder + " --index hnsw --port 0", tmp);
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_NE(r.err.find("serve.index.kind: 'hnsw'"), std::string::npos) << r.err;
  const auto cache = seqrec::testing::cli::run_seqrec("serve --checkpoint " + folder + " --token-cache " + tmp.path(), tmp);
  EXPECT_EQ(cache.code, 2) << cache.err;
  EXPECT_NE(cache.err.find("--token-cache: " + folder + " is a generative model"), std::string::npos) << cache.err;
}

}  // namespace
