// Molar: post-alignment loss and gradients, the switch back to HLLM, image soft tokens at [Img].
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>

#include "llm/tokenizer_fixtures.h"
#include "seqrec/common/error.h"
#include "seqrec/config/config_node.h"
#include "seqrec/data/item_catalog.h"
#include "seqrec/data/item_text.h"
#include "seqrec/llm/tokenizer.h"
#include "seqrec/models/hllm.h"
#include "seqrec/models/molar.h"
#include "seqrec/models/sasrec.h"
#include "seqrec/train/losses.h"
#include "support.h"

namespace seqrec::models {
namespace {

using seqrec::testing::TempDir;

// Five items with short titles and a byte-level tokenizer (token ids = UTF-8 bytes); with
// `image_words`, Molar's words around the image: "...[Text]. Item Image: [Img]. [Cur_Item]".
struct MolarFixture {
  TempDir dir;
  std::shared_ptr<const data::ItemTokens> tokens;
  explicit MolarFixture(bool image_words = false) {
    dir.write("items.tsv",
              "item_id\traw_id\ttitle\n"
              "1\ta\tRed lipstick\n"
              "2\tb\tBlue nail polish\n"
              "3\tc\tSoap\n"
              "4\td\tDry shampoo\n"
              "5\te\tRose soap\n");
    dir.write("tokenizer.json", seqrec::testing::tiny_byte_level().dump());
    data::ItemTextOptions o;
    o.tokenizer = dir.path();
    o.prompt = "Item: ";
    o.max_text_length = 20;
    if (image_words) {
      o.image_before = ". Item Image: ";
      o.image_after = ". ";
    }
    tokens = std::make_shared<const data::ItemTokens>(
        data::ItemTokens::build(data::ItemCatalog::load(dir.path()), *llm::load_tokenizer(dir.path()), o));
  }
};

HllmOptions tiny_hllm(int64_t vocab) {
  HllmOptions o;
  o.num_items = 5;
  o.max_seq_len = 6;
  llm::DecoderConfig c;
  c.vocab_size = vocab;
  c.hidden_size = 16;
  c.intermediate_size = 24;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 4;
  c.tie_word_embeddings = true;
  o.item_llm.config = c;
  o.user_llm.config = c;
  o.item_token_std = 0.5;
  return o;
}

std::shared_ptr<MolarImpl> make_molar(const MolarFixture& f, MolarOptions o, torch::Tensor images = {}) {
  o.hllm = tiny_hllm(f.tokens->vocab_size());
  torch::manual_seed(3);
  return std::make_shared<MolarImpl>(o, f.tokens, images);
}

data::SequenceBatch tiny_batch() {
  data::SequenceBatch b;
  b.item_ids = torch::tensor({{0, 1, 2, 3}, {4, 5, 1, 2}, {0, 0, 3, 5}}, torch::kLong);
  b.targets = torch::tensor({{0, 2, 3, 4}, {5, 1, 2, 3}, {0, 0, 5, 1}}, torch::kLong);
  b.negatives = torch::tensor({{{0}, {5}, {1}, {2}}, {{3}, {4}, {5}, {4}}, {{0}, {0}, {2}, {4}}}, torch::kLong);
  b.user_ids = torch::tensor({0, 1, 2}, torch::kLong);
  b.position_offset = 2;
  return b;
}

SequenceRecommender tiny_sasrec(int64_t dim) {
  SasRecOptions o;
  o.num_items = 5;
  o.max_seq_len = 3;  // shorter than Molar's windows: it sees the last 3 items
  o.hidden_dim = dim;
  o.num_blocks = 1;
  o.dropout = 0;
  torch::manual_seed(9);
  return std::make_shared<SasRecImpl>(o);
}

TEST(MolarTest, PostAlignmentLossMatchesAHandComputation) {
  auto u_con = torch::tensor({{2.f, 0.f}, {0.f, 1.f}});   // cosines use the directions only
  auto u_id = torch::tensor({{0.6f, 0.8f}, {-1.f, 0.f}});
  const double tau = 0.5;
  const double loss = post_alignment_loss(u_con, u_id, tau).item<double>();
  // S = [[0.6, -1], [0.8, 0]] / tau.
  const double s00 = 0.6 / tau, s01 = -1 / tau, s10 = 0.8 / tau, s11 = 0.0;
  auto ce = [](double right, double other) { return -std::log(std::exp(right) / (std::exp(right) + std::exp(other))); };
  const double rows = (ce(s00, s01) + ce(s11, s10)) / 2;  // content -> ID
  const double cols = (ce(s00, s10) + ce(s11, s01)) / 2;  // ID -> content
  EXPECT_NEAR(loss, (rows + cols) / 2, 1e-6);
  // Both directions count: swapping the arguments gives the same loss.
  EXPECT_NEAR(post_alignment_loss(u_id, u_con, tau).item<double>(), loss, 1e-6);
}

TEST(MolarTest, WithoutImagesAndAlignmentItIsExactlyHllm) {
  MolarFixture f;
  auto molar = make_molar(f, MolarOptions{});
  torch::manual_seed(3);
  auto hllm = std::make_shared<HllmImpl>(tiny_hllm(f.tokens->vocab_size()), f.tokens);
  std::vector<std::string> a, b;
  for (const auto& p : molar->named_parameters()) a.push_back(p.key());
  for (const auto& p : hllm->named_parameters()) b.push_back(p.key());
  EXPECT_EQ(a, b);
  config::LossOptions lo;
  lo.name = config::LossName::kBce;
  torch::manual_seed(5);
  auto lm = train::compute_loss(*molar, tiny_batch(), lo);
  torch::manual_seed(5);
  auto lh = train::compute_loss(*hllm, tiny_batch(), lo);
  EXPECT_EQ(lm.item<float>(), lh.item<float>());
  EXPECT_FALSE(molar->auxiliary_loss(tiny_batch(), molar->encode(tiny_batch())).defined());
}

TEST(MolarTest, AlignmentGradientsReachTheContentTowersAndNeverTheIdModel) {
  MolarFixture f;
  MolarOptions o;
  o.post_alignment.id_checkpoint = "id.ckpt";
  o.post_alignment.alpha = 0.5;
  o.post_alignment.tau = 0.1;
  o.post_alignment.id_dim = 8;  // differs from D = 16: a projection
  auto molar = make_molar(f, o);
  auto sasrec = tiny_sasrec(8);
  molar->set_id_model(sasrec, 3);
  molar->train();
  auto batch = tiny_batch();
  auto hidden = molar->encode(batch);
  auto aux = molar->auxiliary_loss(batch, hidden);
  // By hand: the last column's content states, projected, against SASRec's last states.
  auto u_con = molar->align_projection->forward(hidden.select(1, 3));
  auto u_id = molar->id_user_embeddings(batch);
  ASSERT_EQ(u_id.sizes(), (std::vector<int64_t>{3, 8}));
  EXPECT_NEAR(aux.item<double>(), 0.5 * post_alignment_loss(u_con, u_id, 0.1).item<double>(), 1e-6);
  // compute_loss = the configured loss + the alignment term.
  config::LossOptions lo;
  lo.name = config::LossName::kBce;
  torch::manual_seed(5);
  auto total = train::compute_loss(*molar, batch, lo);
  auto plain = make_molar(f, MolarOptions{});
  torch::manual_seed(5);
  auto base = train::compute_loss(*plain, batch, lo);
  EXPECT_NEAR(total.item<double>(), base.item<double>() + aux.item<double>(), 1e-5);
  molar->zero_grad();
  aux.backward();
  auto params = molar->named_parameters();
  for (const char* name : {"align_projection.weight", "user_llm.model.layers.0.self_attn.q_proj.weight",
                           "item_llm.model.layers.1.mlp.down_proj.weight", "item_llm.model.embed_tokens.weight",
                           "item_token"}) {
    const auto& g = params[name].grad();
    ASSERT_TRUE(g.defined()) << name;
    EXPECT_GT(g.abs().sum().item<double>(), 0.0) << name;
  }
  for (const auto& p : sasrec->named_parameters()) {
    EXPECT_FALSE(p.value().requires_grad()) << p.key();
    EXPECT_FALSE(p.value().grad().defined()) << p.key();
  }
  // The ID model is no part of Molar's state (not saved, not optimised).
  for (const auto& p : params) EXPECT_EQ(p.key().find("id_model"), std::string::npos) << p.key();
  // A wrong-size ID model is refused with the field to fix.
  ASSERT_THROWS_WITH(molar->set_id_model(tiny_sasrec(4), 3), "model.post_alignment.id_dim");
}

// DUEG's [User] slot: the state after item i equals the user LLM over [items 0..i, [User]] alone.
TEST(MolarTest, UserSlotAfterEveryItemEqualsTheUserLlmOverThatPrefixAlone) {
  MolarFixture f;
  MolarOptions o;
  o.user_token = true;
  auto m = make_molar(f, o);
  m->eval();
  torch::NoGradGuard no_grad;
  auto batch = tiny_batch();
  auto h = m->encode(batch);                                                           // [B, W, D]
  ASSERT_EQ(h.sizes(), (std::vector<int64_t>{3, 4, 16}));
  const int64_t d = 16;
  for (int64_t r = 0; r < 3; ++r) {
    for (int64_t i = 0; i < 4; ++i) {
      if (batch.item_ids[r][i].item<int64_t>() == 0) continue;
      // By hand: the raw embeddings of the prefix (padding = zeros, masked), then the slot at i + 1.
      std::vector<torch::Tensor> rows;
      std::vector<bool> valid;
      for (int64_t j = 0; j <= i; ++j) {
        const int64_t id = batch.item_ids[r][j].item<int64_t>();
        rows.push_back(id == 0 ? torch::zeros({1, d}) : m->embed_items({id}));
        valid.push_back(id != 0);
      }
      rows.push_back(m->user_slot_token.view({1, d}));
      auto kv = torch::ones({1, i + 2}, torch::kBool);
      for (int64_t j = 0; j <= i; ++j) kv[0][j] = static_cast<bool>(valid[j]);
      llm::DecoderInput in;
      in.inputs_embeds = torch::cat(rows, 0).unsqueeze(0);
      in.positions = (torch::arange(i + 2, torch::kLong) + batch.position_offset).unsqueeze(0);
      in.key_valid = kv;
      auto want = torch::nn::functional::normalize(m->user_llm->forward_hidden(in)[0][i + 1],
                                                   torch::nn::functional::NormalizeFuncOptions().dim(0).eps(1e-6));
      EXPECT_LT((h[r][i] - want).abs().max().item<double>(), 1e-5) << "row " << r << " item " << i;
    }
  }
  // The item states are not the slot's: without the slot (HLLM's reading) the outputs differ.
  auto plain = make_molar(f, MolarOptions{});
  plain->eval();
  EXPECT_GT((plain->encode(batch) - h).abs().max().item<double>(), 1e-3);
  // Eval of the newest position appends one slot: the same as the last column.
  batch.last_only = true;
  auto last = m->encode(batch);
  ASSERT_EQ(last.sizes(), (std::vector<int64_t>{3, 1, 16}));
  EXPECT_LT((last.select(1, 0) - h.select(1, 3)).abs().max().item<double>(), 1e-5);
}

TEST(MolarTest, UserSlotTrainsAndIsNamedInTheCheckpoint) {
  MolarFixture f;
  MolarOptions o;
  o.user_token = true;
  auto m = make_molar(f, o);
  m->train();
  config::LossOptions lo;
  lo.name = config::LossName::kBce;
  auto loss = train::compute_loss(*m, tiny_batch(), lo);
  loss.backward();
  auto params = m->named_parameters();
  ASSERT_TRUE(params.contains("user_slot_token"));
  EXPECT_EQ(params["user_slot_token"].sizes(), (std::vector<int64_t>{16}));
  const auto& g = params["user_slot_token"].grad();
  ASSERT_TRUE(g.defined());
  EXPECT_GT(g.abs().sum().item<double>(), 0.0);
  EXPECT_FALSE(make_molar(f, MolarOptions{})->named_parameters().contains("user_slot_token"));
}

// The item LLM by hand: [text][image words before][soft tokens][image words after][Cur_Item] with
// right-aligned positions.
torch::Tensor embed_by_hand(MolarImpl& m, const MolarFixture& f, int64_t id, const torch::Tensor& soft, bool text,
                            const torch::Tensor& positions = {}) {
  auto span = f.tokens->tokens(id);
  std::vector<int64_t> tok;
  if (text) tok.assign(span.begin(), span.end());
  const int64_t mlen = tok.size(), d = 16;
  auto words = [&](const std::vector<int32_t>& w) {
    return m.item_llm->model->embed_tokens(torch::tensor(std::vector<int64_t>(w.begin(), w.end()), torch::kLong));
  };
  auto parts = std::vector<torch::Tensor>{};
  if (mlen > 0) parts.push_back(m.item_llm->model->embed_tokens(torch::tensor(tok, torch::kLong)));  // [m, D]
  parts.push_back(words(f.tokens->image_before()));
  parts.push_back(soft);                                                                             // [S, D]
  parts.push_back(words(f.tokens->image_after()));
  parts.push_back(m.item_token.view({1, d}));
  auto x = torch::cat(parts, 0).unsqueeze(0);                                                        // [1, T, D]
  const int64_t t = x.size(1);
  auto pos = torch::arange(t, torch::kLong) + (f.tokens->max_text_length() - mlen);
  llm::DecoderInput in;
  in.inputs_embeds = x;
  in.positions = positions.defined() ? positions : pos.unsqueeze(0);
  return m.item_llm->forward_hidden(in)[0][t - 1];
}

TEST(MolarTest, ImageSoftTokensLandAtTheImgSlotBeforeTheItemSlot) {
  for (bool image_words : {false, true}) {
  SCOPED_TRACE(image_words ? "with the image words" : "without image words");
  MolarFixture f(image_words);
  ASSERT_EQ(f.tokens->image_before().size(), image_words ? 14u : 0u);
  torch::manual_seed(11);
  auto images = torch::randn({5, 6});
  for (auto inputs : {ItemInputs::kBoth, ItemInputs::kImage}) {
    MolarOptions o;
    o.inputs = inputs;
    o.image.tokens = 2;
    auto m = make_molar(f, o, images);
    m->eval();
    torch::NoGradGuard no_grad;
    std::vector<int64_t> ids{4, 1, 3};
    auto packed = m->embed_items(ids);                                                // [3, D]
    for (size_t i = 0; i < ids.size(); ++i) {
      auto soft = m->image_projector->forward(images[ids[i] - 1].unsqueeze(0)).view({2, 16});
      auto ref = embed_by_hand(*m, f, ids[i], soft, inputs == ItemInputs::kBoth);
      EXPECT_TRUE(torch::allclose(packed[i], ref, 1e-5, 1e-5)) << "item " << ids[i] << (packed[i] - ref).abs().max();
    }
    MolarOptions po = o;
    po.hllm = tiny_hllm(f.tokens->vocab_size());
    po.hllm.packed_items = false;
    torch::manual_seed(3);
    MolarImpl padded(po, f.tokens, images);
    auto pad = padded.embed_items(ids);
    EXPECT_TRUE(torch::allclose(packed, pad, 1e-5, 1e-5)) << (packed - pad).abs().max();
  }
  }
  // Text only has no image and so no image words: the words change nothing there.
  {
    MolarFixture plain(false), words(true);
    torch::NoGradGuard no_grad;
    auto a = make_molar(plain, MolarOptions{})->embed_items({1, 2}), b = make_molar(words, MolarOptions{})->embed_items({1, 2});
    EXPECT_TRUE(torch::equal(a, b));
  }
  // The image words change the embedding of an item with an image.
  {
    MolarFixture plain(false), words(true);
    MolarOptions o;
    o.inputs = ItemInputs::kBoth;
    torch::manual_seed(11);
    auto images = torch::randn({5, 6});
    torch::NoGradGuard no_grad;
    auto a = make_molar(plain, o, images)->embed_items({1}), b = make_molar(words, o, images)->embed_items({1});
    EXPECT_GT((a - b).abs().max().item<double>(), 1e-4);
  }
  MolarFixture f;
  torch::manual_seed(11);
  auto images = torch::randn({5, 6});
  // The image changes the item embedding; text only ignores it.
  MolarOptions both;
  both.inputs = ItemInputs::kBoth;
  auto other = images.clone();
  other[0] += 1;
  torch::NoGradGuard no_grad;
  auto a = make_molar(f, both, images)->embed_items({1}), b = make_molar(f, both, other)->embed_items({1});
  EXPECT_GT((a - b).abs().max().item<double>(), 1e-4);
}

// Each item's embedding equals the item LLM over its text with soft(item) [S, D] at the [Img] slot.
template <class Soft>
void expect_embeddings_with_soft_tokens(MolarImpl& m, const MolarFixture& f, const std::vector<int64_t>& ids, Soft soft) {
  torch::NoGradGuard no_grad;
  auto got = m.embed_items(ids);
  for (size_t i = 0; i < ids.size(); ++i) {
    auto ref = embed_by_hand(m, f, ids[i], soft(ids[i]), true);
    EXPECT_TRUE(torch::allclose(got[i], ref, 1e-5, 1e-5)) << "item " << ids[i] << ": " << (got[i] - ref).abs().max();
  }
}

// Training through the item embeddings gives each named parameter a non-zero gradient.
void expect_gradients_reach(MolarImpl& m, const std::vector<std::string>& names) {
  torch::GradMode::set_enabled(true);
  m.train();
  m.embed_items({1, 3}).sum().backward();
  for (const auto& name : names) {
    auto g = m.named_parameters()[name].grad();
    ASSERT_TRUE(g.defined()) << name;
    EXPECT_GT(g.abs().sum().item<double>(), 0.0) << name;
  }
}

TEST(MolarTest, VisionTowerPatchTokensAreTheSoftTokens) {
  MolarFixture f;
  MolarOptions o;
  o.inputs = ItemInputs::kBoth;
  o.image.has_vision = true;
  auto& v = o.image.vision.config;
  v.hidden_size = 8;
  v.intermediate_size = 16;
  v.num_layers = 1;
  v.num_heads = 2;
  v.image_size = 8;
  v.patch_size = 4;  // 4 patches (+ the class token, dropped)
  torch::manual_seed(13);
  auto pixels = torch::randn({5, 3, 8, 8});
  auto m = make_molar(f, o, pixels);
  m->eval();
  expect_embeddings_with_soft_tokens(*m, f, {2, 5}, [&](int64_t id) {
    auto patches = m->vision->forward(pixels[id - 1].unsqueeze(0)).narrow(1, 1, 4);   // [1, 4, 8]
    return m->image_projector->forward(patches).view({4, 16});
  });
  expect_gradients_reach(*m, {"vision.vision_model.encoder.layers.0.self_attn.q_proj.weight"});
}

// Both inputs, a scratch Qwen2-VL tower over 16 x 16 pictures: 4 x 4 patches of 4 pixels merged 2 x 2
// into 4 tokens of width 6.
MolarOptions with_qwen2_vl_tower() {
  MolarOptions o;
  o.inputs = ItemInputs::kBoth;
  o.image.has_vision = true;
  auto& v = o.image.vision.config;
  v.model_type = "qwen2_vl";
  v.hidden_size = 8;
  v.intermediate_size = 16;
  v.num_layers = 1;
  v.num_heads = 2;
  v.image_size = 16;
  v.patch_size = 4;
  v.layer_norm_eps = 1e-6;
  v.merger_size = 6;
  return o;
}

// A scratch Qwen2-VL tower: its merged tokens (4 per 16 x 16 picture: 4 x 4 patches of 4, merged
// 2 x 2) go through the projector to the soft tokens; gradients reach the tower.
TEST(MolarTest, Qwen2VlMergedTokensAreTheSoftTokens) {
  MolarFixture f;
  MolarOptions o = with_qwen2_vl_tower();
  auto& v = o.image.vision.config;
  torch::manual_seed(17);
  auto pixels = torch::randn({5, 3, 16, 16});
  auto m = make_molar(f, o, pixels);
  m->eval();
  expect_embeddings_with_soft_tokens(*m, f, {1, 4}, [&](int64_t id) {
    auto merged = m->vision->forward(pixels[id - 1].unsqueeze(0));   // [1, 4, 6]
    EXPECT_EQ(merged.sizes(), (std::vector<int64_t>{1, 4, 6}));
    return m->image_projector->forward(merged).view({4, 16});
  });
  expect_gradients_reach(*m, {"vision.visual.blocks.0.attn.qkv.weight", "vision.visual.patch_embed.proj.weight",
                              "vision.visual.merger.mlp.2.weight"});
  // projector: none -- the merger's output, in the LLM's width, is the soft tokens as it is.
  o.image.projector = false;
  ASSERT_THROWS_WITH(make_molar(f, o, pixels), "model.image.projector: none feeds the image tokens");
  v.merger_size = 16;  // the item LLM's hidden size
  auto bare = make_molar(f, o, pixels);
  EXPECT_FALSE(bare->image_projector);
  bare->eval();
  expect_embeddings_with_soft_tokens(*bare, f, {3}, [&](int64_t id) {
    return bare->vision->forward(pixels[id - 1].unsqueeze(0)).view({4, 16});
  });
}

// An item LLM with Qwen2-VL's M-RoPE gives a Qwen2-VL tower's 2 x 2 merged tokens (one soft token
// each) (t, row, column) positions, as get_rope_index does, packed and padded alike; the 1-D numbering
// is another embedding. A CLIP-style projector with 2 tokens per patch has no grid: 1-D positions.
TEST(MolarTest, MropeItemLlmGivesQwen2VlImageTokensGridPositions) {
  MolarFixture f(true);
  MolarOptions o = with_qwen2_vl_tower();  // 4 x 4 patches, merged 2 x 2: a 2 x 2 grid
  torch::manual_seed(17);
  auto pixels = torch::randn({5, 3, 16, 16});
  auto molar = [&](bool packed) {
    o.hllm = tiny_hllm(f.tokens->vocab_size());
    for (auto* c : {&o.hllm.item_llm.config, &o.hllm.user_llm.config}) {
      c->model_type = "qwen2_vl";
      c->mrope_section = {0, 1, 1};  // head_dim 4: one channel pair by row, one by column
    }
    o.hllm.packed_items = packed;
    torch::manual_seed(3);
    auto m = std::make_shared<MolarImpl>(o, f.tokens, pixels);
    m->eval();
    return m;
  };
  auto m = molar(true);
  EXPECT_EQ(m->soft_token_grid(), (std::pair<int64_t, int64_t>{2, 2}));
  torch::NoGradGuard no_grad;
  const std::vector<int64_t> ids{2, 5};
  const auto got = m->embed_items(ids);
  for (size_t i = 0; i < ids.size(); ++i) {
    const auto soft = m->image_projector->forward(m->vision->forward(pixels[ids[i] - 1].unsqueeze(0))).view({4, 16});
    const int64_t mlen = static_cast<int64_t>(f.tokens->tokens(ids[i]).size());
    const int64_t nb = f.tokens->image_before().size(), na = f.tokens->image_after().size();
    const auto p = data::item_positions_mrope(mlen, nb, 2, 2, na, f.tokens->max_text_length());
    const auto positions =
        torch::stack({torch::tensor(p[0]), torch::tensor(p[1]), torch::tensor(p[2])}).unsqueeze(1);  // [3, 1, T]
    const auto grid = embed_by_hand(*m, f, ids[i], soft, true, positions);
    EXPECT_TRUE(torch::allclose(got[i], grid, 1e-5, 1e-5)) << "item " << ids[i] << ": " << (got[i] - grid).abs().max();
    const auto flat = embed_by_hand(*m, f, ids[i], soft, true);
    EXPECT_GT((got[i] - flat).abs().max().item<double>(), 1e-4) << "item " << ids[i];
  }
  EXPECT_TRUE(torch::allclose(molar(false)->embed_items(ids), got, 1e-5, 1e-5));  // padded
  o.image.tokens = 2;  // two soft tokens per merged patch: no grid
  EXPECT_EQ(molar(true)->soft_token_grid(), (std::pair<int64_t, int64_t>{0, 0}));
}

TEST(MolarTest, ParameterNamesBeyondHllmArePinned) {
  MolarFixture f;
  MolarOptions o;
  o.inputs = ItemInputs::kImage;
  o.image.has_vision = true;
  auto& v = o.image.vision.config;
  v.hidden_size = 8;
  v.intermediate_size = 16;
  v.num_layers = 1;
  v.num_heads = 2;
  v.image_size = 8;
  v.patch_size = 4;
  o.post_alignment.id_checkpoint = "id.ckpt";
  o.post_alignment.id_dim = 8;
  auto m = make_molar(f, o, torch::zeros({5, 3, 8, 8}));
  std::vector<std::string> extra;
  for (const auto& p : m->named_parameters())
    if (p.key().rfind("item_llm.", 0) != 0 && p.key().rfind("user_llm.", 0) != 0) extra.push_back(p.key());
  std::sort(extra.begin(), extra.end());
  const std::vector<std::string> want = {
      "align_projection.weight", "image_projector.0.bias", "image_projector.0.weight", "image_projector.2.bias",
      "image_projector.2.weight", "item_token", "logit_scale",
      "vision.vision_model.embeddings.class_embedding",
      "vision.vision_model.embeddings.patch_embedding.weight",
      "vision.vision_model.embeddings.position_embedding.weight",
      "vision.vision_model.encoder.layers.0.layer_norm1.bias", "vision.vision_model.encoder.layers.0.layer_norm1.weight",
      "vision.vision_model.encoder.layers.0.layer_norm2.bias", "vision.vision_model.encoder.layers.0.layer_norm2.weight",
      "vision.vision_model.encoder.layers.0.mlp.fc1.bias", "vision.vision_model.encoder.layers.0.mlp.fc1.weight",
      "vision.vision_model.encoder.layers.0.mlp.fc2.bias", "vision.vision_model.encoder.layers.0.mlp.fc2.weight",
      "vision.vision_model.encoder.layers.0.self_attn.k_proj.bias",
      "vision.vision_model.encoder.layers.0.self_attn.k_proj.weight",
      "vision.vision_model.encoder.layers.0.self_attn.out_proj.bias",
      "vision.vision_model.encoder.layers.0.self_attn.out_proj.weight",
      "vision.vision_model.encoder.layers.0.self_attn.q_proj.bias",
      "vision.vision_model.encoder.layers.0.self_attn.q_proj.weight",
      "vision.vision_model.encoder.layers.0.self_attn.v_proj.bias",
      "vision.vision_model.encoder.layers.0.self_attn.v_proj.weight",
      "vision.vision_model.post_layernorm.bias", "vision.vision_model.post_layernorm.weight",
      "vision.vision_model.pre_layrnorm.bias", "vision.vision_model.pre_layrnorm.weight"};
  EXPECT_EQ(extra, want);
}

TEST(MolarTest, ConfigErrorsNameTheField) {
  ModelContext ctx;
  ctx.num_items = 5;
  ctx.max_seq_len = 6;
  const std::string towers =
      "item_llm: {config: {vocab_size: 300, hidden_size: 16, num_attention_heads: 4}}\n"
      "user_llm: {config: {vocab_size: 300, hidden_size: 16, num_attention_heads: 4}}\n";
  auto indent = [](std::string s) {
    std::string out;
    size_t start = 0;
    while (start < s.size()) {
      size_t end = s.find('\n', start);
      out += "  " + s.substr(start, end - start + 1);
      start = end + 1;
    }
    return out;
  };
  auto parse = [&](const std::string& extra) {
    auto node = config::ConfigNode::parse("model:\n" + indent("name: molar\n" + extra + towers));
    return read_molar_options(node.child("model"), ctx);
  };
  EXPECT_FALSE(parse("").aligned());
  EXPECT_EQ(parse("").inputs, ItemInputs::kText);
  EXPECT_FALSE(parse("").user_token);
  EXPECT_TRUE(parse("user_token: true\n").user_token);
  ASSERT_THROWS_WITH(parse("inputs: video\n"), "model.inputs: 'video' is not one of text, image, both");
  ASSERT_THROWS_WITH(parse("inputs: both\n"), "model.image.features");
  ASSERT_THROWS_WITH(parse("post_alignment: {id_checkpoint: a.ckpt, tau: 0}\n"), "model.post_alignment.tau");
  ASSERT_THROWS_WITH(parse("post_alignment: {alpha: 1}\n"), "id_checkpoint");
  ASSERT_THROWS_WITH(parse("inputs: image\nimage: {vision: {config: {image_size: 30, patch_size: 8}}, folder: x}\n"),
                     "model.image.vision.config.patch_size: must divide image_size");
  ASSERT_THROWS_WITH(parse("inputs: image\nimage: {vision: {config: {hidden_act: gleu}}, folder: x}\n"),
                     "model.image.vision.config.hidden_act: 'gleu' is not one of");
  ASSERT_THROWS_WITH(parse("inputs: image\nimage: {vision: {config: {model_type: qwen2_vl, image_size: 42}}, folder: x}\n"),
                     "model.image.vision.config.image_size: must be a multiple of patch_size x spatial_merge_size");
  ASSERT_THROWS_WITH(parse("inputs: image\nimage: {vision: {config: {model_type: qwen2_vl, embed_dim: 24, num_heads: 4}}, "
                           "folder: x}\n"),
                     "model.image.vision.config.num_heads: must divide embed_dim into heads of a multiple of 4");
  ASSERT_THROWS_WITH(parse("inputs: image\nimage: {vision: {pretrained: p}}\n"), "model.image.folder");
  auto o = parse("inputs: image\nimage: {features: f.safetensors, tokens: 4}\npost_alignment: {id_checkpoint: a.ckpt, alpha: 0.2}\n");
  EXPECT_EQ(o.inputs, ItemInputs::kImage);
  EXPECT_EQ(o.image.tokens, 4);
  EXPECT_TRUE(o.aligned());
  EXPECT_DOUBLE_EQ(o.post_alignment.alpha, 0.2);
  MolarFixture f;
  MolarOptions bad;
  bad.inputs = ItemInputs::kImage;
  bad.image.features = "f.safetensors";
  ASSERT_THROWS_WITH(make_molar(f, bad, torch::zeros({4, 3})), "4 rows of image features, the data has 5 items");
}

}  // namespace
}  // namespace seqrec::models
