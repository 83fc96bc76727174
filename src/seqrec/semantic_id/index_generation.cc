// Index generation with collision-resolution rounds (LC-Rec index/generate_indices.py).
#include "seqrec/semantic_id/index_generation.h"

#include <torch/torch.h>

#include "seqrec/semantic_id/rqvae_train.h"

namespace seqrec::semantic_id {

IndexGenerationReport generate_index(RqVaeImpl& model, const torch::Tensor& embeddings_in,
                                     const IndexGenerationOptions& options) {
  const auto device = model.parameters().front().device();
  const torch::Tensor embeddings = embeddings_in.to(device, torch::kFloat);
  const int64_t m = model.options().num_levels;
  IndexGenerationReport r;
  r.index.num_levels = m;
  auto first = all_codes(model, embeddings, options.batch_size).contiguous();          // [V, M]
  r.index.codes.assign(first.data_ptr<int64_t>(), first.data_ptr<int64_t>() + first.numel());
  r.before = collision_stats(r.index.codes, m);
  // Upstream zeroes the epsilons of all levels but the last, and sets the last to 0.003 when it is 0.
  std::vector<double> eps(static_cast<size_t>(m), 0.0);
  const double last = model.options().sk_epsilons.back();
  eps.back() = last > 0 ? last : options.default_epsilon;
  for (; r.rounds < options.max_rounds; ++r.rounds) {
    const auto groups = collision_groups(r.index.codes, m);
    if (groups.empty()) break;
    for (const auto& rows : groups) {
      auto idx = torch::tensor(rows, torch::kLong).to(device);
      auto codes = model.codes(embeddings.index_select(0, idx), eps).to(torch::kCPU).contiguous();  // [G, M]
      const int64_t* c = codes.data_ptr<int64_t>();
      for (size_t i = 0; i < rows.size(); ++i)
        for (int64_t l = 0; l < m; ++l) r.index.codes[static_cast<size_t>(rows[i] * m + l)] = c[i * m + l];
    }
  }
  r.after = collision_stats(r.index.codes, m);
  r.used_codes = used_codes_per_level(r.index.codes, m);
  return r;
}

}  // namespace seqrec::semantic_id
