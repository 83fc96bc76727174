// Tests of SASRec (both variants), the model registry, most-pop, fast_dropout.
#include <torch/torch.h>

#include <algorithm>
#include <string>
#include <vector>

#include "seqrec/common/error.h"
#include "seqrec/config/config_node.h"
#include "seqrec/data/batcher.h"
#include "seqrec/data/split.h"
#include "seqrec/models/most_pop.h"
#include "seqrec/models/registry.h"
#include "seqrec/models/sasrec.h"
#include "seqrec/nn/dropout.h"
#include "support.h"

namespace seqrec::models {
namespace {

SasRecOptions tiny_options(SasRecVariant variant) {
  SasRecOptions o;
  o.num_items = 20;
  o.max_seq_len = 8;
  o.hidden_dim = 8;
  o.num_blocks = 2;
  o.num_heads = 2;
  o.ffn_dim = 12;
  o.dropout = 0.2;
  o.variant = variant;
  o.layer_norm_eps = variant == SasRecVariant::kGr ? 1e-8 : 1e-12;
  return o;
}

data::SequenceBatch batch_of(const std::vector<std::vector<int64_t>>& rows, int64_t max_seq_len) {
  const int64_t b = static_cast<int64_t>(rows.size()), w = static_cast<int64_t>(rows[0].size());
  data::SequenceBatch batch;
  batch.item_ids = torch::zeros({b, w}, torch::kLong);
  for (int64_t r = 0; r < b; ++r)
    for (int64_t t = 0; t < w; ++t) batch.item_ids[r][t] = rows[r][t];
  batch.user_ids = torch::arange(b, torch::kLong);
  batch.position_offset = max_seq_len - w;
  return batch;
}

class SasRecVariants : public ::testing::TestWithParam<SasRecVariant> {};

TEST_P(SasRecVariants, EncodeShape) {
  torch::manual_seed(1);
  auto model = std::make_shared<SasRecImpl>(tiny_options(GetParam()));
  auto batch = batch_of({{0, 0, 1, 2, 3}, {4, 5, 6, 7, 8}}, 8);
  auto h = model->encode(batch);
  EXPECT_EQ(h.sizes(), (torch::IntArrayRef{2, 5, 8}));
  EXPECT_TRUE(torch::isfinite(h).all().item<bool>());
  EXPECT_EQ(model->all_item_embeddings().sizes(), (torch::IntArrayRef{21, 8}));
  EXPECT_EQ(model->item_embeddings(torch::tensor({{1, 2, 3}}, torch::kLong)).sizes(),
            (torch::IntArrayRef{1, 3, 8}));
  // Padding row of the item table is zero.
  EXPECT_EQ(model->all_item_embeddings()[0].abs().sum().item<float>(), 0.f);
  // Training mode works too (dropout active) and stays finite.
  model->train();
  EXPECT_TRUE(torch::isfinite(model->encode(batch)).all().item<bool>());
}

TEST_P(SasRecVariants, CausalInEvalMode) {
  torch::manual_seed(2);
  auto model = std::make_shared<SasRecImpl>(tiny_options(GetParam()));
  model->eval();
  torch::NoGradGuard no_grad;
  auto a = model->encode(batch_of({{0, 3, 4, 5, 6, 7}}, 8));
  auto b = model->encode(batch_of({{0, 3, 4, 5, 12, 7}}, 8));  // position 4 changed
  // Positions 1..3 are unchanged; 4 and 5 see the change.
  EXPECT_TRUE(torch::allclose(a.narrow(1, 1, 3), b.narrow(1, 1, 3), 1e-6, 1e-6));
  EXPECT_FALSE(torch::allclose(a.select(1, 4), b.select(1, 4), 1e-4, 1e-4));
  EXPECT_FALSE(torch::allclose(a.select(1, 5), b.select(1, 5), 1e-4, 1e-4));
}

TEST_P(SasRecVariants, PaddingInvariance) {
  torch::manual_seed(3);
  auto model = std::make_shared<SasRecImpl>(tiny_options(GetParam()));
  model->eval();
  torch::NoGradGuard no_grad;
  auto narrow = model->encode(batch_of({{3, 4, 5, 6}, {0, 0, 9, 10}}, 8));             // offset 4
  auto wide = model->encode(batch_of({{0, 0, 0, 3, 4, 5, 6}, {0, 0, 0, 0, 0, 9, 10}}, 8));  // offset 1
  ASSERT_EQ(wide.size(1), 7);
  EXPECT_TRUE(torch::allclose(wide.narrow(1, 3, 4).select(0, 0), narrow.select(0, 0), 1e-5, 1e-5));
  EXPECT_TRUE(torch::allclose(wide.narrow(1, 5, 2).select(0, 1), narrow.narrow(1, 2, 2).select(0, 1), 1e-5, 1e-5));
  // The absolute position matters: the same items without the offset give other outputs.
  auto shifted = batch_of({{3, 4, 5, 6}}, 8);
  shifted.position_offset = 0;
  EXPECT_FALSE(torch::allclose(model->encode(shifted).select(0, 0), narrow.select(0, 0), 1e-4, 1e-4));
}

TEST_P(SasRecVariants, L2NormOutputGivesUnitRows) {
  torch::manual_seed(4);
  auto o = tiny_options(GetParam());
  o.l2_norm_output = true;
  auto model = std::make_shared<SasRecImpl>(o);
  model->eval();
  torch::NoGradGuard no_grad;
  auto h = model->encode(batch_of({{0, 1, 2, 3}, {4, 5, 6, 7}}, 8));
  auto norms = h.norm(2, -1);  // [2, 4]
  auto real = torch::tensor({{0.f, 1.f, 1.f, 1.f}, {1.f, 1.f, 1.f, 1.f}});
  EXPECT_TRUE(torch::allclose(norms * real, real, 1e-5, 1e-5)) << norms;
  auto items = model->all_item_embeddings().narrow(0, 1, 20).norm(2, -1);
  EXPECT_TRUE(torch::allclose(items, torch::ones({20}), 1e-5, 1e-5));
  auto some = model->item_embeddings(torch::tensor({1, 7, 20}, torch::kLong)).norm(2, -1);
  EXPECT_TRUE(torch::allclose(some, torch::ones({3}), 1e-5, 1e-5));
  // Without the option the rows are not unit norm.
  auto plain = std::make_shared<SasRecImpl>(tiny_options(GetParam()));
  plain->eval();
  EXPECT_FALSE(torch::allclose(plain->all_item_embeddings().narrow(0, 1, 20).norm(2, -1), torch::ones({20}), 1e-3,
                               1e-3));
}

TEST_P(SasRecVariants, JaggedAttentionMatchesPadded) {
  auto o = tiny_options(GetParam());
  o.jagged_attention = true;
  torch::manual_seed(9);
  auto jagged = std::make_shared<SasRecImpl>(o);
  o.jagged_attention = false;
  torch::manual_seed(9);
  auto padded = std::make_shared<SasRecImpl>(o);
  jagged->eval();
  padded->eval();
  auto batch = batch_of({{0, 0, 0, 0, 1, 2}, {3, 4, 5, 6, 7, 8}, {0, 0, 9, 10, 11, 12}, {0, 0, 0, 0, 0, 13}}, 8);
  auto hj = jagged->encode(batch);
  auto hp = padded->encode(batch);
  EXPECT_TRUE(torch::allclose(hj, hp, 1e-5, 1e-5)) << (hj - hp).abs().max();
  // Gradients agree too, through the real positions (padding rows carry no contract: the padded
  // path gives them LayerNorm's bias, the packed one zeros).
  auto w = torch::randn(hj.sizes()) * batch.item_ids.ne(0).unsqueeze(-1);
  (hj * w).sum().backward();
  (hp * w).sum().backward();
  auto pj = jagged->named_parameters(), pp = padded->named_parameters();
  for (const auto& kv : pj) {
    const auto& gj = kv.value().grad();
    const auto& gp = pp[kv.key()].grad();
    ASSERT_TRUE(gj.defined()) << kv.key();
    ASSERT_TRUE(gp.defined()) << kv.key();
    EXPECT_TRUE(torch::allclose(gj, gp, 1e-4, 1e-5)) << kv.key();
  }
}

// The TF SASRec code has no projection after attention: dropping it must equal an identity projection.
TEST_P(SasRecVariants, NoOutputProjectionEqualsIdentityProjection) {
  auto o = tiny_options(GetParam());
  torch::manual_seed(5);
  auto with = std::make_shared<SasRecImpl>(o);
  o.attention_out_proj = false;
  auto without = std::make_shared<SasRecImpl>(o);
  {
    torch::NoGradGuard no_grad;
    auto src = with->named_parameters();
    auto dst = without->named_parameters();
    EXPECT_EQ(src.size(), dst.size() + 4);  // out_proj.{weight,bias} in each of 2 blocks
    for (auto& kv : dst) kv.value().copy_(src[kv.key()]);
    for (auto& kv : src) {
      if (kv.key().find("out_proj.weight") != std::string::npos) kv.value().copy_(torch::eye(o.hidden_dim));
      if (kv.key().find("out_proj.bias") != std::string::npos) kv.value().zero_();
    }
  }
  with->eval();
  without->eval();
  auto batch = batch_of({{0, 0, 1, 2, 3}, {4, 5, 6, 7, 8}}, 8);
  auto a = with->encode(batch), b = without->encode(batch);
  EXPECT_TRUE(torch::allclose(a, b, 1e-5, 1e-6)) << (a - b).abs().max();
}

TEST_P(SasRecVariants, LastOnlyInferenceEqualsTheLastPositionOfTheFullPass) {
  torch::manual_seed(6);
  auto model = std::make_shared<SasRecImpl>(tiny_options(GetParam()));
  model->eval();
  auto batch = batch_of({{0, 0, 1, 2, 3}, {4, 5, 6, 7, 8}, {0, 0, 0, 0, 9}}, 8);
  torch::NoGradGuard no_grad;
  auto full = model->encode(batch);                                  // [B, W, D]
  batch.last_only = true;
  auto last = model->encode(batch);                                  // [B, 1, D]
  ASSERT_EQ(last.sizes(), (torch::IntArrayRef{3, 1, 8}));
  EXPECT_TRUE(torch::allclose(last.select(1, 0), full.select(1, 4), 1e-5, 1e-6));
  // In training the flag is ignored (every position is supervised).
  model->train();
  EXPECT_EQ(model->encode(batch).size(1), 5);
}

INSTANTIATE_TEST_SUITE_P(Variants, SasRecVariants,
                         ::testing::Values(SasRecVariant::kGr, SasRecVariant::kPostLn));

std::vector<std::string> sorted_keys(const torch::nn::Module& m) {
  std::vector<std::string> keys;
  for (const auto& p : m.named_parameters()) keys.push_back(p.key());
  std::sort(keys.begin(), keys.end());
  return keys;
}

std::vector<std::string> block_keys(int b) {
  const std::string p = "blocks." + std::to_string(b) + ".";
  return {p + "attn_layer_norm.bias", p + "attn_layer_norm.weight", p + "ffn_in.bias",      p + "ffn_in.weight",
          p + "ffn_layer_norm.bias",  p + "ffn_layer_norm.weight",  p + "ffn_out.bias",     p + "ffn_out.weight",
          p + "kv_proj.bias",         p + "kv_proj.weight",         p + "out_proj.bias",    p + "out_proj.weight",
          p + "q_proj.bias",          p + "q_proj.weight"};
}

// Pins the checkpoint format: renaming a module breaks every saved checkpoint.
TEST(SasRec, ParameterNamesGr) {
  auto model = std::make_shared<SasRecImpl>(tiny_options(SasRecVariant::kGr));
  std::vector<std::string> expected = block_keys(0);
  auto b1 = block_keys(1);
  expected.insert(expected.end(), b1.begin(), b1.end());
  for (const char* k : {"item_embedding.weight", "last_layer_norm.bias", "last_layer_norm.weight",
                        "position_embedding.weight"})
    expected.push_back(k);
  EXPECT_EQ(sorted_keys(*model), expected);
  EXPECT_TRUE(model->named_buffers().is_empty());
}

TEST(SasRec, ParameterNamesPostLn) {
  auto model = std::make_shared<SasRecImpl>(tiny_options(SasRecVariant::kPostLn));
  std::vector<std::string> expected = block_keys(0);
  auto b1 = block_keys(1);
  expected.insert(expected.end(), b1.begin(), b1.end());
  for (const char* k : {"emb_layer_norm.bias", "emb_layer_norm.weight", "item_embedding.weight",
                        "position_embedding.weight"})
    expected.push_back(k);
  EXPECT_EQ(sorted_keys(*model), expected);
  auto params = model->named_parameters();
  EXPECT_EQ(params["item_embedding.weight"].sizes(), (torch::IntArrayRef{21, 8}));
  EXPECT_EQ(params["position_embedding.weight"].sizes(), (torch::IntArrayRef{8, 8}));
  EXPECT_EQ(params["blocks.0.kv_proj.weight"].sizes(), (torch::IntArrayRef{16, 8}));
  EXPECT_EQ(params["blocks.1.ffn_in.weight"].sizes(), (torch::IntArrayRef{12, 8}));
}

// SasRecOptions documents ffn_dim = 0 as "hidden_dim"; a model built from the struct directly
// (without read_sasrec_options) must honour that instead of building a Linear(D, 0).
TEST(SasRec, FfnDimZeroMeansHiddenDim) {
  auto o = tiny_options(SasRecVariant::kGr);
  o.ffn_dim = 0;
  std::shared_ptr<SasRecImpl> model;
  ASSERT_NO_THROW(model = std::make_shared<SasRecImpl>(o));
  auto params = model->named_parameters();
  EXPECT_EQ(params["blocks.0.ffn_in.weight"].sizes(), (torch::IntArrayRef{8, 8}));
  model->eval();
  EXPECT_TRUE(torch::isfinite(model->encode(batch_of({{0, 1, 2}}, 8))).all().item<bool>());
}

TEST(SasRec, ReadOptionsValidates) {
  ModelContext ctx;
  ctx.num_items = 10;
  ctx.max_seq_len = 5;
  auto node = config::ConfigNode::parse("name: sasrec\nhidden_dim: 10\nnum_heads: 3\n");
  ASSERT_THROWS_WITH(read_sasrec_options(node, ctx), "must divide hidden_dim");
  auto bad_variant = config::ConfigNode::parse("name: sasrec\nvariant: pre_ln\n");
  ASSERT_THROWS_WITH(read_sasrec_options(bad_variant, ctx), "gr, post_ln");
  auto ok = read_sasrec_options(config::ConfigNode::parse("variant: post_ln\nhidden_dim: 12\nnum_heads: 3\n"), ctx);
  EXPECT_EQ(ok.num_items, 10);
  EXPECT_EQ(ok.max_seq_len, 5);
  EXPECT_EQ(ok.hidden_dim, 12);
  EXPECT_EQ(ok.num_heads, 3);
  EXPECT_EQ(ok.ffn_dim, 12);  // defaults to hidden_dim
  EXPECT_DOUBLE_EQ(ok.layer_norm_eps, 1e-12);
}

TEST(Registry, UnknownModelListsKnownNames) {
  ModelContext ctx;
  ctx.num_items = 10;
  auto node = config::ConfigNode::parse("name: bert4rec\n");
  try {
    make_model(node, ctx);
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("bert4rec"), std::string::npos) << msg;
    EXPECT_NE(msg.find("sasrec"), std::string::npos) << msg;
    EXPECT_NE(msg.find("most_pop"), std::string::npos) << msg;
  }
  auto names = model_names();
  EXPECT_NE(std::find(names.begin(), names.end(), "sasrec"), names.end());
  EXPECT_NE(std::find(names.begin(), names.end(), "most_pop"), names.end());
  auto built = make_model(config::ConfigNode::parse("name: sasrec\nhidden_dim: 4\nnum_blocks: 1\n"), ctx);
  ASSERT_NE(std::dynamic_pointer_cast<SasRecImpl>(built), nullptr);
  EXPECT_EQ(std::dynamic_pointer_cast<SasRecImpl>(built)->options().hidden_dim, 4);
}

TEST(MostPop, ScoresEqualTrainingCounts) {
  // Training parts: user 0 -> 1 2 | user 1 (n=2) -> 2 3 | user 2 -> 2 4 4 (5 6 held out).
  data::StoreData d;
  d.num_items = 6;
  d.user_offsets = {0, 4, 6, 11};
  d.item_ids = {1, 2, 5, 6, 2, 3, 2, 4, 4, 5, 6};
  auto store = data::InteractionStore::from_data(d);
  ModelContext ctx;
  ctx.num_items = 6;
  ctx.item_counts = data::train_item_counts(store);
  ASSERT_EQ(ctx.item_counts, (std::vector<int64_t>{0, 1, 3, 1, 2, 0, 0}));
  auto model = make_model(config::ConfigNode::parse("name: most_pop\n"), ctx);
  EXPECT_FALSE(model->trainable());
  auto batch = batch_of({{0, 1, 2}, {3, 4, 5}}, 4);
  auto h = model->encode(batch);  // [2, 3, 1]
  auto scores = torch::matmul(h.select(1, 2), model->all_item_embeddings().t());  // [2, 7]
  auto expected = torch::tensor({0.f, 1.f, 3.f, 1.f, 2.f, 0.f, 0.f});
  EXPECT_TRUE(torch::equal(scores[0], expected)) << scores;
  EXPECT_TRUE(torch::equal(scores[1], expected)) << scores;
  auto some = model->item_embeddings(torch::tensor({{2, 4}}, torch::kLong));  // [1, 2, 1]
  EXPECT_TRUE(torch::equal(some.squeeze(-1), torch::tensor({{3.f, 2.f}})));
  // The counts are a buffer (saved in checkpoints), not a parameter.
  EXPECT_EQ(model->named_parameters().size(), 0u);
  EXPECT_EQ(model->named_buffers().size(), 1u);
}

TEST(FastDropout, IdentityInEvalAndStatisticsWhenTraining) {
  torch::manual_seed(11);
  auto x = torch::randn({1000, 1000});
  EXPECT_TRUE(nn::fast_dropout(x, 0.3, false).is_same(x));
  EXPECT_TRUE(nn::fast_dropout(x, 0.0, true).is_same(x));
  auto mask = nn::dropout_mask(x, 0.3);
  EXPECT_EQ(mask.sizes(), x.sizes());
  const double drop_rate = mask.eq(0).to(torch::kDouble).mean().item<double>();
  EXPECT_NEAR(drop_rate, 0.3, 0.003);
  EXPECT_NEAR(mask.to(torch::kDouble).mean().item<double>(), 1.0, 0.005);
  // Only two values: 0 and 1/(1-p).
  auto kept = mask.ne(0);
  auto kept_values = mask.masked_select(kept);
  EXPECT_NEAR(kept_values.min().item<double>(), 1.0 / 0.7, 1e-6);
  EXPECT_NEAR(kept_values.max().item<double>(), 1.0 / 0.7, 1e-6);
  auto y = nn::fast_dropout(x, 0.3, true);
  EXPECT_NEAR(y.eq(0).to(torch::kDouble).mean().item<double>(), 0.3, 0.003);
}

TEST(FastDropout, ReproducibleUnderManualSeed) {
  auto like = torch::zeros({300, 500});
  torch::manual_seed(123);
  auto a = nn::dropout_mask(like, 0.5);
  auto a2 = nn::dropout_mask(like, 0.5);
  torch::manual_seed(123);
  auto b = nn::dropout_mask(like, 0.5);
  EXPECT_TRUE(torch::equal(a, b));
  EXPECT_FALSE(torch::equal(a, a2));
  torch::manual_seed(124);
  EXPECT_FALSE(torch::equal(a, nn::dropout_mask(like, 0.5)));
}

}  // namespace
}  // namespace seqrec::models
