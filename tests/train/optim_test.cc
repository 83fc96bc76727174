// Tests of AdamW, the learning-rate schedules and gradient clipping.
#include <torch/torch.h>

#include <cmath>

#include "seqrec/common/error.h"
#include "seqrec/train/optim.h"
#include "seqrec/train/zero.h"
#include "support.h"

namespace seqrec::train {
namespace {

using Named = std::vector<std::pair<std::string, torch::Tensor>>;

void set_grad(torch::Tensor& p, const torch::Tensor& g) { p.mutable_grad() = g.clone(); }

TEST(AdamW, MatchesHandComputedTwoSteps) {
  const double lr = 0.1, b1 = 0.9, b2 = 0.999, eps = 1e-8, wd = 0.01;
  auto p = torch::tensor({1.0}, torch::kDouble).requires_grad_();
  auto frozen = torch::tensor({3.0}, torch::kDouble).requires_grad_();  // never gets a gradient
  AdamW opt({{"p", p}, {"frozen", frozen}}, {lr, b1, b2, eps, wd});

  // Step 1, g = 0.5: p = 1 * (1 - 0.001) = 0.999; m = 0.05; v = 0.00025;
  // p -= 0.1 / 0.1 * 0.05 / (sqrt(0.00025) / sqrt(0.001) + 1e-8) = 0.05 / 0.50000001.
  set_grad(p, torch::tensor({0.5}, torch::kDouble));
  opt.step(lr);
  EXPECT_EQ(opt.step_count(), 1);
  EXPECT_NEAR(p.item<double>(), 0.999 - 0.05 / 0.50000001, 1e-12);
  EXPECT_NEAR(p.item<double>(), 0.899000002, 1e-12);

  // Step 2, g = -0.2: p *= 0.999; m = 0.045 - 0.02 = 0.025; v = 0.999 * 0.00025 + 0.001 * 0.04 = 0.00028975;
  // p -= 0.1 / 0.19 * 0.025 / (sqrt(0.00028975) / sqrt(0.001999) + 1e-8).
  set_grad(p, torch::tensor({-0.2}, torch::kDouble));
  opt.step(lr);
  const double expected =
      0.899000002 * 0.999 - 0.1 / 0.19 * 0.025 / (std::sqrt(0.00028975) / std::sqrt(1 - 0.999 * 0.999) + 1e-8);
  EXPECT_NEAR(p.item<double>(), expected, 1e-12);
  EXPECT_NEAR(p.item<double>(), 0.8635404181145108, 1e-12);
  EXPECT_EQ(frozen.item<double>(), 3.0);

  auto state = opt.state();
  ASSERT_EQ(state.size(), 4u);
  EXPECT_EQ(state[0].first, "p.exp_avg");
  EXPECT_EQ(state[1].first, "p.exp_avg_sq");
  EXPECT_NEAR(state[0].second.item<double>(), 0.025, 1e-15);
  EXPECT_NEAR(state[1].second.item<double>(), 0.00028975, 1e-15);
  EXPECT_EQ(state[2].first, "frozen.exp_avg");
}

TEST(AdamW, ZeroGradClearsGradients) {
  auto p = torch::ones({3}).requires_grad_();
  AdamW opt({{"p", p}}, {});
  set_grad(p, torch::ones({3}));
  opt.zero_grad();
  EXPECT_EQ(p.grad().abs().sum().item<float>(), 0.f);
}

TEST(Schedule, ConstantWithWarmup) {
  EXPECT_DOUBLE_EQ(scheduled_lr(config::Schedule::kConstant, 0.01, 0, 100, 0, 0), 0.01);
  EXPECT_DOUBLE_EQ(scheduled_lr(config::Schedule::kConstant, 0.01, 99, 100, 0, 0), 0.01);
  // Warm-up over 4 steps: (step + 1) / 4.
  EXPECT_DOUBLE_EQ(scheduled_lr(config::Schedule::kConstant, 0.01, 0, 100, 4, 0), 0.0025);
  EXPECT_DOUBLE_EQ(scheduled_lr(config::Schedule::kConstant, 0.01, 2, 100, 4, 0), 0.0075);
  EXPECT_DOUBLE_EQ(scheduled_lr(config::Schedule::kConstant, 0.01, 3, 100, 4, 0), 0.01);
  EXPECT_DOUBLE_EQ(scheduled_lr(config::Schedule::kConstant, 0.01, 50, 100, 4, 0), 0.01);
  // From 1/100 of the peak (Molar): 0.01 + 0.99 * (step + 1) / 4 of lr.
  EXPECT_DOUBLE_EQ(scheduled_lr(config::Schedule::kConstant, 1.0, 0, 100, 4, 0, 0.01), 0.01 + 0.99 * 0.25);
  EXPECT_DOUBLE_EQ(scheduled_lr(config::Schedule::kConstant, 1.0, 2, 100, 4, 0, 0.01), 0.01 + 0.99 * 0.75);
  EXPECT_DOUBLE_EQ(scheduled_lr(config::Schedule::kConstant, 1.0, 3, 100, 4, 0, 0.01), 1.0);
  EXPECT_DOUBLE_EQ(scheduled_lr(config::Schedule::kCosine, 1.0, 1, 14, 4, 0.1, 0.5), 0.75);  // the decay is unchanged
  EXPECT_NEAR(scheduled_lr(config::Schedule::kCosine, 1.0, 6, 14, 4, 0.1, 0.5), 0.9140576474687263, 1e-12);
}

TEST(Schedule, CosineWithWarmupAndFloor) {
  // lr 1, 14 steps, 4 warm-up, floor 0.1: decay over steps 4..14.
  EXPECT_DOUBLE_EQ(scheduled_lr(config::Schedule::kCosine, 1.0, 1, 14, 4, 0.1), 0.5);
  EXPECT_NEAR(scheduled_lr(config::Schedule::kCosine, 1.0, 4, 14, 4, 0.1), 1.0, 1e-12);
  // progress 0.2: 0.1 + 0.9 * 0.5 * (1 + cos(0.2 pi)) = 0.9140576474687263
  EXPECT_NEAR(scheduled_lr(config::Schedule::kCosine, 1.0, 6, 14, 4, 0.1), 0.9140576474687263, 1e-12);
  EXPECT_NEAR(scheduled_lr(config::Schedule::kCosine, 1.0, 9, 14, 4, 0.1), 0.55, 1e-12);
  EXPECT_NEAR(scheduled_lr(config::Schedule::kCosine, 1.0, 14, 14, 4, 0.1), 0.1, 1e-12);
  EXPECT_NEAR(scheduled_lr(config::Schedule::kCosine, 1.0, 30, 14, 4, 0.1), 0.1, 1e-12);  // clamped after the end
  // No warm-up, no floor: halfway is lr / 2.
  EXPECT_NEAR(scheduled_lr(config::Schedule::kCosine, 0.2, 5, 10, 0, 0.0), 0.1, 1e-12);
}

TEST(ClipGradNorm, ScalesToMaxNorm) {
  auto a = torch::zeros({2}).requires_grad_();
  auto b = torch::zeros({1}).requires_grad_();
  auto c = torch::zeros({1}).requires_grad_();  // no gradient: ignored
  set_grad(a, torch::tensor({3.f, 0.f}));
  set_grad(b, torch::tensor({4.f}));
  Named params = {{"a", a}, {"b", b}, {"c", c}};
  EXPECT_NEAR(clip_grad_norm(params, 10.0), 5.0, 1e-9);  // below the limit: unchanged
  EXPECT_TRUE(torch::equal(a.grad(), torch::tensor({3.f, 0.f})));
  EXPECT_NEAR(clip_grad_norm(params, 1.0), 5.0, 1e-9);
  EXPECT_NEAR(a.grad()[0].item<double>(), 0.6, 1e-5);
  EXPECT_NEAR(b.grad()[0].item<double>(), 0.8, 1e-5);
  const double after = std::sqrt(a.grad().pow(2).sum().item<double>() + b.grad().pow(2).sum().item<double>());
  EXPECT_NEAR(after, 1.0, 1e-5);
  EXPECT_LE(after, 1.0 + 1e-6);
  EXPECT_FALSE(c.grad().defined());
}

TEST(AdamW, StateRoundTripContinuesIdentically) {
  torch::manual_seed(3);
  auto w1 = torch::randn({3, 2}).requires_grad_();
  auto b1 = torch::randn({2}).requires_grad_();
  auto w2 = w1.detach().clone().requires_grad_();
  auto b2 = b1.detach().clone().requires_grad_();
  AdamWOptions o{0.01, 0.9, 0.98, 1e-8, 0.1};
  AdamW a({{"w", w1}, {"b", b1}}, o);
  AdamW b({{"w", w2}, {"b", b2}}, o);
  std::vector<std::pair<torch::Tensor, torch::Tensor>> grads;
  for (int i = 0; i < 6; ++i) grads.emplace_back(torch::randn({3, 2}), torch::randn({2}));
  // a: 3 steps; b: copies a's state (and weights) and both continue with the same gradients.
  for (int i = 0; i < 3; ++i) {
    set_grad(w1, grads[i].first);
    set_grad(b1, grads[i].second);
    a.step(0.01);
  }
  {
    torch::NoGradGuard ng;
    w2.copy_(w1);
    b2.copy_(b1);
  }
  Named saved;
  for (const auto& [n, t] : a.state()) saved.emplace_back(n, t.clone());
  b.load_state(saved, a.step_count());
  EXPECT_EQ(b.step_count(), 3);
  for (int i = 3; i < 6; ++i) {
    set_grad(w1, grads[i].first);
    set_grad(b1, grads[i].second);
    a.step(0.01);
    set_grad(w2, grads[i].first);
    set_grad(b2, grads[i].second);
    b.step(0.01);
  }
  EXPECT_TRUE(torch::equal(w1, w2));
  EXPECT_TRUE(torch::equal(b1, b2));
  auto sa = a.state(), sb = b.state();
  for (size_t i = 0; i < sa.size(); ++i) EXPECT_TRUE(torch::equal(sa[i].second, sb[i].second)) << sa[i].first;

  // Without the state (fresh moments, step 0) the continuation differs: the round trip matters.
  auto w3 = w1.detach().clone().requires_grad_();
  AdamW fresh({{"w", w3}}, o);
  set_grad(w3, grads[0].first);
  fresh.step(0.01);
  set_grad(w1, grads[0].first);
  a.step(0.01);
  EXPECT_FALSE(torch::equal(w1, w3));
}

TEST(AdamW, LoadStateRejectsMissingOrMisshapenTensors) {
  auto w = torch::zeros({2, 2}).requires_grad_();
  AdamW opt({{"w", w}}, {});
  ASSERT_THROWS_WITH(opt.load_state({{"w.exp_avg", torch::zeros({2, 2})}}, 1), "w.exp_avg_sq");
  try {
    opt.load_state({}, 1);
    FAIL();
  } catch (const CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find("missing"), std::string::npos);
  }
  ASSERT_THROWS_WITH(opt.load_state({{"w.exp_avg", torch::zeros({2})}, {"w.exp_avg_sq", torch::zeros({2})}}, 1),
                     "shape mismatch for 'w'");
}

// ZeRO-1/2: an optimizer that owns a share of the parameters updates and keeps moments for that
// share only, and its state lists only those; loading takes its share out of a full state.
TEST(AdamW, OwnedShareIsTheOnlyOneUpdatedAndStored) {
  auto a = torch::tensor({1.0}, torch::kDouble).requires_grad_();
  auto b = torch::tensor({2.0}, torch::kDouble).requires_grad_();
  AdamW full({{"a", a.detach().clone().requires_grad_()}, {"b", b.detach().clone().requires_grad_()}}, {0.1});
  AdamW share({{"a", a}, {"b", b}}, {0.1}, {false, true});
  for (auto* opt : {&full, &share}) {
    for (auto& [name, p] : opt->params()) {
      auto q = p;
      set_grad(q, torch::tensor({0.5}, torch::kDouble));
    }
    opt->step(0.1);
  }
  EXPECT_EQ(a.item<double>(), 1.0);  // not owned: untouched
  EXPECT_EQ(b.item<double>(), full.params()[1].second.item<double>());
  EXPECT_NE(b.item<double>(), 2.0);
  auto st = share.state();
  ASSERT_EQ(st.size(), 2u);
  EXPECT_EQ(st[0].first, "b.exp_avg");
  EXPECT_EQ(st[1].first, "b.exp_avg_sq");
  AdamW again({{"a", a}, {"b", b}}, {0.1}, {false, true});
  again.load_state(full.state(), 1);  // the full state holds a's moments too: ignored
  EXPECT_TRUE(again.state()[0].second.equal(full.state()[2].second));
  EXPECT_THROW((AdamW({{"a", a}}, {0.1}, {true, false})), Error);
}

// Parameters are cut into contiguous runs from the last one, balanced by element count.
TEST(ShardPlan, BalancedContiguousRunsFromTheLastParameter) {
  auto t = [](int64_t n) { return torch::zeros({n}); };
  // Element counts 10, 10, 40, 20, 20 (total 100). From the end: midpoints 10, 30, 60, 85, 95 of
  // 100 -> ranks 0, 0, 1, 1, 1 for world 2 (shares 40 / 60); world 4: 0, 1, 2, 3, 3.
  NamedTensors ps = {{"p0", t(10)}, {"p1", t(10)}, {"p2", t(40)}, {"p3", t(20)}, {"p4", t(20)}};
  const ShardPlan two = ShardPlan::balanced(ps, 2);
  EXPECT_EQ(two.owner, (std::vector<int64_t>{1, 1, 1, 0, 0}));
  EXPECT_EQ(two.numel_owned_by(0, ps), 40);
  EXPECT_EQ(two.numel_owned_by(1, ps), 60);
  EXPECT_EQ(ShardPlan::balanced(ps, 4).owner, (std::vector<int64_t>{3, 3, 2, 1, 0}));
  EXPECT_EQ(ShardPlan::balanced(ps, 1).owner, (std::vector<int64_t>{0, 0, 0, 0, 0}));
  EXPECT_EQ(two.owned_by(0), (std::vector<bool>{false, false, false, true, true}));
}

}  // namespace
}  // namespace seqrec::train
