// layer_norm: one fused pass per row forward and backward (see layer_norm.h).
#include "seqrec/nn/layer_norm.h"

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include "seqrec/nn/cpu_kernels.h"

namespace seqrec::nn {
namespace {

constexpr int64_t kRowGrain = 256;

struct LayerNormFn : public torch::autograd::Function<LayerNormFn> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x_in,
                               const torch::Tensor& weight, const torch::Tensor& bias, double eps) {
    const int64_t d = x_in.size(-1);
    auto x = x_in.reshape({-1, d}).contiguous();                               // [N, D]
    const int64_t rows = x.size(0);
    auto y = torch::empty_like(x);
    auto stats = torch::empty({rows, 2}, x.options());                          // mean, rstd
    const float *xp = x.data_ptr<float>(), *wp = weight.numel() ? weight.data_ptr<float>() : nullptr,
                *bp = bias.numel() ? bias.data_ptr<float>() : nullptr;
    float *yp = y.data_ptr<float>(), *sp = stats.data_ptr<float>();
    at::parallel_for(0, rows, kRowGrain, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r)
        cpu::layer_norm_row(xp + r * d, yp + r * d, wp, bp, d, static_cast<float>(eps), sp + 2 * r, sp + 2 * r + 1);
    });
    ctx->save_for_backward({x, weight, stats});
    ctx->saved_data["has_bias"] = bias.numel() > 0;
    ctx->saved_data["shape"] = x_in.sizes().vec();
    return y.view(x_in.sizes());
  }

  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grads) {
    auto saved = ctx->get_saved_variables();
    const auto &x = saved[0], &weight = saved[1], &stats = saved[2];
    const bool has_w = weight.numel() > 0, has_b = ctx->saved_data["has_bias"].toBool();
    const int64_t rows = x.size(0), d = x.size(1), threads = at::get_num_threads();
    auto dy = grads[0].reshape({-1, d}).contiguous();
    auto dx = torch::empty_like(x);
    auto dw_parts = has_w ? torch::zeros({threads, d}, x.options()) : torch::Tensor();
    auto db_parts = has_b ? torch::zeros({threads, d}, x.options()) : torch::Tensor();
    const float *xp = x.data_ptr<float>(), *wp = has_w ? weight.data_ptr<float>() : nullptr,
                *sp = stats.data_ptr<float>(), *dyp = dy.data_ptr<float>();
    float* dxp = dx.data_ptr<float>();
    at::parallel_for(0, rows, kRowGrain, [&](int64_t begin, int64_t end) {
      const int64_t t = at::get_thread_num();
      float* dw = has_w ? dw_parts.data_ptr<float>() + t * d : nullptr;
      float* db = has_b ? db_parts.data_ptr<float>() + t * d : nullptr;
      for (int64_t r = begin; r < end; ++r)
        cpu::layer_norm_backward_row(dyp + r * d, xp + r * d, wp, sp[2 * r], sp[2 * r + 1], dxp + r * d, dw, db, d);
    });
    return {dx.view(ctx->saved_data["shape"].toIntVector()), has_w ? dw_parts.sum(0) : torch::Tensor(),
            has_b ? db_parts.sum(0) : torch::Tensor(), torch::Tensor()};
  }
};

struct RmsNormFn : public torch::autograd::Function<RmsNormFn> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x_in,
                               const torch::Tensor& weight_in, double eps) {
    const int64_t d = x_in.size(-1);
    auto x = x_in.reshape({-1, d}).contiguous();                               // [N, D]
    auto weight = weight_in.contiguous();
    const int64_t rows = x.size(0);
    auto y = torch::empty_like(x);
    auto rstd = torch::empty({rows}, x.options());
    const float *xp = x.data_ptr<float>(), *wp = weight.data_ptr<float>();
    float *yp = y.data_ptr<float>(), *rp = rstd.data_ptr<float>();
    at::parallel_for(0, rows, kRowGrain, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) cpu::rms_norm_row(xp + r * d, yp + r * d, wp, d, static_cast<float>(eps), rp + r);
    });
    ctx->save_for_backward({x, weight, rstd});
    ctx->saved_data["shape"] = x_in.sizes().vec();
    return y.view(x_in.sizes());
  }

  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grads) {
    auto saved = ctx->get_saved_variables();
    const auto &x = saved[0], &weight = saved[1], &rstd = saved[2];
    const int64_t rows = x.size(0), d = x.size(1), threads = at::get_num_threads();
    const bool need_w = ctx->needs_input_grad(1);
    auto dy = grads[0].reshape({-1, d}).contiguous();
    auto dx = torch::empty_like(x);
    auto dw_parts = need_w ? torch::zeros({threads, d}, x.options()) : torch::Tensor();
    const float *xp = x.data_ptr<float>(), *wp = weight.data_ptr<float>(), *rp = rstd.data_ptr<float>(),
                *dyp = dy.data_ptr<float>();
    float* dxp = dx.data_ptr<float>();
    at::parallel_for(0, rows, kRowGrain, [&](int64_t begin, int64_t end) {
      float* dw = need_w ? dw_parts.data_ptr<float>() + at::get_thread_num() * d : nullptr;
      for (int64_t r = begin; r < end; ++r)
        cpu::rms_norm_backward_row(dyp + r * d, xp + r * d, wp, rp[r], dxp + r * d, dw, d);
    });
    return {dx.view(ctx->saved_data["shape"].toIntVector()), need_w ? dw_parts.sum(0) : torch::Tensor(),
            torch::Tensor()};
  }
};

}  // namespace

torch::Tensor rms_norm(const torch::Tensor& x, const torch::Tensor& weight, double eps) {
  if (!x.device().is_cpu() || x.scalar_type() != torch::kFloat || weight.scalar_type() != torch::kFloat) {
    auto xf = x.to(torch::kFloat);
    auto normed = xf * torch::rsqrt(xf.pow(2).mean(-1, /*keepdim=*/true) + eps);
    return (normed * weight.to(torch::kFloat)).to(x.scalar_type());
  }
  return RmsNormFn::apply(x, weight, eps);
}

torch::Tensor layer_norm(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias, double eps) {
  if (!x.device().is_cpu() || x.scalar_type() != torch::kFloat)
    return torch::layer_norm(x, {x.size(-1)}, weight, bias, eps);
  auto none = torch::zeros({0}, x.options());
  return LayerNormFn::apply(x, weight.defined() ? weight : none, bias.defined() ? bias : none, eps);
}

}  // namespace seqrec::nn
