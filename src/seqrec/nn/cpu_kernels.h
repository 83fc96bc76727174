// Small CPU building blocks for the fused attention kernels: a row-major GEMM on the BLAS that
// LibTorch links (OpenBLAS here), and vectorised row operations (softmax, its backward, SiLU,
// dropout masks). No torch: plain pointers, float32, row-major, `ld` = row stride in elements.
//
// The row operations are compiled for AVX-512, AVX2 and baseline x86-64 and picked at load time
// (GCC target_clones), as ATen picks its kernels; results agree across them to float rounding.
#pragma once

#include <cstdint>

namespace seqrec::nn::cpu {

/// C[m, n] = alpha * op(A)[m, k] * op(B)[k, n] + beta * C, row-major, single call into sgemm.
/// op(X) = X^T when trans_x. Inside a parallel region OpenBLAS runs it on the calling thread.
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
          const float* b, int64_t ldb, float beta, float* c, int64_t ldc);

/// exp(x) to about 2 ulp for x in [-87, 88] (clamped outside): the Cephes polynomial, vectorisable.
float fast_exp(float x);

/// In place: row[0..n) = softmax(row[0..n)).
void softmax_row(float* row, int64_t n);

/// Softmax backward for one row, in place on dp: dp[j] = p[j] * (dp[j] - sum_t dp[t] p[t]), j < n.
void softmax_backward_row(float* dp, const float* p, int64_t n);

/// Dropout keep-mask of n entries from its own stream: 0 with probability p, else 1 / (1 - p).
void dropout_row(float* mask, int64_t n, double p, uint64_t seed);

/// sum_j a[j] b[j], j < n.
float dot(const float* a, const float* b, int64_t n);

/// y[j] += alpha * x[j], j < n.
void axpy(float* y, const float* x, float alpha, int64_t n);

/// y[j] += x[j], j < n.
void add_row(float* y, const float* x, int64_t n);

/// y[j] = x[j] * m[j], j < n.
void mul_row(float* y, const float* x, const float* m, int64_t n);

/// HSTU pointwise attention rows: a[j] = SiLU(s[j]) * scale (in place on s), j < n.
void silu_scale_row(float* s, int64_t n, float scale);

/// Backward of silu_scale_row given the pre-activation s (overwritten with dS) and dA (read):
/// s[j] = dA[j] * SiLU'(s[j]) * scale, and a[j] = SiLU(s[j]) * scale written to a, j < n.
void silu_scale_backward_row(float* s, float* a, const float* da, int64_t n, float scale);

/// Relative-bias row (HSTU): s[j] += pw[j] + tw[tb[j]], j < n; pw or tw may be null (then tb is
/// unused when tw is null).
void add_bias_tables_row(float* s, const float* pw, const float* tw, const uint8_t* tb, int64_t n);

/// Its backward: gpw[j] += ds[j] and gtw[tb[j]] += ds[j], j < n (either may be null).
void scatter_bias_tables_row(const float* ds, float* gpw, float* gtw, const uint8_t* tb, int64_t n);

/// LayerNorm of one row: y = (x - mean) * rstd * w + b (w, b may be null: no affine), with
/// rstd = 1 / sqrt(var + eps) (biased variance); writes mean and rstd for the backward.
void layer_norm_row(const float* x, float* y, const float* w, const float* b, int64_t n, float eps, float* mean,
                    float* rstd);

/// Its backward: dx from dy (dx may alias dy), and dw[j] += dy[j] * xhat[j], db[j] += dy[j]
/// (dw, db may be null).
void layer_norm_backward_row(const float* dy, const float* x, const float* w, float mean, float rstd, float* dx,
                             float* dw, float* db, int64_t n);

/// RMSNorm of one row: y = x * rstd * w, rstd = 1 / sqrt(mean(x^2) + eps); writes rstd.
void rms_norm_row(const float* x, float* y, const float* w, int64_t n, float eps, float* rstd);

/// Its backward: dx (may alias dy) and dw[j] += dy[j] * x[j] * rstd.
void rms_norm_backward_row(const float* dy, const float* x, const float* w, float rstd, float* dx, float* dw,
                           int64_t n);

/// SwiGLU (LLaMA's MLP): y[j] = SiLU(g[j]) * u[j], j < n.
void swiglu_row(const float* g, const float* u, float* y, int64_t n);

/// Its backward: dg[j] = dy[j] u[j] SiLU'(g[j]), du[j] = dy[j] SiLU(g[j]).
void swiglu_backward_row(const float* dy, const float* g, const float* u, float* dg, float* du, int64_t n);

/// Activation of a fused linear layer's epilogue.
enum class Activation { kNone, kRelu, kGelu, kSilu };

/// The element-wise tail of a linear layer y = x W^T, per row of n outputs:
/// z = xW^T + bias; y = (dropout(act(z) * scale) + residual) * keep.
struct Epilogue {
  Activation activation = Activation::kNone;
  float scale = 1.f;
  float dropout = 0.f;  ///< probability of dropping (0: no dropout)
};

/// Forward of one row: z[j] += bias[j] (bias may be null) and y[j] as above (residual may be null;
/// y may alias z when the activation is kNone). mask: n floats of scratch for the dropout keep-mask
/// drawn from row_seed.
void epilogue_forward_row(float* z, float* y, const float* bias, const float* residual, float keep, int64_t n,
                          const Epilogue& e, uint64_t row_seed, float* mask);

/// Backward of one row, from gy: gz[j] = dy/dz[j] * gy[j] (gz may alias gy), g_residual[j] = keep *
/// gy[j] when g_residual is not null; g_bias[j] += gz[j] when g_bias is not null. z is the saved
/// pre-activation (unused for kNone); the dropout mask is redrawn from row_seed into `mask`.
void epilogue_backward_row(const float* gy, float* gz, float* g_residual, float* g_bias, const float* z, float keep,
                           int64_t n, const Epilogue& e, uint64_t row_seed, float* mask);

}  // namespace seqrec::nn::cpu
