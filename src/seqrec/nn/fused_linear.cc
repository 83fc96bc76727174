// fused_linear: at::mm plus one fused element-wise pass each way (see fused_linear.h).
#include "seqrec/nn/fused_linear.h"

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <vector>

#include "seqrec/common/random.h"

namespace seqrec::nn {
namespace {

cpu::Epilogue epilogue_of(const FusedLinearOptions& o) {
  cpu::Epilogue e;
  e.activation = o.activation;
  e.scale = static_cast<float>(o.scale);
  e.dropout = o.training ? static_cast<float>(o.dropout) : 0.f;
  return e;
}

// Rows per GEMM + epilogue chunk: big enough for an efficient GEMM, small enough to stay in cache.
constexpr int64_t kChunkRows = 256;

// The op-by-op computation: reference for tests and the path on other devices and dtypes.
torch::Tensor composite(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias,
                        const FusedLinearOptions& o, const torch::Tensor& residual, const torch::Tensor& keep) {
  auto z = torch::linear(x, weight, bias);                                   // [..., out]
  switch (o.activation) {
    case cpu::Activation::kRelu: z = torch::relu(z); break;
    case cpu::Activation::kSilu: z = torch::silu(z); break;
    case cpu::Activation::kGelu: z = torch::gelu(z); break;
    default: break;
  }
  if (o.scale != 1.0) z = z * o.scale;
  if (o.training && o.dropout > 0) z = torch::dropout(z, o.dropout, true);
  if (residual.defined()) z = z + residual;
  if (keep.defined()) {
    auto shape = z.sizes().vec();
    shape.back() = 1;
    z = z * keep.reshape(shape).to(z.scalar_type());
  }
  return z;
}

struct FusedLinear : public torch::autograd::Function<FusedLinear> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x,
                               const torch::Tensor& weight, const torch::Tensor& bias, const torch::Tensor& residual,
                               const torch::Tensor& keep, int64_t activation, double scale, double dropout,
                               bool training) {
    const int64_t in = weight.size(1), out = weight.size(0);
    auto x2 = x.reshape({-1, in}).contiguous();                               // [N, in]
    const int64_t rows = x2.size(0);
    auto w = weight.contiguous();                                               // [out, in]
    auto z = torch::empty({rows, out}, x2.options());                          // [N, out]
    FusedLinearOptions o;
    o.activation = static_cast<cpu::Activation>(activation);
    o.scale = scale;
    o.dropout = dropout;
    o.training = training;
    const cpu::Epilogue e = epilogue_of(o);
    const bool keep_z = e.activation != cpu::Activation::kNone;
    auto y = keep_z ? torch::empty_like(z) : z;                                // [N, out]
    const uint64_t seed =
        e.dropout > 0 ? static_cast<uint64_t>(torch::randint(1LL << 62, {1}, torch::kLong).item<int64_t>()) : 0;
    auto res = residual.numel() > 0 ? residual.reshape({-1, out}).contiguous() : torch::Tensor();
    auto kp = keep.numel() > 0 ? keep.reshape({-1}).to(torch::kFloat).contiguous() : torch::Tensor();
    TORCH_CHECK(!res.defined() || res.size(0) == rows, "fused_linear: residual has ", res.size(0), " rows, x ", rows);
    TORCH_CHECK(!kp.defined() || kp.size(0) == rows, "fused_linear: keep has ", kp.size(0), " values, x ", rows);
    const float *xp = x2.data_ptr<float>(), *wp = w.data_ptr<float>();
    float *zp = z.data_ptr<float>(), *yp = y.data_ptr<float>();
    const float* bp = bias.numel() > 0 ? bias.contiguous().data_ptr<float>() : nullptr;
    const float* rp = res.defined() ? res.data_ptr<float>() : nullptr;
    const float* kpp = kp.defined() ? kp.data_ptr<float>() : nullptr;
    // Each thread takes a contiguous range of rows, in chunks: the GEMM of a chunk, then its
    // epilogue while the chunk is still in cache.
    at::parallel_for(0, rows, kChunkRows, [&](int64_t begin, int64_t end) {
      std::vector<float> mask(e.dropout > 0 ? out : 0);
      for (int64_t c0 = begin; c0 < end; c0 += kChunkRows) {
        const int64_t c1 = std::min(end, c0 + kChunkRows);
        cpu::gemm(false, true, c1 - c0, out, in, 1.f, xp + c0 * in, in, wp, in, 0.f, zp + c0 * out, out);  // z = x W^T
        for (int64_t r = c0; r < c1; ++r)
          cpu::epilogue_forward_row(zp + r * out, yp + r * out, bp, rp ? rp + r * out : nullptr,
                                    kpp ? kpp[r] : 1.f, out, e, derive_seed({seed, uint64_t(r)}), mask.data());
      }
    });
    ctx->save_for_backward({x2, w, keep_z ? z : torch::Tensor(), kp.defined() ? kp : torch::Tensor()});
    ctx->saved_data["activation"] = activation;
    ctx->saved_data["scale"] = scale;
    ctx->saved_data["dropout"] = static_cast<double>(e.dropout);
    ctx->saved_data["seed"] = static_cast<int64_t>(seed);
    ctx->saved_data["has_bias"] = bias.numel() > 0;
    ctx->saved_data["has_residual"] = res.defined();
    ctx->saved_data["x_shape"] = x.sizes().vec();
    auto shape = x.sizes().vec();
    shape.back() = out;
    return y.view(shape);
  }

  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grads) {
    auto saved = ctx->get_saved_variables();
    const auto &x2 = saved[0], &weight = saved[1], &z = saved[2], &kp = saved[3];
    cpu::Epilogue e;
    e.activation = static_cast<cpu::Activation>(ctx->saved_data["activation"].toInt());
    e.scale = static_cast<float>(ctx->saved_data["scale"].toDouble());
    e.dropout = static_cast<float>(ctx->saved_data["dropout"].toDouble());
    const uint64_t seed = static_cast<uint64_t>(ctx->saved_data["seed"].toInt());
    const bool has_bias = ctx->saved_data["has_bias"].toBool(), has_res = ctx->saved_data["has_residual"].toBool();
    const int64_t out = weight.size(0), rows = x2.size(0);
    const int64_t in = weight.size(1);
    auto gy = grads[0].reshape({-1, out}).contiguous();                        // [N, out]
    auto g_res = has_res ? torch::empty_like(gy) : torch::Tensor();
    const bool need_gx = ctx->needs_input_grad(0), need_gw = ctx->needs_input_grad(1);
    auto x_shape = ctx->saved_data["x_shape"].toIntVector();
    torch::Tensor gx = need_gx ? torch::empty({rows, in}, gy.options()) : torch::Tensor();  // [N, in]
    // Per-thread partial sums of the weight and bias gradients, added up at the end.
    const int64_t threads = at::get_num_threads();
    auto gw_parts = need_gw ? torch::zeros({threads, out, in}, gy.options()) : torch::Tensor();
    auto gb_parts = has_bias ? torch::zeros({threads, out}, gy.options()) : torch::Tensor();
    const float *gyp = gy.data_ptr<float>(), *xp = x2.data_ptr<float>(), *wp = weight.data_ptr<float>();
    float* grp = has_res ? g_res.data_ptr<float>() : nullptr;
    float* gxp = need_gx ? gx.data_ptr<float>() : nullptr;
    const float* zp = z.defined() ? z.data_ptr<float>() : nullptr;
    const float* kpp = kp.defined() ? kp.data_ptr<float>() : nullptr;
    at::parallel_for(0, rows, kChunkRows, [&](int64_t begin, int64_t end) {
      const int64_t t = at::get_thread_num();
      std::vector<float> mask(e.dropout > 0 ? out : 0), gz(kChunkRows * out);  // dL/dz of one chunk
      float* gw = need_gw ? gw_parts.data_ptr<float>() + t * out * in : nullptr;
      float* gb = has_bias ? gb_parts.data_ptr<float>() + t * out : nullptr;
      for (int64_t c0 = begin; c0 < end; c0 += kChunkRows) {
        const int64_t c1 = std::min(end, c0 + kChunkRows), n = c1 - c0;
        for (int64_t r = c0; r < c1; ++r)
          cpu::epilogue_backward_row(gyp + r * out, gz.data() + (r - c0) * out, grp ? grp + r * out : nullptr, gb,
                                     zp ? zp + r * out : nullptr, kpp ? kpp[r] : 1.f, out, e,
                                     derive_seed({seed, uint64_t(r)}), mask.data());
        if (gxp) cpu::gemm(false, false, n, in, out, 1.f, gz.data(), out, wp, in, 0.f, gxp + c0 * in, in);  // dx = dz W
        if (gw) cpu::gemm(true, false, out, in, n, 1.f, gz.data(), out, xp + c0 * in, in, 1.f, gw, in);     // dW += dz^T x
      }
    });
    torch::Tensor gw, gb;
    if (need_gx) gx = gx.view(x_shape);                                        // [..., in]
    if (need_gw) gw = gw_parts.sum(0);                                         // [out, in]
    if (has_bias) gb = gb_parts.sum(0);                                        // [out]
    if (has_res) {
      x_shape.back() = out;
      g_res = g_res.view(x_shape);                                             // [..., out]
    }
    return {gx, gw, gb, g_res, torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

struct SwiGlu : public torch::autograd::Function<SwiGlu> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& g_in,
                               const torch::Tensor& u_in) {
    auto g = g_in.contiguous(), u = u_in.contiguous();
    auto y = torch::empty_like(g);
    const int64_t n = g.numel();
    const float *gp = g.data_ptr<float>(), *up = u.data_ptr<float>();
    float* yp = y.data_ptr<float>();
    at::parallel_for(0, n, 1 << 14, [&](int64_t b, int64_t e) { cpu::swiglu_row(gp + b, up + b, yp + b, e - b); });
    ctx->save_for_backward({g, u});
    return y;
  }

  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grads) {
    auto saved = ctx->get_saved_variables();
    const auto &g = saved[0], &u = saved[1];
    auto dy = grads[0].contiguous();
    auto dg = torch::empty_like(g), du = torch::empty_like(u);
    const int64_t n = g.numel();
    const float *gp = g.data_ptr<float>(), *up = u.data_ptr<float>(), *dyp = dy.data_ptr<float>();
    float *dgp = dg.data_ptr<float>(), *dup = du.data_ptr<float>();
    at::parallel_for(0, n, 1 << 14, [&](int64_t b, int64_t e) {
      cpu::swiglu_backward_row(dyp + b, gp + b, up + b, dgp + b, dup + b, e - b);
    });
    return {dg, du};
  }
};

}  // namespace

torch::Tensor swiglu(const torch::Tensor& g, const torch::Tensor& u) {
  TORCH_CHECK(g.sizes() == u.sizes(), "swiglu: gate and up must have one shape");
  if (!g.device().is_cpu() || g.scalar_type() != torch::kFloat || u.scalar_type() != torch::kFloat)
    return torch::silu(g) * u;
  return SwiGlu::apply(g, u);
}

torch::Tensor fused_linear(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias,
                           const FusedLinearOptions& options, const torch::Tensor& residual,
                           const torch::Tensor& keep) {
  TORCH_CHECK(x.size(-1) == weight.size(1), "fused_linear: x has ", x.size(-1), " features, weight expects ",
              weight.size(1));
  const bool fast = x.device().is_cpu() && x.scalar_type() == torch::kFloat && weight.scalar_type() == torch::kFloat &&
                    (!residual.defined() || residual.scalar_type() == torch::kFloat);
  if (!fast) return composite(x, weight, bias, options, residual, keep);
  // Autograd arguments must be defined tensors: empty ones stand for "none".
  auto none = torch::zeros({0}, x.options());
  return FusedLinear::apply(x, weight, bias.defined() ? bias : none, residual.defined() ? residual : none,
                               keep.defined() ? keep.detach() : none, static_cast<int64_t>(options.activation),
                               options.scale, options.dropout, options.training);
}

}  // namespace seqrec::nn
