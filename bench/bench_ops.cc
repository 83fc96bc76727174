// Component timings of one SASRec / HSTU training step on the shapes of the ML-1M configs, and the
// machine's fp32 and bf16 matrix-multiply peaks, so that model throughput can be read against both.
// Usage: bench_ops [--batch B] [--width W] [--dim D] [--reps N]   (prints one JSON line per op)
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "seqrec/common/allocator.h"
#include "seqrec/nn/attention.h"
#include "seqrec/nn/fused_linear.h"

using Clock = std::chrono::steady_clock;

namespace {

// Median seconds of fn over reps runs (after one warm-up).
double median_seconds(const std::function<void()>& fn, int reps) {
  fn();
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    auto a = Clock::now();
    fn();
    t.push_back(std::chrono::duration<double>(Clock::now() - a).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

std::string only;  // --only NAME: run just the ops whose name contains NAME

// Times fn (median of reps) and prints it, unless --only filters it out.
void time_op(const std::string& name, const std::function<void()>& fn, int reps, double flops) {
  if (!only.empty() && name.find(only) == std::string::npos) return;
  const double seconds = median_seconds(fn, reps);
  std::printf("{\"op\":\"%s\",\"ms\":%.3f,\"gflops\":%.1f}\n", name.c_str(), seconds * 1e3,
              flops > 0 ? flops / seconds / 1e9 : 0.0);
}

}  // namespace

int main(int argc, char** argv) {
  seqrec::ensure_passive_openmp(argv);
  seqrec::tune_allocator();
  int64_t b = 128, w = 200, d = 50, reps = 20;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--batch") b = std::stoll(argv[i + 1]);
    else if (a == "--width") w = std::stoll(argv[i + 1]);
    else if (a == "--dim") d = std::stoll(argv[i + 1]);
    else if (a == "--reps") reps = std::stoll(argv[i + 1]);
    else if (a == "--only") only = argv[i + 1];
  }
  torch::set_num_threads(2);
  torch::manual_seed(0);
  {
    auto x = torch::randn({2048, 2048}), y = torch::randn({2048, 2048});
    time_op("matmul_2048_peak", [&] { torch::mm(x, y); }, 5, 2.0 * 2048 * 2048 * 2048);
    // bfloat16 (oneDNN's avx512_bf16 / AMX kernels where the CPU has them): train.precision bf16.
    auto xb = x.to(torch::kBFloat16), yb = y.to(torch::kBFloat16);
    time_op("matmul_2048_peak_bf16", [&] { torch::mm(xb, yb); }, 5, 2.0 * 2048 * 2048 * 2048);
    // The shape of an LLM tower's projections at d = 64 (stories260K): [8192 tokens, 64] x [64, 172].
    auto t = torch::randn({8192, 64}), w = torch::randn({172, 64});
    auto tb = t.to(torch::kBFloat16), wb = w.to(torch::kBFloat16);
    time_op("linear_8192x64x172", [&] { torch::linear(t, w); }, reps, 2.0 * 8192 * 64 * 172);
    time_op("linear_8192x64x172_bf16", [&] { torch::linear(tb, wb); }, reps, 2.0 * 8192 * 64 * 172);
  }
  // Lengths like ML-1M under L = 200 (a quarter of the users at the cap, the rest spread below).
  auto lengths = torch::randint(20, w + 1, {b}, torch::kLong);
  lengths.narrow(0, 0, b / 4).fill_(w);
  const double tokens = lengths.sum().item<double>();
  double attn_flops = 0;  // causal: QK^T and PV over the lower triangle, forward
  for (int64_t i = 0; i < b; ++i) {
    const double l = lengths[i].item<double>();
    attn_flops += 2.0 * 2 * l * (l + 1) / 2 * d;
  }
  auto x = torch::randn({b, w, d}, torch::requires_grad());
  auto g = torch::randn({b, w, d});
  auto wt = torch::randn({d, d}, torch::requires_grad()), bias = torch::zeros({d}, torch::requires_grad());
  const double lin_flops = 2.0 * b * w * d * d;
  time_op("linear_fwd_bwd_aten", [&] { torch::linear(x, wt, bias).backward(g); }, reps, 3 * lin_flops);
  seqrec::nn::FusedLinearOptions relu_drop;
  relu_drop.activation = seqrec::nn::cpu::Activation::kRelu;
  relu_drop.dropout = 0.2;
  relu_drop.training = true;
  time_op("linear_relu_dropout_fwd_bwd_aten", [&] {
           torch::dropout(torch::relu(torch::linear(x, wt, bias)), 0.2, true).backward(g);
         }, reps, 3 * lin_flops);
  time_op("linear_relu_dropout_fwd_bwd_fused", [&] {
           seqrec::nn::fused_linear(x, wt, bias, relu_drop).backward(g);
         }, reps, 3 * lin_flops);
  time_op("layer_norm_fwd_bwd", [&] { torch::layer_norm(x, {d}).backward(g); }, reps, 0);
  time_op("mul_fwd", [&] { torch::NoGradGuard ng; auto y = x * g; }, reps, 0);
  auto q = torch::randn({b, 1, w, d}, torch::requires_grad()), k = torch::randn({b, 1, w, d}, torch::requires_grad()),
       v = torch::randn({b, 1, w, d}, torch::requires_grad());
  auto go = torch::randn({b, 1, w, d});
  time_op("attention_fwd_bwd_jagged", [&] {
           seqrec::nn::jagged_causal_attention(q, k, v, lengths, 0.2, true).backward(go);
         }, reps, 3 * attn_flops);
  time_op("attention_fwd_jagged", [&] {
           torch::NoGradGuard ng;
           seqrec::nn::jagged_causal_attention(q, k, v, lengths, 0.2, true);
         }, reps, attn_flops);
  time_op("attention_fwd_bwd_padded", [&] {
           seqrec::nn::padded_causal_attention(q, k, v, lengths, 0.2, true).backward(go);
         }, reps, 3 * attn_flops);
  time_op("pointwise_fwd_bwd_jagged", [&] {
           seqrec::nn::jagged_pointwise_attention(q, k, v, torch::Tensor(), lengths, w).backward(go);
         }, reps, 3 * attn_flops);
  time_op("pointwise_fwd_bwd_padded", [&] {
           seqrec::nn::padded_pointwise_attention(q, k, v, torch::Tensor(), lengths, w).backward(go);
         }, reps, 3 * attn_flops);
  std::printf("{\"tokens\":%.0f,\"batch\":%ld,\"width\":%ld,\"dim\":%ld}\n", tokens, long(b), long(w), long(d));
  return 0;
}
