// k-means with greedy k-means++ seeding and Lloyd iterations, following sklearn's KMeans (which
// LC-Rec calls): same seeding rule, same empty-cluster relocation, same tolerance. The random draws
// are our own (seqrec::Rng), so the centres are not sklearn's bit for bit.
#include "seqrec/semantic_id/kmeans.h"

#include <torch/torch.h>

#include <cmath>

#include "seqrec/common/random.h"

namespace seqrec::semantic_id {
namespace {

// Squared euclidean distances between the rows of a [N, D] and b [K, D]: [N, K], >= 0.
torch::Tensor squared_distances(const torch::Tensor& a, const torch::Tensor& b) {
  auto d = a.pow(2).sum(1, true) + b.pow(2).sum(1).unsqueeze(0) - 2 * a.matmul(b.t());   // [N, K]
  return d.clamp_min_(0);
}

// Index of the first element of the cumulative sums `cum` [N] that is >= value (clipped to N-1).
int64_t draw_index(const std::vector<double>& cum, double value) {
  auto it = std::lower_bound(cum.begin(), cum.end(), value);
  const int64_t i = it - cum.begin();
  return std::min<int64_t>(i, static_cast<int64_t>(cum.size()) - 1);
}

// Greedy k-means++ (sklearn _kmeans_plusplus): each new centre is the best of 2 + ln K candidates
// drawn with probability proportional to the squared distance to the nearest centre so far.
torch::Tensor plus_plus(const torch::Tensor& x, int64_t k, Rng& rng) {
  const int64_t n = x.size(0);
  const int64_t trials = 2 + static_cast<int64_t>(std::log(static_cast<double>(k)));
  std::vector<int64_t> chosen = {static_cast<int64_t>(rng.below(static_cast<uint64_t>(n)))};
  auto closest = squared_distances(x, x.index_select(0, torch::tensor(chosen))).squeeze(1);  // [N]
  for (int64_t c = 1; c < k; ++c) {
    auto cum_t = closest.cumsum(0);
    std::vector<double> cum(cum_t.data_ptr<double>(), cum_t.data_ptr<double>() + n);
    const double potential = cum.back();
    std::vector<int64_t> candidates;
    for (int64_t t = 0; t < trials; ++t) candidates.push_back(draw_index(cum, rng.uniform() * potential));
    auto to_candidates = squared_distances(x, x.index_select(0, torch::tensor(candidates)));  // [N, T]
    auto updated = torch::minimum(closest.unsqueeze(1), to_candidates);                       // [N, T]
    const int64_t best = updated.sum(0).argmin().item<int64_t>();
    chosen.push_back(candidates[static_cast<size_t>(best)]);
    closest = updated.select(1, best).contiguous();
  }
  return x.index_select(0, torch::tensor(chosen)).clone();                                     // [K, D]
}

// New centres: the mean of each cluster; empty clusters take the points farthest from their
// centre (sklearn _relocate_empty_clusters), farthest first.
torch::Tensor update_centers(const torch::Tensor& x, const torch::Tensor& labels, const torch::Tensor& nearest_sq,
                             int64_t k) {
  const int64_t d = x.size(1);
  auto sums = torch::zeros({k, d}, x.options()).index_add_(0, labels, x);                      // [K, D]
  auto counts = torch::zeros({k}, x.options()).index_add_(0, labels, torch::ones({x.size(0)}, x.options()));
  auto empty = (counts == 0).nonzero().squeeze(1);
  if (empty.numel() > 0) {
    auto far = std::get<1>(nearest_sq.topk(empty.numel()));
    auto far_labels = labels.index_select(0, far);
    auto moved_points = x.index_select(0, far);
    // The relocated points leave their old clusters.
    sums.index_add_(0, far_labels, -moved_points);
    counts.index_add_(0, far_labels, -torch::ones({empty.numel()}, x.options()));
    sums.index_copy_(0, empty, moved_points);
    counts.index_fill_(0, empty, 1.0);
  }
  return sums / counts.unsqueeze(1);
}

}  // namespace

KMeansResult kmeans(const torch::Tensor& x_in, const KMeansOptions& options) {
  torch::NoGradGuard no_grad;
  const int64_t k = options.num_clusters;
  TORCH_CHECK(x_in.dim() == 2 && k >= 1 && x_in.size(0) >= k,
              "kmeans: need x [N, D] with N >= K, got ", x_in.sizes(), " and K = ", k);
  auto x = x_in.detach().to(torch::kCPU, torch::kDouble).contiguous();                          // [N, D] f64
  Rng rng(options.seed);
  auto centers = plus_plus(x, k, rng);                                                          // [K, D]
  // sklearn's tolerance is relative to the data: tol * mean over features of their variance.
  const double tol = options.tol * x.var(0, /*unbiased=*/false).mean().item<double>();
  KMeansResult r;
  torch::Tensor labels;
  for (int64_t it = 0; it < options.max_iters; ++it) {
    auto dist = squared_distances(x, centers);                                                  // [N, K]
    auto [nearest_sq, new_labels] = dist.min(1);
    auto next = update_centers(x, new_labels, nearest_sq, k);
    const bool same_labels = labels.defined() && labels.equal(new_labels);
    const double shift = (next - centers).pow(2).sum().item<double>();
    labels = new_labels;
    centers = next;
    r.iters = it + 1;
    if (same_labels || shift <= tol) break;
  }
  auto [nearest_sq, final_labels] = squared_distances(x, centers).min(1);
  r.labels = final_labels;
  r.inertia = nearest_sq.sum().item<double>();
  r.centers = centers.to(x_in.device(), x_in.scalar_type());
  return r;
}

}  // namespace seqrec::semantic_id
