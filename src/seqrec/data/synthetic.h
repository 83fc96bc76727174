// Synthetic interaction generator: latent user tastes over item clusters, Markov-like transitions,
// timestamps and item titles drawn from cluster vocabularies. The built-in demo and test data.
//
// Three modes (`synth.mode`) share the item world (items 1..V, item i in cluster (i - 1) % C, a
// Zipf popularity inside each cluster, three successors per item inside its cluster, titles from
// cluster vocabularies) and differ in how users walk it:
//  - default: the demo generator (no repeated items per user, log-uniform gaps of 1 min to 3 days);
//  - long_term: long histories whose long-term profile is visible only in old events (PerSRec);
//  - bursty: sessions whose gaps tell whether the next item continues the interest (HSTU's time
//    bias). The structure of the last two is written out in synthetic_long.h.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "seqrec/data/image.h"

namespace seqrec::data {

/// How users walk the item world (`synth.mode`).
enum class SynthMode {
  kDefault,   ///< "default": the demo generator
  kLongTerm,  ///< "long_term": long histories, profile only in old events (see synthetic_long.h)
  kBursty,    ///< "bursty": sessions separated by short or long gaps (see synthetic_long.h)
};

/// Parses "default" | "long_term" | "bursty"; throws ConfigError naming synth.mode otherwise.
SynthMode parse_synth_mode(const std::string& name);
/// The config name of a mode.
const char* synth_mode_name(SynthMode mode);

/// Options of `seqrec synth` (the `synth:` config section). The defaults written here are those of
/// mode default; synth_defaults() gives each mode's defaults.
struct SynthOptions {
  SynthMode mode = SynthMode::kDefault;  ///< generator (synth.mode)
  int64_t num_users = 1000;              ///< users
  int64_t num_items = 500;               ///< items
  int64_t num_clusters = 20;             ///< item clusters (topics)
  int64_t min_seq_len = 5;               ///< per-user length drawn uniformly in [min, max]
  int64_t max_seq_len = 60;              ///< upper bound of the per-user length
  double transition_prob = 0.6;          ///< P(next item follows the previous item's transition) vs popularity
  double taste_concentration = 0.3;      ///< Dirichlet alpha of user tastes (small = focused users)
  uint64_t seed = 42;                    ///< the only source of randomness
  std::string output;                    ///< directory; writes interactions.csv and items.csv
  int64_t image_size = 0;                ///< > 0: also <output>/images/<raw item id>.png, this many pixels a side

  // long_term only.
  int64_t recent_window = 100;       ///< no profile item among the last recent_window events before the targets
  double long_term_share = 0.7;      ///< P(each of the last two events is a return to the profile)
  std::string profile_kind = "items";  ///< "items": home items; "clusters": home clusters (see synthetic_long.h)
  int64_t profile_items = 10;        ///< profile_kind items: home items per user (the long-term profile)
  int64_t profile_clusters = 3;      ///< profile_kind clusters: home clusters per user
  double profile_share = 0.5;        ///< share of home items among the events of the profile phase
  double profile_phase = 0.3;        ///< the profile phase: this share of the history, from its start
  /// "old_only": the profile is frequent in the profile phase and absent from the last
  /// recent_window events before the targets (returns as described above); "throughout": every
  /// event, the targets included, is a home event with probability profile_share (a stationary
  /// history; profile_phase, recent_window and long_term_share are not used).
  std::string profile_timing = "old_only";
  std::string profile_weights = "harmonic";  ///< home visit weights: "harmonic" (1, 1/2, 1/3, ...) or "uniform"
  int64_t min_interest_len = 20;     ///< drift events per short-term interest, drawn in [min, max]
  int64_t max_interest_len = 60;     ///< upper bound of the drift events per short-term interest

  // bursty only.
  int64_t min_burst_len = 1;   ///< events per burst (session), drawn in [min, max]
  int64_t max_burst_len = 4;   ///< upper bound of the events per burst
  double long_gap_share = 0.5; ///< P(a gap between bursts is long: 7 to 30 days) vs short (1 to 12 hours)
  double stay_prob = 0.9;      ///< P(a burst after a short gap keeps the previous burst's interest)
};

/// The defaults of a mode: SynthOptions{} for default; long_term: 500 users, 2,000 items, 40
/// clusters, 1,500-2,000 events per user; bursty: 2,000 users, 2,000 items, 20 clusters, 50-150
/// events per user, taste_concentration 0.1. Other fields keep SynthOptions' defaults.
SynthOptions synth_defaults(SynthMode mode);

/// One generated user.
struct SynthUser {
  std::vector<int64_t> items;       ///< item ids 1..V in time order
  std::vector<int64_t> timestamps;  ///< seconds since the epoch, strictly increasing
  std::vector<int64_t> profile;     ///< long_term: the home items, most visited first; else empty
                                    ///< (profile_kind clusters: every item of the home clusters)
  std::vector<int64_t> home_clusters;  ///< long_term, profile_kind clusters: most visited first
};

/// Everything a run generates, in memory (what generate_synthetic writes, plus the profiles).
struct SynthData {
  std::vector<SynthUser> users;  ///< user u is written as "u<u>"
  std::string items_table;       ///< the text of items.csv
  std::vector<Image> item_images;  ///< picture of item i at i - 1 (image_size > 0; synthetic_images.h)
};

/// Generation report.
struct SynthReport {
  int64_t num_events = 0;  ///< rows written to interactions.csv
};

/// Validates the options (ConfigError naming synth.<field>) and generates the data in memory.
/// Deterministic for a seed.
SynthData synthesize(const SynthOptions& options);

/// Writes <output>/interactions.csv (header item_id,user_id,timestamp: the HLLM layout; rows per
/// user in time order, raw ids are strings like "u17"/"i42") and <output>/items.csv (header
/// item_id<TAB>title<TAB>tag<TAB>description, tab-separated). Deterministic for a seed. Files are
/// written atomically.
SynthReport generate_synthetic(const SynthOptions& options);

}  // namespace seqrec::data
