// Synthetic interaction generator: latent user tastes over item clusters, Markov-like transitions,
// timestamps and item titles drawn from cluster vocabularies. The built-in demo and test data.
#pragma once

#include <cstdint>
#include <string>

namespace seqrec::data {

/// Options of `seqrec synth` (the `synth:` config section).
struct SynthOptions {
  int64_t num_users = 1000;          ///< users
  int64_t num_items = 500;           ///< items
  int64_t num_clusters = 20;         ///< item clusters (topics)
  int64_t min_seq_len = 5;           ///< per-user length drawn uniformly in [min, max]
  int64_t max_seq_len = 60;
  double transition_prob = 0.6;      ///< P(next item follows the previous item's transition) vs taste
  double taste_concentration = 0.3;  ///< Dirichlet alpha of user tastes (small = focused users)
  uint64_t seed = 42;
  std::string output;                ///< directory; writes interactions.csv and items.csv
};

/// Generation report.
struct SynthReport {
  int64_t num_events = 0;
};

/// Writes <output>/interactions.csv (header item_id,user_id,timestamp: the HLLM layout; rows per
/// user in time order, raw ids are strings like "u17"/"i42") and <output>/items.csv (header
/// item_id<TAB>title<TAB>tag<TAB>description, tab-separated). Deterministic for a seed. Files are
/// written atomically.
SynthReport generate_synthetic(const SynthOptions& options);

}  // namespace seqrec::data
