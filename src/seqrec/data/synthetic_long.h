// The long_term and bursty synthetic generators (synth.mode), and the pieces all three generators
// share: the portable random draws and the item world. Included by synthetic.cc and tests only;
// users of the generator include synthetic.h.
//
// Item world (all modes): items 1..V; item i belongs to cluster (i - 1) % C; inside a cluster the
// items have a Zipf(1) popularity over a random rank order; every item has up to three successors
// in its own cluster, followed with weights 0.6 / 0.3 / 0.1 ("Markov transitions").
//
// long_term (for PerSRec: user tokens summarising a long history). Per user, with len drawn in
// [min_seq_len, max_seq_len], P = floor(profile_phase * len) and W = recent_window:
//  - a profile: profile_items distinct home items drawn uniformly from all items, with visit
//    weights 1/1, 1/2, 1/3, ... in the order of SynthUser::profile (profile_kind items, the
//    default); or (profile_kind clusters) profile_clusters distinct home clusters drawn uniformly,
//    with visit weights 1/1, 1/2, ... in the order of SynthUser::home_clusters: every item of a
//    home cluster is a home item, and a visit to the profile draws a home cluster by weight, then
//    an item of it by popularity (a long-term taste for topics rather than for single items);
//  - a drift walk that never visits a home item: short-term interests, each a cluster drawn from
//    the user's Dirichlet(taste_concentration) taste over clusters (independent of the profile),
//    different from the previous one, lasting [min_interest_len, max_interest_len] drift events;
//    inside an interest the next item follows a successor of the previous drift item with
//    probability transition_prob (successors that are home items are skipped), otherwise it is
//    drawn by popularity in the cluster (home items excluded). Items repeat;
//  - events 0..P-1 (the profile phase): each is a home item (by visit weight) with probability
//    profile_share, otherwise the next drift event;
//  - events P..len-3: drift, with single-event returns to a home item (by visit weight) spaced
//    W+1 to 2W events apart (the first one W+1 to 2W events after the phase), and none in the last
//    W events before the targets: a model that sees only those W events cannot know the profile;
//  - events len-2 and len-1 (the validation and test targets under leave-one-out): each is, with
//    probability long_term_share, a return to a home item (by visit weight; the two are distinct
//    when both are returns), otherwise the next drift event.
//  Timestamps: one event per hour from a start drawn in 2020.
//
// bursty (for HSTU's relative time bias, bucket(dt) = floor(ln|dt| / 0.301)). Per user, with a
// Dirichlet(taste_concentration) taste over clusters (0.1 by default in this mode: one or two main
// clusters, so the interest after a long gap is predictable from the history) and len drawn in
// [min_seq_len, max_seq_len]:
//  - events come in bursts of [min_burst_len, max_burst_len] events (shorter when the user has
//    seen every item of the cluster, or at the end); no item repeats for a user;
//  - inside a burst: gaps log-uniform in [5 s, 300 s]; all items from the burst's cluster; the next
//    item follows an unseen successor of the previous one with probability transition_prob,
//    otherwise it is drawn by popularity among the cluster's unseen items;
//  - between bursts: with probability long_gap_share a long gap (log-uniform in [7, 30] days) and
//    the next burst ALWAYS takes a new cluster drawn from the taste (not the current one);
//    otherwise a short gap (log-uniform in [1, 12] hours) and the next burst keeps the cluster
//    with probability stay_prob (continuing the Markov walk; a cluster the user has seen whole is
//    left), else takes a new one from the taste.
//  So the gap to the next event (what HSTU's bias sees through ts_{i+1}) tells whether the next
//  item continues the current interest: within-burst buckets <= 18, short gaps 27-35, long >= 44.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "seqrec/data/synthetic.h"

namespace seqrec::data::synth {

/// Portable random draws on top of the (standardised) 64-bit Mersenne twister: a seed gives the
/// same data with every standard library.
class Rng {
 public:
  /// Seeds the engine.
  explicit Rng(uint64_t seed) : engine_(seed) {}

  /// Uniform in [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(engine_() >> 11) * 0x1.0p-53; }
  /// Uniform in (0, 1): safe for log().
  double uniform_pos() {
    double u = 0.0;
    while (u == 0.0) u = uniform();
    return u;
  }
  /// Uniform integer in [0, n) (multiply-shift; the bias is below 2^-40 for our n).
  uint64_t below(uint64_t n) {
    return static_cast<uint64_t>((static_cast<unsigned __int128>(engine_()) * n) >> 64);
  }
  /// Uniform integer in [lo, hi].
  int64_t between(int64_t lo, int64_t hi) {
    return lo + static_cast<int64_t>(below(static_cast<uint64_t>(hi - lo + 1)));
  }
  /// exp(uniform in [ln lo, ln hi]), truncated: a log-uniform gap in seconds.
  int64_t log_uniform(double lo, double hi) {
    return static_cast<int64_t>(std::exp(std::log(lo) + uniform() * (std::log(hi) - std::log(lo))));
  }
  /// Standard normal (Box-Muller, one value per call: simpler than caching and still portable).
  double normal() {
    const double u1 = uniform_pos();
    const double u2 = uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }
  /// Gamma(alpha, 1) by Marsaglia-Tsang; alpha < 1 via the Gamma(alpha+1) * U^(1/alpha) boost.
  double gamma(double alpha);
  /// Index drawn from a cumulative weight table (last entry = total).
  size_t pick(const std::vector<double>& cdf) {
    const double r = uniform() * cdf.back();
    const auto it = std::upper_bound(cdf.begin(), cdf.end(), r);
    return std::min(static_cast<size_t>(it - cdf.begin()), cdf.size() - 1);
  }

 private:
  std::mt19937_64 engine_;  ///< the one engine
};

/// Weights of an item's successors, in order (all modes).
inline constexpr double kSuccessorProb[3] = {0.6, 0.3, 0.1};
/// 2020-01-01T00:00:00Z: timestamps start in 2020.
inline constexpr int64_t kEpoch2020 = 1577836800;

/// The items, their clusters, popularity, successors and text (shared by all modes).
struct ItemWorld {
  int64_t num_items = 0;                         ///< V
  int64_t num_clusters = 0;                      ///< C
  std::vector<std::vector<int64_t>> ranked;      ///< per cluster: its items, most popular first
  std::vector<std::vector<double>> cdf;          ///< per cluster: cumulative Zipf weights of ranked
  std::vector<std::vector<int64_t>> successors;  ///< per item 1..V: up to 3 items of its cluster
  std::string items_table;                       ///< the text of items.csv

  /// Cluster of item i (1..V).
  int64_t cluster_of(int64_t item) const { return (item - 1) % num_clusters; }
  /// An item of cluster c drawn by popularity.
  int64_t popular(int64_t c, Rng& rng) const {
    return ranked[static_cast<size_t>(c)][rng.pick(cdf[static_cast<size_t>(c)])];
  }
};

/// Builds the item world; the draws come first from rng, in the default generator's order.
ItemWorld make_item_world(const SynthOptions& options, Rng& rng);

/// Cumulative Dirichlet(alpha) weights over `n` clusters (uniform when every draw underflows).
std::vector<double> draw_taste(int64_t n, double alpha, Rng& rng);

/// Validates the long_term options (ConfigError "synth.<field>: must ...").
void check_long_term_options(const SynthOptions& options);
/// Validates the bursty options (ConfigError "synth.<field>: must ...").
void check_bursty_options(const SynthOptions& options);

/// The long_term users (see the top of this file); rng continues after make_item_world.
std::vector<SynthUser> long_term_users(const SynthOptions& options, const ItemWorld& world, Rng& rng);
/// The bursty users (see the top of this file); rng continues after make_item_world.
std::vector<SynthUser> bursty_users(const SynthOptions& options, const ItemWorld& world, Rng& rng);

}  // namespace seqrec::data::synth
