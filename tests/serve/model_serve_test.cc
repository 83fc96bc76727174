// seqrec serve for the models that carry more than weights: HLLM (the item LLM embeds the
// catalogue's texts once at load), PerSRec with a token cache (per-user state, user requests
// only) and LSVCR (two histories; the next-video task). Answers equal `seqrec recommend` for the
// same checkpoint, data and cache.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>

#include "seqrec/data/item_catalog.h"

#include "cli/lsvcr_cli_support.h"
#include "llm/tokenizer_fixtures.h"
#include "serve/http_support.h"

namespace {

using namespace seqrec;
using namespace seqrec::testing::serve;
using nlohmann::json;
using seqrec::testing::TempDir;
using seqrec::testing::cli::run_seqrec;

// HLLM over a small synthetic set whose titles prepare tokenised (item_tokens.bin), random init.
TEST(ModelServeTest, HllmAnswersEqualSeqrecRecommend) {
  torch::set_num_threads(1);
  TempDir dir;
  auto t = [&](const std::string& name) { return dir.file(name); };
  std::filesystem::create_directories(t("tok"));
  dir.write("tok/tokenizer.json", seqrec::testing::tiny_byte_level().dump());
  const std::string model_yaml =
      "name: hllm\n"
      "item_llm: {config: {vocab_size: 263, hidden_size: 16, intermediate_size: 32, num_hidden_layers: 1, "
      "num_attention_heads: 2}}\n"
      "user_llm: {config: {vocab_size: 1, hidden_size: 16, intermediate_size: 32, num_hidden_layers: 1, "
      "num_attention_heads: 2}}\n";
  dir.write("hllm.yaml", "synth:\n  num_users: 60\n  num_items: 40\n  max_seq_len: 30\n  seed: 5\n  output: " + t("raw") +
                             "\nprepare:\n  input: " + t("raw/interactions.csv") + "\n  format: csv\n  items: " +
                             t("raw/items.csv") + "\n  items_format: table\n  output: " + t("data") +
                             "\n  item_text: {tokenizer: " + t("tok") +
                             ", text_keys: [title, tag], max_text_length: 12, prompt: ''}\n");
  const auto synth = run_seqrec("synth --config " + t("hllm.yaml"), dir);
  ASSERT_EQ(synth.code, 0) << synth.err;
  const auto prep = run_seqrec("prepare --config " + t("hllm.yaml"), dir);
  ASSERT_EQ(prep.code, 0) << prep.err;
  const std::string data_dir = t("data"), ckpt = t("hllm.safetensors");
  {
    models::ModelContext ctx;
    ctx.num_items = data::ItemCatalog::load(data_dir).num_items();
    ctx.max_seq_len = 10;
    ctx.data_dir = data_dir;
    torch::manual_seed(7);
    auto model = models::make_model(config::ConfigNode::parse(model_yaml), ctx);
    train::save_checkpoint(ckpt, *model, model_yaml, ctx);
  }
  seqrec::serve::ServiceOptions o;
  o.checkpoint = ckpt;
  auto service = std::make_unique<seqrec::serve::RecommenderService>(
      seqrec::serve::ServiceData{data_dir, data::ItemCatalog::load(data_dir), data::UserMap::load(data_dir),
                                 data::InteractionStore::open(data_dir + "/interactions.bin")},
      o);
  RunningServer server(std::move(service), seqrec::serve::ServeOptions{});
  const auto& s = server.service();
  const std::string base = "--checkpoint " + ckpt + " --data " + data_dir;
  for (int64_t u : {0, 59}) {
    const std::string user = s.data().users.raw_id(u);
    auto [status, body] = post_json(server.port(), "/v1/recommend", {{"user", user}, {"k", 6}});
    EXPECT_EQ(status, 200) << body.dump();
    expect_items_equal(body, recommend_rows(base + " --user " + user + " --k 6"), "hllm user " + user);
  }
  const std::vector<std::string> history = {s.data().catalog.raw_id(2), s.data().catalog.raw_id(30)};
  auto [status, body] = post_json(server.port(), "/v1/recommend", {{"history", history}, {"k", 5}});
  EXPECT_EQ(status, 200) << body.dump();
  expect_items_equal(body, recommend_rows(base + " --history " + history[0] + "," + history[1] + " --k 5"), "hllm history");
}

// PerSRec (HSTU with 2 user tokens; window 14 old + 6 recent) with a token cache of every user
// (compress --split all, what recommend and serve install): `seqrec serve --token-cache` answers
// user requests, alone and batched, as `seqrec recommend --token-cache`, and refuses histories.
TEST(ModelServeTest, PersrecWithATokenCacheAnswersEqualSeqrecRecommend) {
  const std::string yaml =
      "name: hstu\nvariant: gr\nhidden_dim: 16\nnum_blocks: 1\nnum_heads: 2\ndropout: 0.2\n"
      "personalized:\n  number_of_user_tokens: 2\n  pretrain_item_num: 14\n  recent_item_num: 6\n";
  static_assert(kMaxLen == 14 + 6, "the PerSRec window is the fixture's max_seq_len");
  const std::string ckpt = ServeData::get().checkpoint("persrec", yaml, 9), data_dir = ServeData::get().dir();
  const std::string cache = ServeData::get().temp().file("persrec_cache");
  TempDir tmp;
  const auto comp = run_seqrec("compress --checkpoint " + ckpt + " --data " + data_dir + " --split all --out " + cache, tmp);
  ASSERT_EQ(comp.code, 0) << comp.err;
  ServeProcess serve({"--checkpoint", ckpt, "--data", data_dir, "--token-cache", cache},
                     ServeData::get().temp().file("persrec_serve.stderr"));
  ASSERT_GT(serve.port(), 0) << serve.err();
  const auto catalog = data::ItemCatalog::load(data_dir);
  const auto users = data::UserMap::load(data_dir);
  const std::string base = "--checkpoint " + ckpt + " --data " + data_dir + " --token-cache " + cache;
  json requests = json::array();
  std::vector<std::vector<std::pair<std::string, double>>> want;
  for (int64_t u : {0, 42, 150, 199}) {  // histories of 5..40 items: some longer than the window
    const std::string user = users.raw_id(u);
    want.push_back(recommend_rows(base + " --user " + user + " --k 7"));
    auto [status, body] = post_json(serve.port(), "/v1/recommend", {{"user", user}, {"k", 7}});
    EXPECT_EQ(status, 200) << body.dump();
    expect_items_equal(body, want.back(), "persrec user " + user);
    requests.push_back({{"user", user}, {"k", 7}});
  }
  auto [status, body] = post_json(serve.port(), "/v1/recommend/batch", {{"requests", requests}});
  ASSERT_EQ(status, 200) << body.dump();
  for (size_t i = 0; i < want.size(); ++i) expect_items_equal(body["results"][i], want[i], "persrec batch " + std::to_string(i));
  std::tie(status, body) = post_json(serve.port(), "/v1/recommend", {{"history", {catalog.raw_id(1)}}});
  EXPECT_EQ(status, 400);
  EXPECT_NE(body.dump().find("history: this model keeps per-user state"), std::string::npos) << body.dump();
  EXPECT_EQ(serve.stop(), 0) << serve.err();
}

// LSVCR stage 2: `seqrec serve` answers the next-video task over the videos (both of the user's
// histories for a "user" request, the videos given for a "history" one), alone and batched (rows of
// different lengths padded together), as `seqrec recommend` does; deny lists apply as for any model.
TEST(ModelServeTest, LsvcrNextVideosEqualSeqrecRecommend) {
  TempDir dir;
  seqrec::testing::cli::make_small_lsvcr_data(dir, "commenter");
  if (HasFatalFailure()) return;
  const std::string ckpt = dir.file("s2/best.safetensors");
  const auto trained = run_seqrec("train --config " + std::string(SEQREC_SOURCE_DIR) + "/configs/lsvcr/synthetic.yaml"
                                  " --set data.dir=" + dir.file("data") + " --set lsvcr.video_title_emb=" +
                                  dir.file("v.safetensors") + " --set lsvcr.comment_emb=" + dir.file("c.safetensors") +
                                  " --set model.max_history=6 --set model.max_position=12 --set model.hidden_dim=16"
                                  " --set model.ffn_dim=32 --set model.text_hidden_dim=16 --set model.text_dim=16"
                                  " --set train.epochs=1 --set train.threads=1 --set train.out_dir=" + dir.file("s2"), dir);
  ASSERT_EQ(trained.code, 0) << trained.err;
  ServeProcess serve({"--checkpoint", ckpt}, dir.file("serve.stderr"));
  ASSERT_GT(serve.port(), 0) << serve.err();
  const auto videos = data::ItemCatalog::load(dir.file("data/videos"));
  const auto users = data::UserMap::load(dir.file("data"));
  const std::string base = "--checkpoint " + ckpt;
  json requests = json::array();
  std::vector<std::vector<std::pair<std::string, double>>> want;
  ASSERT_EQ(users.raw_id(40), "commenter");  // no video, one comment: answered from the comment
  for (int64_t u : {0, 7, 21, 39, 40}) {
    const std::string user = users.raw_id(u);
    want.push_back(recommend_rows(base + " --user " + user + " --k 5"));
    auto [status, body] = post_json(serve.port(), "/v1/recommend", {{"user", user}, {"k", 5}});
    EXPECT_EQ(status, 200) << body.dump();
    expect_items_equal(body, want.back(), "lsvcr user " + user);
    requests.push_back({{"user", user}, {"k", 5}});
  }
  auto [status, body] = post_json(serve.port(), "/v1/recommend/batch", {{"requests", requests}});
  ASSERT_EQ(status, 200) << body.dump();
  for (size_t i = 0; i < want.size(); ++i) expect_items_equal(body["results"][i], want[i], "lsvcr batch " + std::to_string(i));
  const std::vector<std::string> history = {videos.raw_id(3), videos.raw_id(9)};
  auto rows = recommend_rows(base + " --history '" + history[0] + " " + history[1] + "' --k 6");
  std::tie(status, body) = post_json(serve.port(), "/v1/recommend", {{"history", history}, {"k", 6}});
  EXPECT_EQ(status, 200) << body.dump();
  expect_items_equal(body, rows, "lsvcr history");
  std::tie(status, body) = post_json(serve.port(), "/v1/recommend", {{"history", history}, {"k", 5}, {"deny", {rows[0].first}}});
  EXPECT_EQ(status, 200) << body.dump();
  expect_items_equal(body, std::vector<std::pair<std::string, double>>(rows.begin() + 1, rows.end()), "lsvcr deny");

  // POST /v1/comments: a video's comment section for a user, as recommend --video prints it.
  const auto comments = data::ItemCatalog::load(dir.file("data/comments"));
  const std::string user = users.raw_id(7), video = videos.raw_id(2);
  std::tie(status, body) = post_json(serve.port(), "/v1/comments", {{"user", user}, {"video", video}, {"k", 100}});
  EXPECT_EQ(status, 200) << body.dump();
  expect_items_equal(body, recommend_rows(base + " --user " + user + " --video " + video + " --k 100"), "lsvcr comments");
  const std::vector<std::string> engaged = {comments.raw_id(1), comments.raw_id(5)};
  std::tie(status, body) = post_json(serve.port(), "/v1/comments",
                                     {{"history", history}, {"comment_history", engaged}, {"video", video}, {"k", 4}});
  EXPECT_EQ(status, 200) << body.dump();
  expect_items_equal(body,
                     recommend_rows(base + " --history '" + history[0] + " " + history[1] + "' --comment-history '" +
                                    engaged[0] + " " + engaged[1] + "' --video " + video + " --k 4"),
                     "lsvcr comments of a history");
  std::tie(status, body) = post_json(serve.port(), "/v1/comments", {{"user", user}, {"video", "nope"}});
  EXPECT_EQ(status, 404) << body.dump();
  EXPECT_NE(body.dump().find("video: unknown video id 'nope'"), std::string::npos) << body.dump();
  std::tie(status, body) = post_json(serve.port(), "/v1/comments", {{"user", user}});
  EXPECT_EQ(status, 400) << body.dump();
  EXPECT_NE(body.dump().find("video: required field is missing"), std::string::npos) << body.dump();
  EXPECT_EQ(serve.stop(), 0) << serve.err();
}

}  // namespace
