// Batched matmul: parallel over the batch, one BLAS GEMM per entry.
#include "seqrec/nn/batched_matmul.h"

#include <ATen/Parallel.h>
#include <torch/torch.h>

namespace seqrec::nn {
namespace {

torch::Tensor raw_bmm(const torch::Tensor& a, const torch::Tensor& b, const torch::Tensor& bias) {
  if (!a.device().is_cpu()) return bias.defined() ? torch::baddbmm(bias, a, b) : torch::bmm(a, b);
  auto out = torch::empty({a.size(0), a.size(1), b.size(2)}, a.options());   // [N, n, m]
  at::parallel_for(0, a.size(0), 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      auto o = out[i];
      if (bias.defined()) {
        torch::addmm_out(o, bias[i], a[i], b[i]);
      } else {
        torch::mm_out(o, a[i], b[i]);
      }
    }
  });
  return out;
}

// The bias travels as a non-tensor argument: autograd then treats it as a constant (and accepts an
// undefined one).
struct ConstantBias {
  torch::Tensor tensor;
};

struct BatchedMatmul : public torch::autograd::Function<BatchedMatmul> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& a,
                               const torch::Tensor& b, const ConstantBias& bias) {
    ctx->save_for_backward({a, b});
    return raw_bmm(a, b, bias.tensor);
  }
  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grads) {
    auto saved = ctx->get_saved_variables();
    const auto& g = grads[0];                                                   // [N, n, m]
    torch::Tensor ga, gb;
    if (ctx->needs_input_grad(0)) ga = raw_bmm(g, saved[1].transpose(1, 2), {});    // [N, n, k]
    if (ctx->needs_input_grad(1)) gb = raw_bmm(saved[0].transpose(1, 2), g, {});    // [N, k, m]
    return {ga, gb, torch::Tensor()};
  }
};

}  // namespace

torch::Tensor batched_matmul(const torch::Tensor& a, const torch::Tensor& b, const torch::Tensor& bias) {
  TORCH_CHECK(a.dim() == 3 && b.dim() == 3 && a.size(0) == b.size(0) && a.size(2) == b.size(1),
              "batched_matmul: expected [N, n, k] x [N, k, m]");
  if (!torch::GradMode::is_enabled() || (!a.requires_grad() && !b.requires_grad())) return raw_bmm(a, b, bias);
  return BatchedMatmul::apply(a, b, ConstantBias{bias});
}

}  // namespace seqrec::nn
