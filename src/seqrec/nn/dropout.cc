// Fast dropout masks.
#include "seqrec/nn/dropout.h"

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include "seqrec/common/random.h"

namespace seqrec::nn {

torch::Tensor dropout_mask(const torch::Tensor& like, double p) {
  auto mask = torch::empty(like.sizes(), like.options().dtype(torch::kFloat).device(torch::kCPU));
  // One draw from torch's generator seeds all chunk streams: reproducible under manual_seed.
  const uint64_t seed = static_cast<uint64_t>(torch::randint(1LL << 62, {1}, torch::kLong).item<int64_t>());
  float* m = mask.data_ptr<float>();
  const int64_t n = mask.numel();
  const float keep_value = static_cast<float>(1.0 / (1.0 - p));
  // Threshold on the top 32 bits: P(drop) = p to within 2^-32.
  const uint64_t threshold = static_cast<uint64_t>(p * 4294967296.0);
  constexpr int64_t kChunk = 1 << 16;
  at::parallel_for(0, (n + kChunk - 1) / kChunk, 1, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) {
      Rng rng(derive_seed({seed, static_cast<uint64_t>(c)}));
      const int64_t lo = c * kChunk, hi = std::min(n, lo + kChunk);
      int64_t i = lo;
      for (; i + 1 < hi; i += 2) {  // two 32-bit draws per 64-bit number
        const uint64_t r = rng.next();
        m[i] = (r >> 32) < threshold ? 0.f : keep_value;
        m[i + 1] = (r & 0xffffffffULL) < threshold ? 0.f : keep_value;
      }
      if (i < hi) m[i] = (rng.next() >> 32) < threshold ? 0.f : keep_value;
    }
  });
  return mask.to(like.options());
}

torch::Tensor fast_dropout(const torch::Tensor& x, double p, bool training) {
  if (!training || p <= 0) return x;
  return x * dropout_mask(x, p);
}

}  // namespace seqrec::nn
