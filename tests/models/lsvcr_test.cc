// RecCom (LSVCR's SR model): masks, shapes and masking of the mix blocks and both heads, the
// cosine / temperature score, and the pinned parameter names.
#include "seqrec/models/lsvcr.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>

namespace seqrec::models {
namespace {

constexpr int64_t kVideos = 6, kComments = 9, kTextDim = 5;

LsvcrOptions tiny(bool comments = true) {
  LsvcrOptions o;
  o.num_videos = kVideos;
  o.num_comments = kComments;
  o.text_input_dim = kTextDim;
  o.max_history = 4;
  o.max_position = 8;
  o.hidden_dim = 8;
  o.num_heads = 2;
  o.ffn_dim = 16;
  o.text_hidden_dim = 12;
  o.text_dim = 6;
  o.use_comment_history = comments;
  return o;
}

Lsvcr make_model(bool comments = true) {
  torch::manual_seed(3);
  Lsvcr m(tiny(comments));
  LsvcrTextTables t;
  t.video_title = torch::randn({kVideos + 1, kTextDim});
  t.comment_text = torch::randn({kComments + 1, kTextDim});
  t.video_title[0].zero_();
  t.comment_text[0].zero_();
  t.comment_video = torch::tensor({0, 1, 1, 2, 2, 3, 4, 5, 6, 6}, torch::kInt64);
  t.video_hot_comment = torch::tensor({0, 1, 3, 5, 6, 7, 8}, torch::kInt64);
  m->set_text_tables(t);
  m->eval();
  return m;
}

LsvcrBatch batch(std::vector<int64_t> videos, std::vector<int64_t> comments, int64_t L = 4) {
  videos.resize(L, 0);
  comments.resize(L, 0);
  LsvcrBatch b;
  b.video_ids = torch::tensor(videos, torch::kInt64).view({1, L});
  b.comment_ids = torch::tensor(comments, torch::kInt64).view({1, L});
  return b;
}

LsvcrBatch cat(const LsvcrBatch& a, const LsvcrBatch& b) {
  return {torch::cat({a.video_ids, b.video_ids}), torch::cat({a.comment_ids, b.comment_ids}), {}, {}};
}

TEST(LsvcrTest, KeyMaskKeepsRealEventsAndSlotZeroOfEmptyRows) {
  auto keys = lsvcr_key_mask(torch::tensor({3, 5, 0, 0, 0, 0}, torch::kInt64).view({2, 3}));
  EXPECT_TRUE(keys.equal(torch::tensor({true, true, false, true, false, false}).view({2, 3})));
  auto causal = lsvcr_causal_mask(keys);
  ASSERT_EQ(causal.sizes(), (std::vector<int64_t>{2, 3, 3}));
  EXPECT_TRUE(causal[0].equal(torch::tensor({true, false, false, true, true, false, true, true, false}).view({3, 3})));
  EXPECT_EQ(causal[1].sum().item<int64_t>(), 3);  // every query row sees slot 0 only
}

TEST(LsvcrTest, EncodeAndHeadsHaveTheDocumentedShapesAndAreFiniteOnEmptyHistories) {
  Lsvcr m = make_model();
  auto b = cat(batch({1, 2, 3}, {4, 2}), batch({}, {}));  // second user: both histories empty
  torch::NoGradGuard g;
  LsvcrStates s = m->encode(b);
  EXPECT_EQ(s.video.sizes(), (std::vector<int64_t>{2, 4, 8}));
  EXPECT_EQ(s.comment.sizes(), (std::vector<int64_t>{2, 4, 8}));
  auto uv = m->video_user(s), uc = m->comment_user(s, torch::tensor({2, 5}, torch::kInt64));
  EXPECT_EQ(uv.sizes(), (std::vector<int64_t>{2, 8}));
  EXPECT_EQ(uc.sizes(), (std::vector<int64_t>{2, 8}));
  EXPECT_TRUE(torch::isfinite(uv).all().item<bool>());
  EXPECT_TRUE(torch::isfinite(uc).all().item<bool>());
  EXPECT_EQ(m->score(uv, m->video_embedding(torch::arange(1, kVideos + 1))).sizes(), (std::vector<int64_t>{2, kVideos}));
  EXPECT_EQ(m->score(uc, m->comment_text(torch::tensor({1, 2, 3, 4, 5, 6}).view({2, 3}))).sizes(),
            (std::vector<int64_t>{2, 3}));
}

TEST(LsvcrTest, MixBlocksAttendToEveryRealEventOfTheOtherHistoryAndNoPadding) {
  Lsvcr m = make_model();
  torch::NoGradGuard g;
  LsvcrStates s4 = m->encode(batch({1, 2}, {4, 2, 7}));
  // Padding in either history changes no real state.
  LsvcrStates s6 = m->encode(batch({1, 2}, {4, 2, 7}, 6));
  EXPECT_TRUE(torch::allclose(s4.video.slice(1, 0, 2), s6.video.slice(1, 0, 2), 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(s4.comment.slice(1, 0, 3), s6.comment.slice(1, 0, 3), 1e-5, 1e-6));
  // Bidirectional: the newest comment reaches the oldest video state (through video_mix), and the
  // newest video the oldest comment state (through comment_mix).
  LsvcrStates sc = m->encode(batch({1, 2}, {4, 2, 8}));
  EXPECT_FALSE(torch::allclose(s4.video[0][0], sc.video[0][0], 1e-4, 1e-5));
  LsvcrStates sv = m->encode(batch({1, 3}, {4, 2, 7}));
  EXPECT_FALSE(torch::allclose(s4.comment[0][0], sv.comment[0][0], 1e-4, 1e-5));
}

TEST(LsvcrTest, HistoryEncodersAreCausal) {
  Lsvcr m = make_model(/*comments=*/false);  // without the mix, causality is visible on the states
  torch::NoGradGuard g;
  LsvcrStates a = m->encode(batch({1, 2, 3}, {}));
  LsvcrStates b = m->encode(batch({1, 2, 6}, {}));
  EXPECT_TRUE(torch::allclose(a.video.slice(1, 0, 2), b.video.slice(1, 0, 2), 1e-5, 1e-6));
  EXPECT_FALSE(torch::allclose(a.video[0][2], b.video[0][2], 1e-4, 1e-5));
  EXPECT_FALSE(a.comment.defined());
  EXPECT_EQ(m->comment_user(a, torch::tensor({2}, torch::kInt64)).sizes(), (std::vector<int64_t>{1, 8}));
}

TEST(LsvcrTest, PoolingHeadsIgnorePaddingAndTheCommentHeadDependsOnTheCurrentVideo) {
  Lsvcr m = make_model();
  torch::NoGradGuard g;
  LsvcrStates s4 = m->encode(batch({1, 2}, {4, 2}));
  LsvcrStates s6 = m->encode(batch({1, 2}, {4, 2}, 6));
  const auto video = torch::tensor({3}, torch::kInt64);
  EXPECT_TRUE(torch::allclose(m->video_user(s4), m->video_user(s6), 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(m->comment_user(s4, video), m->comment_user(s6, video), 1e-5, 1e-6));
  EXPECT_FALSE(torch::allclose(m->comment_user(s4, video), m->comment_user(s4, torch::tensor({5}, torch::kInt64)), 1e-4, 1e-5));
  // The pooled vector is a convex combination of the real video states.
  auto u = m->video_user(s4)[0];
  auto states = s4.video[0].slice(0, 0, 2);                                   // [2, D]
  auto w = std::get<0>(torch::linalg_lstsq(states.t(), u.unsqueeze(1), {}, {})).squeeze(1);  // [2]
  EXPECT_NEAR(w.sum().item<float>(), 1.0f, 1e-3);
  EXPECT_GE(w.min().item<float>(), -1e-4);
}

TEST(LsvcrTest, ScoreIsCosineOverTemperature) {
  Lsvcr m = make_model();
  auto user = torch::tensor({3.0f, 4.0f}).view({1, 2});
  auto cand = torch::tensor({6.0f, 8.0f, 0.0f, 2.0f, -1.0f, 0.0f}).view({3, 2});
  auto s = m->score(user, cand);
  EXPECT_NEAR(s[0][0].item<float>(), 1.0 / 0.07, 1e-3);
  EXPECT_NEAR(s[0][1].item<float>(), 0.8 / 0.07, 1e-3);
  EXPECT_NEAR(s[0][2].item<float>(), -0.6 / 0.07, 1e-3);
  EXPECT_TRUE(torch::allclose(m->score(user, cand.unsqueeze(0)), s));
}

TEST(LsvcrTest, GateStartsAtOneAndTheVideoEmbeddingIsGatedIdPlusText) {
  Lsvcr m = make_model();
  torch::NoGradGuard g;
  const auto ids = torch::tensor({2, 4}, torch::kInt64);
  EXPECT_FLOAT_EQ(m->named_parameters()["id_gate"].item<float>(), 1.0f);
  m->named_parameters()["id_gate"].fill_(0.5);
  EXPECT_TRUE(torch::allclose(m->video_embedding(ids), 0.5 * m->video_id_embedding(ids) + m->video_text(ids)));
}

TEST(LsvcrTest, ParameterNamesArePinned) {
  Lsvcr m = make_model();
  std::vector<std::string> names;
  for (const auto& p : m->named_parameters()) {
    const std::string& k = p.key();
    if (k.find("encoder.1.") != std::string::npos) continue;  // layer 1 repeats layer 0
    if (k.find("encoder.0.") == std::string::npos || k.rfind("video_encoder.0.", 0) == 0) names.push_back(k);
  }
  std::sort(names.begin(), names.end());
  const std::vector<std::string> expected = {
      "comment_attention.k_proj.bias", "comment_attention.k_proj.weight", "comment_attention.out_proj.bias",
      "comment_attention.out_proj.weight", "comment_attention.q_proj.bias", "comment_attention.q_proj.weight",
      "comment_attention.v_proj.bias", "comment_attention.v_proj.weight", "comment_fusion.bias", "comment_fusion.weight",
      "comment_input_norm.bias", "comment_input_norm.weight", "comment_mix.attention.k_proj.bias",
      "comment_mix.attention.k_proj.weight", "comment_mix.attention.out_proj.bias", "comment_mix.attention.out_proj.weight",
      "comment_mix.attention.q_proj.bias", "comment_mix.attention.q_proj.weight", "comment_mix.attention.v_proj.bias",
      "comment_mix.attention.v_proj.weight", "comment_mix.attention_norm.bias", "comment_mix.attention_norm.weight",
      "comment_mix.ffn_in.bias", "comment_mix.ffn_in.weight", "comment_mix.ffn_norm.bias", "comment_mix.ffn_norm.weight",
      "comment_mix.ffn_out.bias", "comment_mix.ffn_out.weight", "comment_position.weight", "id_embedding.weight",
      "id_gate", "llm_adapter.bias", "llm_adapter.weight", "llm_emb_mlp.0.bias", "llm_emb_mlp.0.weight",
      "llm_emb_mlp.2.bias", "llm_emb_mlp.2.weight", "pooling_proj.bias", "pooling_proj.weight", "pooling_score.weight",
      "text_fusion.bias", "text_fusion.weight", "video_encoder.0.attention.k_proj.bias",
      "video_encoder.0.attention.k_proj.weight", "video_encoder.0.attention.out_proj.bias",
      "video_encoder.0.attention.out_proj.weight", "video_encoder.0.attention.q_proj.bias",
      "video_encoder.0.attention.q_proj.weight", "video_encoder.0.attention.v_proj.bias",
      "video_encoder.0.attention.v_proj.weight", "video_encoder.0.attention_norm.bias",
      "video_encoder.0.attention_norm.weight", "video_encoder.0.ffn_in.bias", "video_encoder.0.ffn_in.weight",
      "video_encoder.0.ffn_norm.bias", "video_encoder.0.ffn_norm.weight", "video_encoder.0.ffn_out.bias",
      "video_encoder.0.ffn_out.weight", "video_fusion.bias", "video_fusion.weight", "video_input_norm.bias",
      "video_input_norm.weight", "video_mix.attention.k_proj.bias", "video_mix.attention.k_proj.weight",
      "video_mix.attention.out_proj.bias", "video_mix.attention.out_proj.weight", "video_mix.attention.q_proj.bias",
      "video_mix.attention.q_proj.weight", "video_mix.attention.v_proj.bias", "video_mix.attention.v_proj.weight",
      "video_mix.attention_norm.bias", "video_mix.attention_norm.weight", "video_mix.ffn_in.bias",
      "video_mix.ffn_in.weight", "video_mix.ffn_norm.bias", "video_mix.ffn_norm.weight", "video_mix.ffn_out.bias",
      "video_mix.ffn_out.weight", "video_position.weight"};
  EXPECT_EQ(names, expected);
  EXPECT_EQ(m->named_parameters().size(), expected.size() + 16 * 3);  // 3 more encoder layers of 16 tensors
}

}  // namespace
}  // namespace seqrec::models
