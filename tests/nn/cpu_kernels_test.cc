// The CPU building blocks of the fused kernels against plain references.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "seqrec/nn/cpu_kernels.h"

namespace seqrec::nn::cpu {
namespace {

TEST(CpuKernelsTest, FastExpIsWithinTwoUlpOverTheRange) {
  double worst = 0;
  for (float x = -87.f; x <= 88.f; x += 0.0137f) {
    const double ref = std::exp(static_cast<double>(x));
    worst = std::max(worst, std::abs(fast_exp(x) - ref) / ref);
  }
  EXPECT_LT(worst, 2.5e-7);  // 2 ulp of a float is 2.4e-7 relative
  EXPECT_NEAR(fast_exp(0.f), 1.f, 0.f);
  EXPECT_GT(fast_exp(-1000.f), 0.f);  // clamped, not NaN
  EXPECT_LT(fast_exp(-1000.f), 1e-37f);
}

TEST(CpuKernelsTest, SoftmaxRowMatchesTheDefinitionForEveryLength) {
  std::mt19937 gen(1);
  std::normal_distribution<float> normal(0.f, 3.f);
  for (int64_t n : {1, 2, 7, 8, 15, 16, 17, 33, 200}) {
    std::vector<float> row(n), ref(n);
    for (auto& v : row) v = normal(gen);
    double mx = row[0], sum = 0;
    for (float v : row) mx = std::max<double>(mx, v);
    for (int64_t j = 0; j < n; ++j) sum += ref[j] = static_cast<float>(std::exp(row[j] - mx));
    softmax_row(row.data(), n);
    for (int64_t j = 0; j < n; ++j) EXPECT_NEAR(row[j], ref[j] / sum, 1e-6) << "n " << n << " j " << j;
  }
}

TEST(CpuKernelsTest, SoftmaxBackwardRowIsTheJacobianProduct) {
  // dS_j = p_j (dP_j - sum_t dP_t p_t), by hand for p = (0.2, 0.3, 0.5), dP = (1, 0, -1).
  std::vector<float> p = {0.2f, 0.3f, 0.5f}, dp = {1.f, 0.f, -1.f};
  softmax_backward_row(dp.data(), p.data(), 3);
  const float dot = 0.2f - 0.5f;
  EXPECT_NEAR(dp[0], 0.2f * (1 - dot), 1e-7);
  EXPECT_NEAR(dp[1], 0.3f * (0 - dot), 1e-7);
  EXPECT_NEAR(dp[2], 0.5f * (-1 - dot), 1e-7);
}

TEST(CpuKernelsTest, DropoutRowKeepsTheRateAndIsAFunctionOfTheSeed) {
  const int64_t n = 1 << 20;
  std::vector<float> a(n), b(n), c(n);
  dropout_row(a.data(), n, 0.2, 42);
  dropout_row(b.data(), n, 0.2, 42);
  dropout_row(c.data(), n, 0.2, 43);
  int64_t dropped = 0, same_as_c = 0;
  for (int64_t j = 0; j < n; ++j) {
    ASSERT_TRUE(a[j] == 0.f || a[j] == 1.25f) << a[j];
    dropped += a[j] == 0.f;
    same_as_c += (a[j] == 0.f) == (c[j] == 0.f);
  }
  EXPECT_EQ(a, b);
  EXPECT_NEAR(static_cast<double>(dropped) / n, 0.2, 0.002);
  // Independent streams agree where both keep or both drop: 0.8^2 + 0.2^2 = 0.68 of the time.
  EXPECT_NEAR(static_cast<double>(same_as_c) / n, 0.68, 0.003);
  // Neighbouring entries are not correlated either.
  int64_t both = 0;
  for (int64_t j = 0; j + 1 < n; ++j) both += a[j] == 0.f && a[j + 1] == 0.f;
  EXPECT_NEAR(static_cast<double>(both) / (n - 1), 0.04, 0.002);
}

TEST(CpuKernelsTest, GemmMatchesNaiveProductsForEveryTransposition) {
  std::mt19937 gen(2);
  std::uniform_real_distribution<float> uni(-1.f, 1.f);
  const int64_t m = 5, n = 7, k = 3, pad = 2;  // leading dimensions larger than the rows
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      const int64_t a_rows = ta ? k : m, a_cols = ta ? m : k, b_rows = tb ? n : k, b_cols = tb ? k : n;
      const int64_t lda = a_cols + pad, ldb = b_cols + pad, ldc = n + pad;
      std::vector<float> a(a_rows * lda), b(b_rows * ldb), c(m * ldc, 1.f);
      for (auto& v : a) v = uni(gen);
      for (auto& v : b) v = uni(gen);
      gemm(ta, tb, m, n, k, 2.f, a.data(), lda, b.data(), ldb, 0.5f, c.data(), ldc);
      for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j) {
          double ref = 0;
          for (int64_t t = 0; t < k; ++t)
            ref += (ta ? a[t * lda + i] : a[i * lda + t]) * (tb ? b[j * ldb + t] : b[t * ldb + j]);
          EXPECT_NEAR(c[i * ldc + j], 2 * ref + 0.5, 1e-5) << ta << tb << " " << i << "," << j;
        }
    }
}

TEST(CpuKernelsTest, EpilogueRowAppliesBiasActivationScaleResidualAndKeep) {
  std::vector<float> z = {-1.f, 0.5f, 2.f}, y(3), bias = {0.5f, 0.5f, -1.f}, res = {10.f, 20.f, 30.f}, mask(3);
  Epilogue e;
  e.activation = Activation::kRelu;
  e.scale = 2.f;
  epilogue_forward_row(z.data(), y.data(), bias.data(), res.data(), 1.f, 3, e, 0, mask.data());
  EXPECT_EQ(z, (std::vector<float>{-0.5f, 1.f, 1.f}));  // z + bias kept for backward
  EXPECT_EQ(y, (std::vector<float>{10.f, 22.f, 32.f}));
  std::vector<float> gy = {1.f, 1.f, 1.f}, gz(3), gres(3), gbias(3, 0.f);
  epilogue_backward_row(gy.data(), gz.data(), gres.data(), gbias.data(), z.data(), 0.5f, 3, e, 0, mask.data());
  EXPECT_EQ(gz, (std::vector<float>{0.f, 1.f, 1.f}));  // keep 0.5 * scale 2 * relu'(z)
  EXPECT_EQ(gres, (std::vector<float>{0.5f, 0.5f, 0.5f}));
  EXPECT_EQ(gbias, gz);
}

}  // namespace
}  // namespace seqrec::nn::cpu
