// Tests of the training objectives against hand computations.
#include <torch/torch.h>

#include <cmath>

#include "seqrec/config/options.h"
#include "seqrec/data/batcher.h"
#include "seqrec/models/recommender.h"
#include "seqrec/train/losses.h"
#include "support.h"

namespace seqrec::train {
namespace {

/// A model whose hidden state at a position is the table row of the input item, and whose item
/// embeddings are the same table. Counts which embedding accessor was used.
class TableModel : public models::SequenceRecommenderImpl {
 public:
  explicit TableModel(torch::Tensor table) { table_ = register_parameter("table", table); }
  torch::Tensor encode(const data::SequenceBatch& batch) override {
    const auto& ids = batch.item_ids;
    return table_.index_select(0, ids.reshape({-1})).view({ids.size(0), ids.size(1), table_.size(1)});
  }
  torch::Tensor item_embeddings(const torch::Tensor& item_ids) override {
    ++gathers;
    auto sizes = item_ids.sizes().vec();
    sizes.push_back(table_.size(1));
    return table_.index_select(0, item_ids.reshape({-1})).view(sizes);
  }
  torch::Tensor all_item_embeddings() override {
    ++full_tables;
    return table_;
  }
  int gathers = 0;
  int full_tables = 0;

 private:
  torch::Tensor table_;
};

double softplus(double x) { return std::log1p(std::exp(x)); }

TEST(Losses, BceHandComputed) {
  // Two positions, D = 2. pos logits: h.p = [2, 1]; neg logits: h.n = [1, 0].
  auto h = torch::tensor({{1.f, 0.f}, {0.f, 2.f}});
  auto pos = torch::tensor({{2.f, 0.f}, {0.f, 0.5f}});
  auto neg = torch::tensor({{1.f, 1.f}, {-1.f, 0.f}});
  const double expected = ((softplus(-2) + softplus(1)) + (softplus(-1) + softplus(0))) / 2;
  EXPECT_NEAR(expected, 1.2232992833, 1e-9);
  EXPECT_NEAR(bce_loss(h, pos, neg).item<double>(), 1.2232992833, 1e-6);
}

TEST(Losses, SampledSoftmaxMasksNegativeEqualToPositive) {
  // Row 0: logits [2 | 1, 0] / 0.5 -> -4 + log(e^4 + e^2 + 1).
  // Row 1: negative 0 has the positive's id 7 -> masked; [1 | x, 0.5] / 0.5 -> -2 + log(e^2 + e^1).
  auto pos_logits = torch::tensor({2.f, 1.f});
  auto neg_logits = torch::tensor({{1.f, 0.f}, {3.f, 0.5f}});
  auto pos_ids = torch::tensor({5, 7}, torch::kLong);
  auto neg_ids = torch::tensor({{3, 4}, {7, 2}}, torch::kLong);
  const double row0 = -4 + std::log(std::exp(4.0) + std::exp(2.0) + 1);
  const double row1 = -2 + std::log(std::exp(2.0) + std::exp(1.0));
  EXPECT_NEAR((row0 + row1) / 2, 0.2280966580, 1e-9);
  EXPECT_NEAR(sampled_softmax_loss(pos_logits, neg_logits, pos_ids, neg_ids, 0.5).item<double>(), 0.2280966580,
              1e-6);
  // Unmasked, row 1 would be -2 + log(e^2 + e^6 + e^1): the mask matters.
  auto other_ids = torch::tensor({{3, 4}, {8, 2}}, torch::kLong);
  const double row1_unmasked = -2 + std::log(std::exp(2.0) + std::exp(6.0) + std::exp(1.0));
  EXPECT_NEAR(sampled_softmax_loss(pos_logits, neg_logits, pos_ids, other_ids, 0.5).item<double>(),
              (row0 + row1_unmasked) / 2, 1e-5);
}

TEST(Losses, FullSoftmaxExcludesPadding) {
  // items: row 0 (padding) would dominate if it were not excluded.
  auto items = torch::tensor({{9.f, 9.f}, {1.f, 0.f}, {0.f, 1.f}, {1.f, 1.f}});
  auto h = torch::tensor({{1.f, 0.f}, {0.f, 2.f}});
  auto targets = torch::tensor({1, 3}, torch::kLong);
  // T = 0.5. Row 0 logits (items 1..3): [1, 0, 1] / 0.5 = [2, 0, 2], target 1.
  // Row 1 logits: [0, 2, 2] / 0.5 = [0, 4, 4], target 3.
  const double row0 = -2 + std::log(2 * std::exp(2.0) + 1);
  const double row1 = -4 + std::log(1 + 2 * std::exp(4.0));
  EXPECT_NEAR((row0 + row1) / 2, 0.7304434986, 1e-9);
  EXPECT_NEAR(full_softmax_loss(h, items, targets, 0.5).item<double>(), 0.7304434986, 1e-6);
}

torch::Tensor explicit_logits(const torch::Tensor& table, const torch::Tensor& h, const torch::Tensor& ids) {
  auto flat = ids.reshape({h.size(0), -1});
  auto out = torch::zeros(flat.sizes(), torch::kFloat);
  for (int64_t n = 0; n < flat.size(0); ++n)
    for (int64_t r = 0; r < flat.size(1); ++r) {
      double dot = 0;
      for (int64_t d = 0; d < h.size(1); ++d)
        dot += h[n][d].item<double>() * table[flat[n][r].item<int64_t>()][d].item<double>();
      out[n][r] = dot;
    }
  return out.view(ids.sizes());
}

TEST(Losses, ItemLogitsSmallCatalogueUsesWholeTable) {
  torch::manual_seed(1);
  TableModel model(torch::randn({10, 3}));
  auto h = torch::randn({4, 3});
  auto ids = torch::tensor({{1, 2}, {9, 0}, {5, 5}, {3, 7}}, torch::kLong);
  auto got = item_logits(model, h, ids);
  EXPECT_EQ(model.gathers, 0);  // GEMM + gather path
  EXPECT_GT(model.full_tables, 0);
  ASSERT_EQ(got.sizes(), ids.sizes());
  EXPECT_TRUE(torch::allclose(got, explicit_logits(model.all_item_embeddings().detach(), h, ids), 1e-5, 1e-5));
  auto one = torch::tensor({4, 1, 8, 2}, torch::kLong);  // [N]
  auto got1 = item_logits(model, h, one);
  ASSERT_EQ(got1.sizes(), one.sizes());
  EXPECT_TRUE(torch::allclose(got1, explicit_logits(model.all_item_embeddings().detach(), h, one), 1e-5, 1e-5));
}

TEST(Losses, ItemLogitsLargeCatalogueGathers) {
  torch::manual_seed(2);
  // 64 * max(R=3, 16) = 1024 rows is the limit of the GEMM path; 1025 rows gather.
  TableModel model(torch::randn({1025, 3}));
  auto h = torch::randn({2, 3});
  auto ids = torch::tensor({{1, 1024, 17}, {500, 3, 0}}, torch::kLong);
  auto got = item_logits(model, h, ids);
  EXPECT_EQ(model.gathers, 1);
  ASSERT_EQ(got.sizes(), ids.sizes());
  auto table = model.all_item_embeddings().detach();
  EXPECT_TRUE(torch::allclose(got, explicit_logits(table, h, ids), 1e-5, 1e-5));
  auto one = torch::tensor({1024, 2}, torch::kLong);
  EXPECT_TRUE(torch::allclose(item_logits(model, h, one), explicit_logits(table, h, one), 1e-5, 1e-5));
}

/// E0 (padding) is large on purpose: including a padding position would change every loss.
torch::Tensor loss_table() {
  return torch::tensor({{5.f, 5.f}, {1.f, 0.f}, {0.f, 1.f}, {1.f, 1.f}, {-1.f, 0.5f}, {0.5f, -1.f}});
}

/// Row 0: ids [0 1 2] -> targets [0 2 3]; row 1: ids [4 0 3] -> targets [0 0 4] (position 0 has an
/// input but no target). Supervised positions: h = E1, E2, E3 with targets 2, 3, 4.
data::SequenceBatch loss_batch(int64_t r) {
  data::SequenceBatch b;
  b.item_ids = torch::tensor({{0, 1, 2}, {4, 0, 3}}, torch::kLong);
  b.targets = torch::tensor({{0, 2, 3}, {0, 0, 4}}, torch::kLong);
  b.user_ids = torch::tensor({0, 1}, torch::kLong);
  if (r == 1) b.negatives = torch::tensor({{{1}, {5}, {4}}, {{2}, {3}, {3}}}, torch::kLong);
  if (r == 2) b.negatives = torch::tensor({{{1, 1}, {5, 2}, {4, 3}}, {{2, 2}, {3, 3}, {4, 1}}}, torch::kLong);
  b.position_offset = 0;
  return b;
}

TEST(Losses, ComputeLossIgnoresPaddingPositions) {
  TableModel model(loss_table());
  auto table = loss_table();
  auto h = torch::stack({table[1], table[2], table[3]});

  config::LossOptions softmax;
  softmax.name = config::LossName::kSoftmax;
  softmax.temperature = 0.5;
  auto full = compute_loss(model, loss_batch(0), softmax);
  auto expected_full = full_softmax_loss(h, table, torch::tensor({2, 3, 4}, torch::kLong), 0.5);
  EXPECT_TRUE(std::isfinite(full.item<double>()));
  EXPECT_NEAR(full.item<double>(), expected_full.item<double>(), 1e-6);

  config::LossOptions bce;
  bce.name = config::LossName::kBce;
  // Negatives at supervised positions: 5, 4 (row 0) and 3 (row 1).
  auto expected_bce = bce_loss(h, torch::stack({table[2], table[3], table[4]}),
                               torch::stack({table[5], table[4], table[3]}));
  EXPECT_NEAR(compute_loss(model, loss_batch(1), bce).item<double>(), expected_bce.item<double>(), 1e-6);
  // By hand: pos logits E1.E2=0, E2.E3=1, E3.E4=-0.5; neg logits E1.E5=0.5, E2.E4=0.5, E3.E3=2.
  const double by_hand =
      (softplus(-0.0) + softplus(0.5) + softplus(-1.0) + softplus(0.5) + softplus(0.5) + softplus(2.0)) / 3;
  EXPECT_NEAR(compute_loss(model, loss_batch(1), bce).item<double>(), by_hand, 1e-6);

  config::LossOptions ssm;
  ssm.name = config::LossName::kSampledSoftmax;
  ssm.num_negatives = 2;
  ssm.temperature = 1.0;
  // Supervised rows: h=E1 pos 2 negs {5,2} (2 == positive: masked); h=E2 pos 3 negs {4,3} (3 masked);
  // h=E3 pos 4 negs {4,1} (4 masked).
  const double r0 = -0.0 + std::log(std::exp(0.0) + std::exp(0.5));   // E1.E2=0, E1.E5=0.5
  const double r1 = -1.0 + std::log(std::exp(1.0) + std::exp(0.5));   // E2.E3=1, E2.E4=0.5
  const double r2 = 0.5 + std::log(std::exp(-0.5) + std::exp(1.0));   // E3.E4=-0.5, E3.E1=1
  EXPECT_NEAR(compute_loss(model, loss_batch(2), ssm).item<double>(), (r0 + r1 + r2) / 3, 1e-5);

  // A loss needing negatives refuses a batch without them.
  EXPECT_THROW(compute_loss(model, loss_batch(0), bce), std::exception);
}

TEST(Losses, ComputeLossGradientsFlow) {
  TableModel model(loss_table());
  config::LossOptions ssm;
  ssm.name = config::LossName::kSampledSoftmax;
  ssm.num_negatives = 2;
  auto loss = compute_loss(model, loss_batch(2), ssm);
  loss.backward();
  auto g = model.named_parameters()["table"].grad();
  ASSERT_TRUE(g.defined());
  EXPECT_GT(g.abs().sum().item<double>(), 0);
  // Padding row 0 is neither an input at a supervised position nor a candidate: no gradient.
  EXPECT_EQ(g[0].abs().sum().item<double>(), 0);
}

TEST(Losses, NceHandComputedWithSharedPoolAndThreshold) {
  // Unit vectors in 2-D at angles: q at 0; positive at 60 deg (q.p = 0.5); pool n1 at 90 deg
  // (q.n = 0), n2 at 180 deg (q.n = -1), n3 = the positive itself (p.n = 1 > 0.99: dropped).
  auto unit = [](double deg) {
    const double r = deg * M_PI / 180;
    return torch::tensor({std::cos(r), std::sin(r)}, torch::kFloat);
  };
  auto q = unit(0).unsqueeze(0), p = unit(60).unsqueeze(0);               // [1, 2]
  auto pool = torch::stack({unit(90), unit(180), unit(60)});              // [3, 2]
  const double s = 1 / 0.25;
  const double by_hand = -(s * 0.5) + std::log(std::exp(s * 0.5) + std::exp(0.0) + std::exp(-s));
  EXPECT_NEAR(nce_loss(q, p, pool, torch::tensor(1 / 0.25), 0.99).item<double>(), by_hand, 1e-5);
  // Two positions share the one pool: the mean of the per-position losses.
  auto q2 = torch::stack({unit(0), unit(90)}), p2 = torch::stack({unit(60), unit(60)});
  const double c = std::cos(M_PI / 6);  // q.p for q at 90 deg
  const double second = -(s * c) + std::log(std::exp(s * c) + std::exp(s * 1.0) + std::exp(0.0));
  EXPECT_NEAR(nce_loss(q2, p2, pool, torch::tensor(1 / 0.25), 0.99).item<double>(), (by_hand + second) / 2, 1e-5);
}

// The share of dropped negatives, the sign of a collapsing item tower: none of the pool above is a
// near-duplicate of q's positive but n3; when every item has the same embedding every negative is
// dropped and the loss is 0 though nothing separates the items.
TEST(Losses, NceReportsTheShareOfNegativesDroppedAsNearDuplicates) {
  auto unit = [](double deg) {
    const double r = deg * M_PI / 180;
    return torch::tensor({std::cos(r), std::sin(r)}, torch::kFloat);
  };
  auto q = unit(0).unsqueeze(0), p = unit(60).unsqueeze(0);
  auto pool = torch::stack({unit(90), unit(180), unit(60)});
  double share = -1;
  nce_loss(q, p, pool, torch::tensor(4.0), 0.99, &share);
  EXPECT_NEAR(share, 1.0 / 3.0, 1e-6);
  auto same = unit(30);
  auto collapsed = same.unsqueeze(0).expand({4, 2});
  const double loss = nce_loss(unit(10).unsqueeze(0), same.unsqueeze(0), collapsed, torch::tensor(4.0), 0.99, &share)
                          .item<double>();
  EXPECT_EQ(share, 1.0);
  EXPECT_NEAR(loss, 0.0, 1e-7);
  EXPECT_GT(share, kNceCollapseShare);  // compute_loss warns
  nce_loss(q, p, pool, torch::tensor(4.0), 1.0, &share);  // dedup_threshold 1.0: nothing dropped
  EXPECT_EQ(share, 0.0);
}

TEST(Losses, ComputeLossNcePoolsTheNegativesOfAllPositions) {
  TableModel model(loss_table());
  config::LossOptions nce;
  nce.name = config::LossName::kNce;
  nce.num_negatives = 2;
  nce.learnable_scale = false;
  nce.scale = 2.0;
  // Supervised rows of loss_batch(2): inputs 1, 2, 3 -> targets 2, 3, 4, negatives {5,2}, {4,3}, {4,1}.
  auto table = loss_table();
  auto norm = [](const torch::Tensor& x) { return x / x.norm(2, -1, true); };
  auto q = norm(torch::stack({table[1], table[2], table[3]}));
  auto p = norm(torch::stack({table[2], table[3], table[4]}));
  auto pool = norm(torch::stack({table[5], table[2], table[4], table[3], table[4], table[1]}));  // [3 x 2, D]
  auto expected = nce_loss(q, p, pool, torch::tensor(1 / 0.5), 0.99);
  auto got = compute_loss(model, loss_batch(2), nce);
  EXPECT_TRUE(std::isfinite(got.item<double>()));
  EXPECT_NEAR(got.item<double>(), expected.item<double>(), 1e-6);
  got.backward();
  EXPECT_GT(model.named_parameters()["table"].grad()[5].abs().sum().item<double>(), 0);  // a pool-only item learns
}

}  // namespace
}  // namespace seqrec::train
