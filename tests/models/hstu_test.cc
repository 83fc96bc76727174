// HSTU: time buckets, relative bias, one block against a hand-written loop reference, causality,
// and the parameter-name pin (checkpoint format).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <vector>

#include "seqrec/config/config_node.h"
#include "seqrec/models/hstu.h"
#include "seqrec/models/registry.h"
#include "seqrec/nn/attention.h"
#include "support.h"

namespace seqrec::models {
namespace {

TEST(HstuTest, TimeBucketsMatchHandValues) {
  // floor(ln(max(|dt|, 1)) / 0.301), clamped to [0, 128].
  auto dt = torch::tensor(std::vector<int64_t>{0, 1, -1, 2, 3, 100, 86400, -86400, int64_t(1) << 62}, torch::kLong);
  auto b = time_buckets(dt);
  std::vector<int64_t> expected = {0, 0, 0, 2, 3, 15, 37, 37, 128};
  // ln 2 / .301 = 2.30 -> 2; ln 3 / .301 = 3.65 -> 3; ln 100 / .301 = 15.30; ln 86400 / .301 = 37.8.
  for (size_t i = 0; i < expected.size(); ++i) EXPECT_EQ(b[i].item<int64_t>(), expected[i]) << "i=" << i;
}

TEST(HstuTest, RelativeBiasIndexesPositionAndTimeTables) {
  torch::manual_seed(0);
  RelativeBias bias(4, true, true);                                   // N = 4: 7 position weights
  auto params = bias->named_parameters();
  auto pw = params["position_weights"], tw = params["time_weights"];
  auto ts = torch::tensor(std::vector<int64_t>{0, 10, 100}, torch::kLong).view({1, 3});
  auto next = torch::tensor(std::vector<int64_t>{10, 100, 1000}, torch::kLong).view({1, 3});
  auto out = bias->forward(bias->indices(ts, next, 3));                              // [1, 3, 3]
  for (int64_t i = 0; i < 3; ++i)
    for (int64_t j = 0; j < 3; ++j) {
      const int64_t dt = next[0][i].item<int64_t>() - ts[0][j].item<int64_t>();
      const int64_t bucket = std::min<int64_t>(128, std::floor(std::log(std::max<int64_t>(std::abs(dt), 1)) / 0.301));
      const float want = pw[3 + j - i].item<float>() + tw[bucket].item<float>();
      EXPECT_FLOAT_EQ(out[0][i][j].item<float>(), want) << i << "," << j;
    }
}

TEST(HstuTest, TimeBucketMatrixEqualsTheReferenceFormula) {
  torch::manual_seed(3);
  // Gaps of every size: zero, small, around the table edge (2^16) and far beyond, both signs.
  auto ts = torch::cat({torch::randint(0, 100, {2, 8}, torch::kLong), torch::randint(0, 1LL << 40, {2, 8}, torch::kLong),
                        torch::full({2, 4}, int64_t{1} << 16, torch::kLong)}, 1);                    // [2, 20]
  auto next = torch::cat({torch::randint(0, 100, {2, 8}, torch::kLong), torch::randint(0, 1LL << 40, {2, 8}, torch::kLong),
                          torch::randint(0, 1LL << 17, {2, 4}, torch::kLong)}, 1);
  auto fast = time_bucket_matrix(ts, next);
  auto ref = time_buckets(next.unsqueeze(2) - ts.unsqueeze(1));
  ASSERT_EQ(fast.scalar_type(), torch::kByte);
  EXPECT_TRUE(torch::equal(fast.to(torch::kLong), ref));
  EXPECT_GT(ref.max().template item<int64_t>(), 80);  // the big gaps reach high buckets
}

HstuOptions tiny_options() {
  HstuOptions o;
  o.num_items = 10;
  o.max_seq_len = 3;
  o.hidden_dim = 4;
  o.num_blocks = 1;
  o.num_heads = 1;
  o.attn_dim = 2;
  o.linear_dim = 2;
  o.dropout = 0.0;
  o.output_slots = 2;  // N = 5
  return o;
}

std::vector<double> layer_norm(std::vector<double> v, double eps = 1e-6) {
  double mean = 0, var = 0;
  for (double x : v) mean += x;
  mean /= v.size();
  for (double x : v) var += (x - mean) * (x - mean);
  var /= v.size();
  for (double& x : v) x = (x - mean) / std::sqrt(var + eps);
  return v;
}

double silu(double x) { return x / (1 + std::exp(-x)); }

// GR's epsilon of the LayerNorm over A V (1e-6), and a large one that changes the output (the A V of
// these rows has a variance well below 0.05), so an option that were ignored would fail here.
class HstuBlockEps : public ::testing::TestWithParam<double> {};

TEST_P(HstuBlockEps, BlockMatchesLoopReference) {
  torch::manual_seed(1);
  HstuOptions o = tiny_options();
  o.attention_norm_eps = GetParam();
  HstuBlock block(o);
  block->eval();
  auto x = torch::randn({1, 3, 4});
  auto bias = torch::randn({1, 3, 3});
  auto y = block->forward(x, bias, torch::tensor({3}, torch::kLong));
  auto params = block->named_parameters();
  auto w = params["uvqk.weight"], wo = params["output.weight"], bo = params["output.bias"];  // [8, 4], [4, 2], [4]
  const double n = 5;
  std::vector<std::vector<double>> u(3), v(3), q(3), k(3);
  for (int i = 0; i < 3; ++i) {
    std::vector<double> xi(4);
    for (int d = 0; d < 4; ++d) xi[d] = x[0][i][d].item<double>();
    auto xn = layer_norm(xi);
    for (int r = 0; r < 8; ++r) {
      double s = 0;
      for (int d = 0; d < 4; ++d) s += w[r][d].item<double>() * xn[d];
      s = silu(s);
      (r < 2 ? u[i] : r < 4 ? v[i] : r < 6 ? q[i] : k[i]).push_back(s);  // split order U, V, Q, K
    }
  }
  for (int i = 0; i < 3; ++i) {
    std::vector<double> av(2, 0.0);
    for (int j = 0; j <= i; ++j) {  // causal
      const double a = silu(q[i][0] * k[j][0] + q[i][1] * k[j][1] + bias[0][i][j].item<double>()) / n;
      for (int c = 0; c < 2; ++c) av[c] += a * v[j][c];
    }
    auto avn = layer_norm(av, o.attention_norm_eps);
    for (int d = 0; d < 4; ++d) {
      double out = x[0][i][d].item<double>() + bo[d].item<double>();
      for (int c = 0; c < 2; ++c) out += wo[d][c].item<double>() * u[i][c] * avn[c];
      EXPECT_NEAR(y[0][i][d].item<double>(), out, 1e-5) << "position " << i << " dim " << d;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(HstuTest, HstuBlockEps, ::testing::Values(1e-6, 0.05));

data::SequenceBatch batch_of(std::vector<int64_t> ids) {
  data::SequenceBatch b;
  b.item_ids = torch::tensor(ids, torch::kLong).view({1, -1});
  b.position_offset = 0;
  return b;
}

TEST(HstuTest, JaggedAndPaddedPointwiseAttentionAgree) {
  torch::manual_seed(4);
  auto q = torch::randn({3, 2, 5, 3}).requires_grad_(true), k = torch::randn({3, 2, 5, 3}).requires_grad_(true);
  auto v = torch::randn({3, 2, 5, 4}).requires_grad_(true), bias = torch::randn({3, 5, 5}).requires_grad_(true);
  auto lengths = torch::tensor({5, 2, 0}, torch::kLong);
  auto weights = torch::randn({3, 2, 5, 4});
  auto j = nn::jagged_pointwise_attention(q, k, v, bias, lengths, 7.0);
  auto p = nn::padded_pointwise_attention(q, k, v, bias, lengths, 7.0);
  EXPECT_TRUE(torch::allclose(j, p, 1e-5, 1e-6));
  auto gj = torch::autograd::grad({(j * weights).sum()}, {q, k, v, bias});
  auto gp = torch::autograd::grad({(p * weights).sum()}, {q, k, v, bias});
  for (size_t i = 0; i < gj.size(); ++i) EXPECT_TRUE(torch::allclose(gj[i], gp[i], 1e-5, 1e-6)) << "input " << i;
  // Without a bias too.
  EXPECT_TRUE(torch::allclose(nn::jagged_pointwise_attention(q, k, v, torch::Tensor(), lengths, 7.0),
                              nn::padded_pointwise_attention(q, k, v, {}, lengths, 7.0), 1e-5, 1e-6));
}

TEST(HstuTest, ChangingAFutureItemChangesNoEarlierOutput) {
  torch::manual_seed(2);
  HstuOptions o = tiny_options();
  o.max_seq_len = 5;
  o.num_blocks = 2;
  HstuImpl model(o);
  model.eval();
  auto a = model.encode(batch_of({0, 3, 4, 5, 6}));
  auto b = model.encode(batch_of({0, 3, 4, 5, 9}));
  EXPECT_TRUE(torch::allclose(a.narrow(1, 0, 4), b.narrow(1, 0, 4), 1e-6, 1e-7));
  EXPECT_FALSE(torch::allclose(a.narrow(1, 4, 1), b.narrow(1, 4, 1)));
  // Output rows are unit vectors (l2-normalised user states).
  EXPECT_NEAR(a[0][4].norm().item<double>(), 1.0, 1e-5);
}

TEST(HstuTest, LastOnlyInferenceEqualsTheLastPositionOfTheFullPass) {
  torch::manual_seed(8);
  HstuOptions o = tiny_options();
  o.max_seq_len = 6;
  o.num_blocks = 3;
  o.num_heads = 2;
  for (bool jagged : {true, false}) {
    o.jagged_attention = jagged;
    HstuImpl model(o);
    model.eval();
    data::SequenceBatch b;
    b.item_ids = torch::tensor({0, 0, 3, 4, 5, 6, 1, 2, 3, 4, 5, 6}, torch::kLong).view({2, 6});
    b.timestamps = torch::tensor({0, 0, 10, 20, 400, 9000, 1, 2, 3, 50, 60, 70}, torch::kLong).view({2, 6});
    torch::NoGradGuard no_grad;
    auto full = model.encode(b);                                      // [2, 6, 4]
    b.last_only = true;
    auto last = model.encode(b);                                      // [2, 1, 4]
    ASSERT_EQ(last.size(1), 1);
    EXPECT_TRUE(torch::allclose(last.select(1, 0), full.select(1, 5), 1e-5, 1e-6)) << "jagged " << jagged;
  }
}

TEST(HstuTest, PackedTrainingEqualsThePaddedModelAtRealPositions) {
  HstuOptions o = tiny_options();
  o.max_seq_len = 6;
  o.num_blocks = 2;
  o.num_heads = 2;
  o.jagged_attention = true;
  torch::manual_seed(10);
  HstuImpl packed(o);
  o.jagged_attention = false;
  torch::manual_seed(10);
  HstuImpl padded(o);
  data::SequenceBatch b;
  b.item_ids = torch::tensor({0, 0, 3, 4, 5, 6, 1, 2, 3, 4, 5, 6, 0, 0, 0, 0, 0, 7}, torch::kLong).view({3, 6});
  b.timestamps = torch::tensor({0, 0, 10, 20, 400, 9000, 1, 2, 3, 50, 60, 70, 0, 0, 0, 0, 0, 5}, torch::kLong).view({3, 6});
  auto hp = packed.encode(b), hd = padded.encode(b);                   // training mode, dropout 0
  auto real = b.item_ids.ne(0).unsqueeze(-1);
  EXPECT_TRUE(torch::allclose(hp * real, hd * real, 1e-5, 1e-6));
  auto w = torch::randn(hp.sizes()) * real;
  (hp * w).sum().backward();
  (hd * w).sum().backward();
  auto pp = packed.named_parameters(), pd = padded.named_parameters();
  for (const auto& kv : pp)
    EXPECT_TRUE(torch::allclose(kv.value().grad(), pd[kv.key()].grad(), 1e-4, 1e-6)) << kv.key();
}

TEST(HstuTest, ParameterNamesArePinned) {
  for (const char* variant : {"gr", "hllm"}) {
    config::ConfigNode node = config::ConfigNode::parse(
        std::string("name: hstu\nvariant: ") + variant + "\nhidden_dim: 8\nnum_blocks: 2\nnum_heads: 2\n");
    ModelContext ctx{5, 4, {}, ""};
    auto model = make_model(node, ctx);
    std::vector<std::string> names;
    for (const auto& p : model->named_parameters()) names.push_back(p.key());
    std::sort(names.begin(), names.end());
    std::vector<std::string> expected = {"blocks.0.output.bias", "blocks.0.output.weight", "blocks.0.uvqk.weight",
                                         "blocks.1.output.bias", "blocks.1.output.weight", "blocks.1.uvqk.weight",
                                         "item_embedding.weight", "position_embedding.weight"};
    if (std::string(variant) == "gr")
      for (const char* n : {"relative_biases.0.position_weights", "relative_biases.0.time_weights",
                            "relative_biases.1.position_weights", "relative_biases.1.time_weights"})
        expected.push_back(n);
    std::sort(expected.begin(), expected.end());
    EXPECT_EQ(names, expected) << variant;
  }
}

TEST(HstuTest, InitialScalesFollowTheGrCode) {
  // ML-1M HSTU-large's shapes: N = 200 + 11 output slots, d = 50, 2 heads of 25.
  torch::manual_seed(0);
  auto std_of = [](const torch::Tensor& t) { return t.std().item<double>(); };
  const double trunc = 0.8796;  // std of a unit normal truncated to [-2, 2]
  for (const char* variant : {"gr", "hllm"}) {
    config::ConfigNode node = config::ConfigNode::parse(std::string("name: hstu\nvariant: ") + variant +
                                                        "\nhidden_dim: 50\nnum_blocks: 8\nnum_heads: 2\noutput_slots: 11\n");
    ModelContext ctx{3706, 200, {}, ""};
    auto params = make_model(node, ctx)->named_parameters();
    ASSERT_EQ(params["position_embedding.weight"].sizes(), (torch::IntArrayRef{211, 50}));
    // GR's HSTU.reset_params re-draws the position table xavier-normal: sqrt(2 / (211 + 50)) = 0.0875;
    // HLLM keeps the preprocessor's trunc-normal sqrt(1/d) = 0.1414 (0.1244 after truncation).
    const double want_position = std::string(variant) == "gr" ? std::sqrt(2.0 / 261) : std::sqrt(1.0 / 50) * trunc;
    EXPECT_NEAR(std_of(params["position_embedding.weight"]), want_position, 0.03 * want_position) << variant;
    EXPECT_NEAR(std_of(params["item_embedding.weight"].narrow(0, 1, 3706)), 0.02 * trunc, 0.0006) << variant;
    EXPECT_EQ(params["item_embedding.weight"][0].abs().sum().item<float>(), 0.f);
    EXPECT_NEAR(std_of(params["blocks.3.uvqk.weight"]), 0.02, 0.0008) << variant;          // N(0, 0.02)
    EXPECT_NEAR(std_of(params["blocks.3.output.weight"]), std::sqrt(2.0 / 100), 0.01) << variant;  // xavier-uniform
    EXPECT_NEAR(std_of(params["blocks.3.output.bias"]), std::sqrt(1.0 / 50 / 3), 0.02) << variant;  // U(+-1/sqrt(50))
    if (std::string(variant) == "gr") {  // relative biases N(0, 0.02): 421 position and 129 time weights
      EXPECT_NEAR(std_of(params["relative_biases.3.position_weights"]), 0.02, 0.003);
      EXPECT_NEAR(std_of(params["relative_biases.3.time_weights"]), 0.02, 0.004);
    }
  }
}

TEST(HstuTest, BadVariantIsAConfigError) {
  config::ConfigNode node = config::ConfigNode::parse("name: hstu\nvariant: hstu2\n");
  ModelContext ctx{5, 4, {}, ""};
  ASSERT_THROWS_WITH(make_model(node, ctx), "'hstu2' is not one of: gr, hllm");
  node = config::ConfigNode::parse("name: hstu\nattention_norm_eps: 0\n");
  ASSERT_THROWS_WITH(make_model(node, ctx), "attention_norm_eps: must be in (0, 1)");
}

}  // namespace
}  // namespace seqrec::models
