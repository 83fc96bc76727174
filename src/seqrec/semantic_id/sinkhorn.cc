// Sinkhorn-Knopp as LC-Rec's index/models/layers.py (sinkhorn_algorithm) and vq.py.
#include "seqrec/semantic_id/sinkhorn.h"

#include <torch/torch.h>

namespace seqrec::semantic_id {

torch::Tensor center_distances(const torch::Tensor& d) {
  const auto max = d.max(), min = d.min();
  const auto middle = (max + min) / 2;
  const auto amplitude = max - middle + 1e-5;
  return (d - middle) / amplitude;                                                       // [B, C]
}

torch::Tensor sinkhorn(const torch::Tensor& d, double epsilon, int64_t iters) {
  torch::NoGradGuard no_grad;
  TORCH_CHECK(d.dim() == 2 && epsilon > 0, "sinkhorn: d must be [B, C] and epsilon > 0");
  const double b = static_cast<double>(d.size(0)), c = static_cast<double>(d.size(1));
  auto q = torch::exp(-d.to(torch::kDouble) / epsilon);                                  // [B, C] f64
  q.div_(q.sum());
  for (int64_t i = 0; i < iters; ++i) {
    q.div_(q.sum(1, /*keepdim=*/true)).div_(b);  // each item (row) carries 1/B
    q.div_(q.sum(0, /*keepdim=*/true)).div_(c);  // each code (column) receives 1/C
  }
  return q.mul_(b);
}

torch::Tensor sinkhorn_codes(const torch::Tensor& d, double epsilon, int64_t iters) {
  torch::NoGradGuard no_grad;
  return sinkhorn(center_distances(d).to(torch::kDouble), epsilon, iters).argmax(-1);   // [B]
}

}  // namespace seqrec::semantic_id
