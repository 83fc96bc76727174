// CPU building blocks of the fused attention kernels (see cpu_kernels.h).
#include "seqrec/nn/cpu_kernels.h"

#include <algorithm>
#include <cmath>
#include <cstring>


#ifdef SEQREC_HAVE_BLAS
// The Fortran BLAS entry point: every BLAS has it, and LibTorch's own (OpenBLAS here) is the one
// the process loads.
extern "C" void sgemm_(const char* transa, const char* transb, const int* m, const int* n, const int* k,
                       const float* alpha, const float* a, const int* lda, const float* b, const int* ldb,
                       const float* beta, float* c, const int* ldc);
#else
// No BLAS to link (e.g. a LibTorch with MKL linked in statically): go through ATen.
#include <ATen/ATen.h>
#endif

// One function body, compiled three times; the loader picks the widest the CPU runs.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define SEQREC_VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define SEQREC_VECTOR_CLONES
#endif

namespace seqrec::nn::cpu {

void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
          const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0) {  // C = beta * C
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) c[i * ldc + j] = beta == 0.f ? 0.f : beta * c[i * ldc + j];
    return;
  }
#ifdef SEQREC_HAVE_BLAS
  // Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: swap the operands.
  const char ta = trans_b ? 'T' : 'N', tb = trans_a ? 'T' : 'N';
  const int mm = static_cast<int>(n), nn = static_cast<int>(m), kk = static_cast<int>(k);
  const int la = static_cast<int>(ldb), lb = static_cast<int>(lda), lc = static_cast<int>(ldc);
  sgemm_(&ta, &tb, &mm, &nn, &kk, &alpha, b, &la, a, &lb, &beta, c, &lc);
#else
  auto view = [](const float* p, int64_t rows, int64_t cols, int64_t ld, bool trans) {
    auto t = at::from_blob(const_cast<float*>(p), {rows, cols}, {ld, 1}, at::kFloat);
    return trans ? t.t() : t;
  };
  auto out = at::from_blob(c, {m, n}, {ldc, 1}, at::kFloat);
  auto prod = at::mm(trans_a ? view(a, k, m, lda, true) : view(a, m, k, lda, false),
                     trans_b ? view(b, n, k, ldb, true) : view(b, k, n, ldb, false));
  if (beta == 0.f) out.copy_(prod.mul_(alpha));
  else out.mul_(beta).add_(prod, alpha);
#endif
}

// Inlined into the clones below so that each is vectorised for its own instruction set.
static inline __attribute__((always_inline)) float exp_inline(float x) {
  x = x < -87.3f ? -87.3f : x;  // one select each: nested ones are not if-converted
  x = x > 88.3f ? 88.3f : x;
  // round(x / ln 2) by the 1.5 * 2^23 trick: plain adds, vectorisable on every x86-64.
  const float n = (x * 1.44269504088896341f + 12582912.f) - 12582912.f;
  float r = x - n * 0.693359375f;                                     // Cody-Waite: ln 2 in two parts
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;                                         // Cephes expf polynomial
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;           // 2^n
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

float fast_exp(float x) { return exp_inline(x); }

SEQREC_VECTOR_CLONES void softmax_row(float* row, int64_t n) {
  if (n <= 0) return;
  float mx = row[0];
#pragma omp simd reduction(max : mx)
  for (int64_t j = 0; j < n; ++j) mx = row[j] > mx ? row[j] : mx;
  float sum = 0.f;
#pragma omp simd reduction(+ : sum)
  for (int64_t j = 0; j < n; ++j) {
    const float e = exp_inline(row[j] - mx);
    row[j] = e;
    sum += e;
  }
  const float inv = 1.f / sum;
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) row[j] *= inv;
}

SEQREC_VECTOR_CLONES void softmax_backward_row(float* dp, const float* p, int64_t n) {
  float dot = 0.f;
#pragma omp simd reduction(+ : dot)
  for (int64_t j = 0; j < n; ++j) dot += dp[j] * p[j];
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) dp[j] = p[j] * (dp[j] - dot);
}

SEQREC_VECTOR_CLONES void dropout_row(float* mask, int64_t n, double p, uint64_t seed) {
  // Counter-based: entry j's bits are a hash of (seed, j) (murmur3's finaliser around a keyed
  // counter), so a row is filled with 32-bit vector arithmetic and any entry can be redrawn alone.
  const uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  // P(drop) = threshold / 2^32 = p to within 2^-32.
  const uint32_t threshold = static_cast<uint32_t>(std::min(p, 1.0 - 1e-9) * 4294967296.0);
  const float keep = static_cast<float>(1.0 / (1.0 - p));
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) {
    uint32_t h = static_cast<uint32_t>(j) * 0x9e3779b9u + k0;
    h ^= h >> 16;
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    h = (h ^ k1) * 0xc2b2ae35u;
    h ^= h >> 16;
    mask[j] = h < threshold ? 0.f : keep;
  }
}

SEQREC_VECTOR_CLONES float dot(const float* a, const float* b, int64_t n) {
  float s = 0.f;
#pragma omp simd reduction(+ : s)
  for (int64_t j = 0; j < n; ++j) s += a[j] * b[j];
  return s;
}

SEQREC_VECTOR_CLONES void axpy(float* y, const float* x, float alpha, int64_t n) {
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) y[j] += alpha * x[j];
}

SEQREC_VECTOR_CLONES void add_row(float* y, const float* x, int64_t n) {
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) y[j] += x[j];
}

SEQREC_VECTOR_CLONES void mul_row(float* y, const float* x, const float* m, int64_t n) {
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) y[j] = x[j] * m[j];
}

SEQREC_VECTOR_CLONES void silu_scale_row(float* s, int64_t n, float scale) {
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) {
    const float x = s[j];
    s[j] = x / (1.f + exp_inline(-x)) * scale;
  }
}

SEQREC_VECTOR_CLONES void silu_scale_backward_row(float* s, float* a, const float* da, int64_t n, float scale) {
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) {
    const float x = s[j], sig = 1.f / (1.f + exp_inline(-x));
    a[j] = x * sig * scale;                                   // A = SiLU(S) / N
    s[j] = da[j] * sig * (1.f + x * (1.f - sig)) * scale;     // dS = dA SiLU'(S) / N
  }
}

SEQREC_VECTOR_CLONES void add_bias_tables_row(float* s, const float* pw, const float* tw, const uint8_t* tb,
                                              int64_t n) {
  if (pw) {
#pragma omp simd
    for (int64_t j = 0; j < n; ++j) s[j] += pw[j];
  }
  if (tw)
    for (int64_t j = 0; j < n; ++j) s[j] += tw[tb[j]];
}

void scatter_bias_tables_row(const float* ds, float* gpw, float* gtw, const uint8_t* tb, int64_t n) {
  if (gpw) add_row(gpw, ds, n);
  if (gtw)
    for (int64_t j = 0; j < n; ++j) gtw[tb[j]] += ds[j];
}

SEQREC_VECTOR_CLONES void layer_norm_row(const float* x, float* y, const float* w, const float* b, int64_t n,
                                         float eps, float* mean, float* rstd) {
  float sum = 0.f;
#pragma omp simd reduction(+ : sum)
  for (int64_t j = 0; j < n; ++j) sum += x[j];
  const float mu = sum / static_cast<float>(n);
  float sq = 0.f;  // two passes over a row in L1: no cancellation from E[x^2] - E[x]^2
#pragma omp simd reduction(+ : sq)
  for (int64_t j = 0; j < n; ++j) sq += (x[j] - mu) * (x[j] - mu);
  const float r = 1.f / std::sqrt(sq / static_cast<float>(n) + eps);
  if (w) {
#pragma omp simd
    for (int64_t j = 0; j < n; ++j) y[j] = (x[j] - mu) * r * w[j] + (b ? b[j] : 0.f);
  } else {
#pragma omp simd
    for (int64_t j = 0; j < n; ++j) y[j] = (x[j] - mu) * r;
  }
  *mean = mu;
  *rstd = r;
}

SEQREC_VECTOR_CLONES void layer_norm_backward_row(const float* dy, const float* x, const float* w, float mean,
                                                  float rstd, float* dx, float* dw, float* db, int64_t n) {
  // g = dy * w; dx = rstd * (g - mean(g) - xhat * mean(g * xhat)).
  float sum_g = 0.f, sum_gx = 0.f;
#pragma omp simd reduction(+ : sum_g, sum_gx)
  for (int64_t j = 0; j < n; ++j) {
    const float g = dy[j] * (w ? w[j] : 1.f), xhat = (x[j] - mean) * rstd;
    sum_g += g;
    sum_gx += g * xhat;
  }
  if (dw) {
#pragma omp simd
    for (int64_t j = 0; j < n; ++j) dw[j] += dy[j] * (x[j] - mean) * rstd;
  }
  if (db) add_row(db, dy, n);
  const float inv_n = 1.f / static_cast<float>(n), mg = sum_g * inv_n, mgx = sum_gx * inv_n;
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) {
    const float xhat = (x[j] - mean) * rstd;
    dx[j] = rstd * (dy[j] * (w ? w[j] : 1.f) - mg - xhat * mgx);
  }
}

SEQREC_VECTOR_CLONES void rms_norm_row(const float* x, float* y, const float* w, int64_t n, float eps,
                                       float* rstd) {
  float sq = 0.f;
#pragma omp simd reduction(+ : sq)
  for (int64_t j = 0; j < n; ++j) sq += x[j] * x[j];
  const float r = 1.f / std::sqrt(sq / static_cast<float>(n) + eps);
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) y[j] = x[j] * r * w[j];
  *rstd = r;
}

SEQREC_VECTOR_CLONES void rms_norm_backward_row(const float* dy, const float* x, const float* w, float rstd,
                                                float* dx, float* dw, int64_t n) {
  // y = x r w, r = (mean(x^2) + eps)^-1/2: dx = r (dy w - x r^2 mean(dy w x)).
  float dot = 0.f;
#pragma omp simd reduction(+ : dot)
  for (int64_t j = 0; j < n; ++j) dot += dy[j] * w[j] * x[j];
  const float c = rstd * rstd * dot / static_cast<float>(n);
  if (dw) {
#pragma omp simd
    for (int64_t j = 0; j < n; ++j) dw[j] += dy[j] * x[j] * rstd;
  }
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) dx[j] = rstd * (dy[j] * w[j] - x[j] * c);
}

SEQREC_VECTOR_CLONES void swiglu_row(const float* g, const float* u, float* y, int64_t n) {
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) y[j] = g[j] / (1.f + exp_inline(-g[j])) * u[j];
}

SEQREC_VECTOR_CLONES void swiglu_backward_row(const float* dy, const float* g, const float* u, float* dg, float* du,
                                              int64_t n) {
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) {
    const float x = g[j], sig = 1.f / (1.f + exp_inline(-x));
    dg[j] = dy[j] * u[j] * sig * (1.f + x * (1.f - sig));
    du[j] = dy[j] * x * sig;
  }
}

// Activation values and derivatives (inlined into the clones below).
static inline __attribute__((always_inline)) float act_value(float x, Activation a) {
  switch (a) {
    case Activation::kRelu: return x > 0.f ? x : 0.f;
    case Activation::kSilu: return x / (1.f + exp_inline(-x));
    case Activation::kGelu: return 0.5f * x * (1.f + std::erf(x * 0.70710678118654752f));  // exact (erf) GELU
    default: return x;
  }
}

static inline __attribute__((always_inline)) float act_grad(float x, Activation a) {
  switch (a) {
    case Activation::kRelu: return x > 0.f ? 1.f : 0.f;
    case Activation::kSilu: {
      const float sig = 1.f / (1.f + exp_inline(-x));
      return sig * (1.f + x * (1.f - sig));
    }
    case Activation::kGelu: {
      const float cdf = 0.5f * (1.f + std::erf(x * 0.70710678118654752f));
      return cdf + x * 0.39894228040143268f * exp_inline(-0.5f * x * x);
    }
    default: return 1.f;
  }
}

// The epilogue as a few short passes over a row that is in L1: each pass is a plain loop that
// vectorises (conditions on optional operands stay outside the loops).
template <Activation A>
static inline __attribute__((always_inline)) void activate(const float* z, float* y, float scale, int64_t n) {
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) y[j] = act_value(z[j], A) * scale;
}

template <Activation A>
static inline __attribute__((always_inline)) void activation_grad(const float* z, float* g, int64_t n) {
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) g[j] *= act_grad(z[j], A);
}

SEQREC_VECTOR_CLONES void epilogue_forward_row(float* z, float* y, const float* bias, const float* residual,
                                               float keep, int64_t n, const Epilogue& e, uint64_t row_seed,
                                               float* mask) {
  if (bias) add_row(z, bias, n);
  switch (e.activation) {
    case Activation::kRelu: activate<Activation::kRelu>(z, y, e.scale, n); break;
    case Activation::kSilu: activate<Activation::kSilu>(z, y, e.scale, n); break;
    case Activation::kGelu: activate<Activation::kGelu>(z, y, e.scale, n); break;
    default: activate<Activation::kNone>(z, y, e.scale, n); break;
  }
  if (e.dropout > 0.f) {
    dropout_row(mask, n, e.dropout, row_seed);
    mul_row(y, y, mask, n);
  }
  if (residual) add_row(y, residual, n);
  if (keep != 1.f) {
#pragma omp simd
    for (int64_t j = 0; j < n; ++j) y[j] *= keep;
  }
}

SEQREC_VECTOR_CLONES void epilogue_backward_row(const float* gy, float* gz, float* g_residual, float* g_bias,
                                                const float* z, float keep, int64_t n, const Epilogue& e,
                                                uint64_t row_seed, float* mask) {
  const float k = keep, ks = keep * e.scale;
  if (g_residual) {
#pragma omp simd
    for (int64_t j = 0; j < n; ++j) g_residual[j] = gy[j] * k;
  }
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) gz[j] = gy[j] * ks;
  if (e.dropout > 0.f) {
    dropout_row(mask, n, e.dropout, row_seed);
    mul_row(gz, gz, mask, n);
  }
  switch (e.activation) {
    case Activation::kRelu: activation_grad<Activation::kRelu>(z, gz, n); break;
    case Activation::kSilu: activation_grad<Activation::kSilu>(z, gz, n); break;
    case Activation::kGelu: activation_grad<Activation::kGelu>(z, gz, n); break;
    default: break;
  }
  if (g_bias) add_row(g_bias, gz, n);
}

}  // namespace seqrec::nn::cpu
