// k-means (k-means++ seeding, Lloyd iterations), seeded and deterministic: the RQ-VAE initialises its
// codebooks with it on the first training batch, as LC-Rec does with sklearn's KMeans.
#pragma once

#include <torch/types.h>

#include <cstdint>

namespace seqrec::semantic_id {

/// k-means hyper-parameters (sklearn KMeans' defaults, one initialisation).
struct KMeansOptions {
  int64_t num_clusters = 256;  ///< K
  int64_t max_iters = 100;     ///< Lloyd iterations at most (LC-Rec: kmeans_iters)
  double tol = 1e-4;           ///< stop when the centres move (squared, summed) less than tol * mean feature variance
  uint64_t seed = 0;           ///< k-means++ seeding draws
};

/// Result of kmeans().
struct KMeansResult {
  torch::Tensor centers;  ///< [K, D], dtype and device of the input
  torch::Tensor labels;   ///< [N] int64: nearest centre of each point
  double inertia = 0;     ///< sum of squared distances to the nearest centre
  int64_t iters = 0;      ///< Lloyd iterations run
};

/// Clusters the rows of x [N, D] (N >= K). Greedy k-means++ seeding (2 + ln K candidates per centre),
/// then Lloyd steps; an emptied cluster moves to the point farthest from its centre (sklearn's rule).
/// Computed in float64 on the CPU; identical for identical input and seed.
KMeansResult kmeans(const torch::Tensor& x, const KMeansOptions& options);

}  // namespace seqrec::semantic_id
