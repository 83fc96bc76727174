// gathered_dot: per-row dot products against table rows, forward and backward in one pass each.
#include "seqrec/nn/gathered_dot.h"

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include "seqrec/nn/cpu_kernels.h"

namespace seqrec::nn {
namespace {

struct GatheredDot : public torch::autograd::Function<GatheredDot> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& h_in,
                               const torch::Tensor& table_in, const torch::Tensor& ids_in) {
    auto h = h_in.contiguous(), table = table_in.contiguous(), ids = ids_in.contiguous();
    const int64_t n = h.size(0), d = h.size(1), k = ids.size(1);
    auto out = torch::empty({n, k}, h.options());                               // [N, K]
    const float *hp = h.data_ptr<float>(), *tp = table.data_ptr<float>();
    const int64_t* ip = ids.data_ptr<int64_t>();
    float* op = out.data_ptr<float>();
    at::parallel_for(0, n, 64, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r)
        for (int64_t j = 0; j < k; ++j) op[r * k + j] = cpu::dot(hp + r * d, tp + ip[r * k + j] * d, d);
    });
    ctx->save_for_backward({h, table, ids});
    return out;
  }

  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grads) {
    auto saved = ctx->get_saved_variables();
    const auto &h = saved[0], &table = saved[1], &ids = saved[2];
    auto g = grads[0].contiguous();                                             // [N, K]
    const int64_t n = h.size(0), d = h.size(1), k = ids.size(1), t = table.size(0);
    const bool need_h = ctx->needs_input_grad(0), need_table = ctx->needs_input_grad(1);
    auto gh = need_h ? torch::empty_like(h) : torch::Tensor();                 // [N, D]
    const int64_t threads = at::get_num_threads();
    // One table gradient per thread (rows collide across positions), added up at the end.
    auto gt_parts = need_table ? torch::zeros({threads, t, d}, h.options()) : torch::Tensor();
    const float *hp = h.data_ptr<float>(), *tp = table.data_ptr<float>(), *gp = g.data_ptr<float>();
    const int64_t* ip = ids.data_ptr<int64_t>();
    float* ghp = need_h ? gh.data_ptr<float>() : nullptr;
    at::parallel_for(0, n, 64, [&](int64_t begin, int64_t end) {
      float* gtp = need_table ? gt_parts.data_ptr<float>() + at::get_thread_num() * t * d : nullptr;
      for (int64_t r = begin; r < end; ++r) {
        float* ghr = ghp ? ghp + r * d : nullptr;
        if (ghr) std::fill(ghr, ghr + d, 0.f);
        for (int64_t j = 0; j < k; ++j) {
          const float gv = gp[r * k + j];
          if (gv == 0.f) continue;
          const int64_t row = ip[r * k + j];
          if (ghr) cpu::axpy(ghr, tp + row * d, gv, d);                       // dh += g * table[id]
          if (gtp) cpu::axpy(gtp + row * d, hp + r * d, gv, d);               // dtable[id] += g * h
        }
      }
    });
    torch::Tensor gtable = need_table ? gt_parts.sum(0) : torch::Tensor();    // [T, D]
    return {gh, gtable, torch::Tensor()};
  }
};

}  // namespace

torch::Tensor gathered_dot(const torch::Tensor& h, const torch::Tensor& table, const torch::Tensor& ids) {
  TORCH_CHECK(h.dim() == 2 && table.dim() == 2 && ids.dim() == 2 && h.size(1) == table.size(1) &&
                  ids.size(0) == h.size(0),
              "gathered_dot: h [N, D], table [T, D], ids [N, K]");
  if (!h.device().is_cpu() || h.scalar_type() != torch::kFloat || table.scalar_type() != torch::kFloat) {
    auto rows = table.index_select(0, ids.reshape({-1})).view({ids.size(0), ids.size(1), table.size(1)});  // [N, K, D]
    return torch::matmul(rows, h.unsqueeze(-1)).squeeze(-1);
  }
  return GatheredDot::apply(h, table, ids.to(torch::kLong));
}

}  // namespace seqrec::nn
