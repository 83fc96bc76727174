// Fast dropout masks.
#include "seqrec/nn/dropout.h"

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include "seqrec/common/random.h"
#include "seqrec/nn/cpu_kernels.h"

namespace seqrec::nn {

torch::Tensor dropout_mask(const torch::Tensor& like, double p) {
  auto mask = torch::empty(like.sizes(), like.options().dtype(torch::kFloat).device(torch::kCPU));
  // One draw from torch's generator seeds all chunk streams: reproducible under manual_seed.
  const uint64_t seed = static_cast<uint64_t>(torch::randint(1LL << 62, {1}, torch::kLong).item<int64_t>());
  float* m = mask.data_ptr<float>();
  const int64_t n = mask.numel();
  constexpr int64_t kChunk = 1 << 16;
  at::parallel_for(0, (n + kChunk - 1) / kChunk, 1, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) {
      const int64_t lo = c * kChunk;
      cpu::dropout_row(m + lo, std::min(n, lo + kChunk) - lo, p, derive_seed({seed, static_cast<uint64_t>(c)}));
    }
  });
  return mask.to(like.options());
}

torch::Tensor fast_dropout(const torch::Tensor& x, double p, bool training) {
  if (!training || p <= 0) return x;
  return x * dropout_mask(x, p);
}

}  // namespace seqrec::nn
