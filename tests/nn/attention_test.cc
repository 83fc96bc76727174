// Jagged causal attention equals the padded computation, values and gradients.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "seqrec/nn/attention.h"

namespace seqrec::nn {
namespace {

struct Inputs {
  torch::Tensor q, k, v, lengths, weights;
};

Inputs make_inputs() {
  torch::manual_seed(3);
  Inputs in;
  in.q = torch::randn({3, 2, 6, 4}).requires_grad_(true);
  in.k = torch::randn({3, 2, 6, 4}).requires_grad_(true);
  in.v = torch::randn({3, 2, 6, 4}).requires_grad_(true);
  in.lengths = torch::tensor({6, 3, 0}, torch::kInt64);
  in.weights = torch::randn({3, 2, 6, 4});
  return in;
}

// Jagged and padded causal attention agree in values (to atol) and in the gradients of a weighted
// sum with respect to q, k and v (to rtol_grad, atol_grad).
void expect_jagged_equals_padded(const Inputs& in, double atol, double rtol_grad, double atol_grad) {
  auto jagged = jagged_causal_attention(in.q, in.k, in.v, in.lengths, 0.0, true);
  auto padded = padded_causal_attention(in.q, in.k, in.v, in.lengths, 0.0, true);
  EXPECT_TRUE(torch::allclose(jagged, padded, 1e-5, atol));
  auto gj = torch::autograd::grad({(jagged * in.weights).sum()}, {in.q, in.k, in.v});
  auto gp = torch::autograd::grad({(padded * in.weights).sum()}, {in.q, in.k, in.v});
  for (size_t i = 0; i < 3; ++i) EXPECT_TRUE(torch::allclose(gj[i], gp[i], rtol_grad, atol_grad)) << "input " << i;
}

TEST(JaggedAttentionTest, MatchesPaddedValuesAndGradients) { expect_jagged_equals_padded(make_inputs(), 1e-6, 1e-5, 1e-6); }

TEST(JaggedAttentionTest, HandComputedSingleHead) {
  // One sequence of length 2 in a width-3 row: position 1 attends to itself only, position 2
  // attends to positions 1 and 2 with softmax weights of q2.k1 = 0 and q2.k2 = ln 3 -> 1/4, 3/4.
  auto q = torch::tensor({0.f, 0.f, 1.f, std::log(3.f)}).view({1, 1, 2, 2});
  q = torch::cat({torch::zeros({1, 1, 1, 2}), q}, 2);                                  // [1, 1, 3, 2]
  auto k = torch::tensor({9.f, 9.f, 0.f, 0.f, 0.f, 1.f}).view({1, 1, 3, 2});
  auto v = torch::tensor({100.f, 100.f, 4.f, 8.f, 8.f, 0.f}).view({1, 1, 3, 2});
  auto out = jagged_causal_attention(q, k, v, torch::tensor({2}, torch::kInt64), 0.0, false);
  EXPECT_FLOAT_EQ(out[0][0][0][0].item<float>(), 0.f);                                  // padding row
  EXPECT_FLOAT_EQ(out[0][0][1][0].item<float>(), 4.f);
  EXPECT_FLOAT_EQ(out[0][0][1][1].item<float>(), 8.f);
  EXPECT_NEAR(out[0][0][2][0].item<float>(), 0.25f * 4 + 0.75f * 8, 1e-5);
  EXPECT_NEAR(out[0][0][2][1].item<float>(), 0.25f * 8 + 0.75f * 0, 1e-5);
}

TEST(JaggedAttentionTest, FutureKeysDoNotChangeEarlierOutputs) {
  Inputs in = make_inputs();
  auto before = jagged_causal_attention(in.q, in.k, in.v, in.lengths, 0.0, false);
  auto k2 = in.k.detach().clone(), v2 = in.v.detach().clone();
  k2.select(2, 5).fill_(7.f);
  v2.select(2, 5).fill_(-7.f);
  auto after = jagged_causal_attention(in.q, k2, v2, in.lengths, 0.0, false);
  EXPECT_TRUE(torch::allclose(before.narrow(2, 0, 5), after.narrow(2, 0, 5)));
  EXPECT_FALSE(torch::allclose(before.narrow(2, 5, 1), after.narrow(2, 5, 1)));
}

TEST(JaggedAttentionTest, DropoutOnlyWhenTrainingAndReproducible) {
  Inputs in = make_inputs();
  auto plain = jagged_causal_attention(in.q, in.k, in.v, in.lengths, 0.0, true);
  EXPECT_TRUE(torch::equal(plain, jagged_causal_attention(in.q, in.k, in.v, in.lengths, 0.5, false)));
  torch::manual_seed(11);
  auto a = jagged_causal_attention(in.q, in.k, in.v, in.lengths, 0.5, true);
  torch::manual_seed(11);
  auto b = jagged_causal_attention(in.q, in.k, in.v, in.lengths, 0.5, true);
  EXPECT_TRUE(torch::equal(a, b));
  EXPECT_FALSE(torch::allclose(a, plain));
}

// Long, uneven sequences: several 64-row tiles, two heads, the layout the projections produce
// ([B, W, H, d] storage seen as [B, H, W, d]).
Inputs make_long_inputs(int64_t heads, int64_t d) {
  torch::manual_seed(8);
  Inputs in;
  auto view = [&](const torch::Tensor& t) { return t.transpose(1, 2).requires_grad_(true); };
  in.q = view(torch::randn({4, 150, heads, d}) * 0.5);
  in.k = view(torch::randn({4, 150, heads, d}) * 0.5);
  in.v = view(torch::randn({4, 150, heads, d}));
  in.lengths = torch::tensor({150, 129, 64, 1}, torch::kInt64);
  in.weights = torch::randn({4, heads, 150, d});
  return in;
}

// The real rows of padded [B, H, W, d] inputs packed as [T, H, d] (sequence b's rows W - l .. W - 1).
struct Packing {
  torch::Tensor index, cu;  // [T] rows of the flattened [B * W] slots, [B + 1]
  torch::Tensor operator()(const torch::Tensor& t) const {
    return t.transpose(1, 2).reshape({t.size(0) * t.size(2), t.size(1), t.size(3)}).index_select(0, index);
  }
};

Packing packing_of(const torch::Tensor& lengths, int64_t w) {
  std::vector<int64_t> rows, cu = {0};
  for (int64_t b = 0; b < lengths.size(0); ++b) {
    const int64_t l = lengths[b].item<int64_t>();
    for (int64_t i = w - l; i < w; ++i) rows.push_back(b * w + i);
    cu.push_back(cu.back() + l);
  }
  return {torch::tensor(rows, torch::kLong), torch::tensor(cu, torch::kLong)};
}

TEST(JaggedAttentionTest, LongSequencesAcrossRowTilesMatchPadded) {
  expect_jagged_equals_padded(make_long_inputs(2, 5), 1e-5, 1e-4, 1e-5);
}

TEST(JaggedAttentionTest, PackedRowsEqualThePaddedBatchWithTheSameDropout) {
  Inputs in = make_long_inputs(2, 5);
  const Packing pack = packing_of(in.lengths, 150);
  auto qp = pack(in.q.detach()).requires_grad_(true), kp = pack(in.k.detach()).requires_grad_(true),
       vp = pack(in.v.detach()).requires_grad_(true);
  for (double p : {0.0, 0.3}) {
    torch::manual_seed(21);
    auto padded = jagged_causal_attention(in.q, in.k, in.v, in.lengths, p, true);
    torch::manual_seed(21);
    auto packed = packed_causal_attention(qp, kp, vp, pack.cu, p, true);
    EXPECT_TRUE(torch::allclose(packed, pack(padded), 1e-5, 1e-6)) << "dropout " << p;
    auto wp = pack(in.weights);
    auto g_padded = torch::autograd::grad({(padded * in.weights).sum()}, {in.q, in.k, in.v});
    auto g_packed = torch::autograd::grad({(packed * wp).sum()}, {qp, kp, vp});
    for (size_t i = 0; i < 3; ++i)
      EXPECT_TRUE(torch::allclose(g_packed[i], pack(g_padded[i]), 1e-5, 1e-6)) << "dropout " << p << " input " << i;
  }
}

TEST(JaggedAttentionTest, DropoutBackwardMatchesFiniteDifferences) {
  // With the seed fixed the dropout mask is fixed, so the output is a smooth function of q, k, v.
  Inputs in = make_long_inputs(1, 3);
  auto f = [&](const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v) {
    torch::manual_seed(99);
    return (jagged_causal_attention(q, k, v, in.lengths, 0.4, true) * in.weights).sum();
  };
  auto grads = torch::autograd::grad({f(in.q, in.k, in.v)}, {in.q, in.k, in.v});
  torch::NoGradGuard no_grad;
  torch::manual_seed(123);
  const double eps = 1e-2;
  for (int which = 0; which < 3; ++which) {
    auto dir = torch::randn(in.q.sizes());
    auto shift = [&](double s) {
      auto q = in.q.detach(), k = in.k.detach(), v = in.v.detach();
      if (which == 0) q = q + s * dir;
      if (which == 1) k = k + s * dir;
      if (which == 2) v = v + s * dir;
      return f(q, k, v).item<double>();
    };
    const double numeric = (shift(eps) - shift(-eps)) / (2 * eps);
    const double analytic = (grads[which] * dir).sum().item<double>();
    EXPECT_NEAR(numeric, analytic, 2e-2 * std::max(1.0, std::abs(analytic))) << "input " << which;
  }
}

TEST(JaggedPointwiseTest, LongSequencesWithBiasMatchPaddedValuesAndGradients) {
  Inputs in = make_long_inputs(2, 4);
  auto bias = (torch::randn({4, 150, 150}) * 0.3).requires_grad_(true);
  auto jagged = jagged_pointwise_attention(in.q, in.k, in.v, bias, in.lengths, 161.0);
  auto padded = padded_pointwise_attention(in.q, in.k, in.v, bias, in.lengths, 161.0);
  EXPECT_TRUE(torch::allclose(jagged, padded, 1e-5, 1e-6));
  auto gj = torch::autograd::grad({(jagged * in.weights).sum()}, {in.q, in.k, in.v, bias});
  auto gp = torch::autograd::grad({(padded * in.weights).sum()}, {in.q, in.k, in.v, bias});
  for (size_t i = 0; i < 4; ++i) EXPECT_TRUE(torch::allclose(gj[i], gp[i], 1e-4, 1e-6)) << "input " << i;
}

// Random position and time tables (as trained, with gradients) for `batch` rows of width w and
// HSTU's normaliser n (position origin n - 1, 129 time buckets).
RelativeBiasTables random_bias_tables(int64_t batch, int64_t w, int64_t n) {
  RelativeBiasTables tables;
  tables.position_weights = (torch::randn({2 * n - 1}) * 0.3).requires_grad_(true);
  tables.position_origin = n - 1;
  tables.time_weights = (torch::randn({129}) * 0.3).requires_grad_(true);
  tables.time_buckets = torch::randint(0, 129, {batch, w, w}, torch::kLong).to(torch::kByte);
  return tables;
}

TEST(JaggedPointwiseTest, BiasTablesEqualTheirMaterialisedBiasWithTableGradients) {
  Inputs in = make_long_inputs(2, 4);
  const int64_t w = 150, n = 161;
  RelativeBiasTables tables = random_bias_tables(4, w, n);
  auto dense = materialize_bias(tables, 4, w);                                           // [4, W, W]
  // The materialised form by hand at one entry: origin + j - i and the bucket of (b, i, j).
  const int64_t b = 1, i = 100, j = 37;
  const float by_hand = tables.position_weights[n - 1 + j - i].item<float>() +
                        tables.time_weights[tables.time_buckets[b][i][j].item<uint8_t>()].item<float>();
  EXPECT_FLOAT_EQ(dense[b][i][j].item<float>(), by_hand);
  auto from_tables = jagged_pointwise_attention(in.q, in.k, in.v, tables, in.lengths, double(n));
  auto from_dense = padded_pointwise_attention(in.q, in.k, in.v, dense, in.lengths, double(n));
  EXPECT_TRUE(torch::allclose(from_tables, from_dense, 1e-5, 1e-6));
  std::vector<torch::Tensor> inputs = {in.q, in.k, in.v, tables.position_weights, tables.time_weights};
  auto gt = torch::autograd::grad({(from_tables * in.weights).sum()}, inputs);
  auto gd = torch::autograd::grad({(from_dense * in.weights).sum()}, inputs);
  for (size_t t = 0; t < inputs.size(); ++t) EXPECT_TRUE(torch::allclose(gt[t], gd[t], 1e-4, 1e-5)) << "input " << t;
}

TEST(JaggedPointwiseTest, PackedRowsWithBiasTablesEqualThePaddedBatch) {
  Inputs in = make_long_inputs(2, 4);
  const int64_t w = 150, n = 161;
  RelativeBiasTables tables = random_bias_tables(4, w, n);
  const Packing pack = packing_of(in.lengths, w);
  auto qp = pack(in.q.detach()).requires_grad_(true), kp = pack(in.k.detach()).requires_grad_(true),
       vp = pack(in.v.detach()).requires_grad_(true);
  auto padded = jagged_pointwise_attention(in.q, in.k, in.v, tables, in.lengths, double(n));
  auto packed = packed_pointwise_attention(qp, kp, vp, tables, pack.cu, w, double(n));
  EXPECT_TRUE(torch::allclose(packed, pack(padded), 1e-5, 1e-6));
  auto g_padded = torch::autograd::grad({(padded * in.weights).sum()},
                                        {in.q, in.k, in.v, tables.position_weights, tables.time_weights});
  auto g_packed = torch::autograd::grad({(packed * pack(in.weights)).sum()},
                                        {qp, kp, vp, tables.position_weights, tables.time_weights});
  for (size_t i = 0; i < 3; ++i) EXPECT_TRUE(torch::allclose(g_packed[i], pack(g_padded[i]), 1e-5, 1e-6)) << i;
  for (size_t i = 3; i < 5; ++i) EXPECT_TRUE(torch::allclose(g_packed[i], g_padded[i], 1e-4, 1e-5)) << i;
}

}  // namespace
}  // namespace seqrec::nn
