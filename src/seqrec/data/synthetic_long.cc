// The item world shared by all synthetic modes, and the long_term and bursty generators (see
// synthetic_long.h for the structure of their data).
#include "seqrec/data/synthetic_long.h"

#include <numeric>

#include "seqrec/common/error.h"

namespace seqrec::data::synth {

double Rng::gamma(double alpha) {
  if (alpha < 1.0) return gamma(alpha + 1.0) * std::pow(uniform_pos(), 1.0 / alpha);
  const double d = alpha - 1.0 / 3.0;
  const double c = 1.0 / std::sqrt(9.0 * d);
  while (true) {
    double x = 0.0;
    double v = 0.0;
    do {
      x = normal();
      v = 1.0 + c * x;
    } while (v <= 0.0);
    v = v * v * v;
    const double u = uniform_pos();
    if (u < 1.0 - 0.0331 * x * x * x * x) return d * v;
    if (std::log(u) < 0.5 * x * x + d * (1.0 - v + std::log(v))) return d * v;
  }
}

namespace {

// Pronounceable made-up words from consonant-vowel syllables.
const char* const kOnsets[] = {"b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t",
                               "v", "z", "br", "dr", "gl", "kr", "pl", "st", "tr", "sh", "ch"};
const char* const kVowels[] = {"a", "e", "i", "o", "u", "ai", "ou", "ea"};
const char* const kCodas[] = {"", "", "", "n", "r", "s", "l", "m", "x"};
const char* const kAdjectives[] = {"classic", "bright", "quiet", "bold", "gentle",
                                   "curious", "vivid", "simple", "rare", "warm"};

template <typename T, size_t N>
const char* draw(Rng& rng, T (&arr)[N]) {
  return arr[rng.below(N)];
}

std::string make_word(Rng& rng, int min_syllables, int max_syllables) {
  const int n = static_cast<int>(rng.between(min_syllables, max_syllables));
  std::string w;
  for (int s = 0; s < n; ++s) {
    w += draw(rng, kOnsets);
    w += draw(rng, kVowels);
    if (s == n - 1) w += draw(rng, kCodas);
  }
  return w;
}

std::string capitalized(std::string w) {
  if (!w.empty() && w[0] >= 'a' && w[0] <= 'z') w[0] = static_cast<char>(w[0] - 'a' + 'A');
  return w;
}

constexpr int kSuccessors = 3;
constexpr int kVocabSize = 8;
constexpr double kZipfExponent = 1.0;
constexpr int kTries = 32;  // rejection-sampling attempts before a deterministic scan

/// Items and their text: the draws of the original generator, in its order.
std::string item_table(const SynthOptions& o, Rng& rng) {
  const int64_t V = o.num_items;
  const int64_t C = o.num_clusters;
  std::vector<std::string> cluster_name(static_cast<size_t>(C));
  std::vector<std::vector<std::string>> vocab(static_cast<size_t>(C));
  for (int64_t c = 0; c < C; ++c) {
    cluster_name[static_cast<size_t>(c)] = make_word(rng, 2, 3);
    for (int w = 0; w < kVocabSize; ++w) vocab[static_cast<size_t>(c)].push_back(make_word(rng, 1, 3));
  }
  std::string items_csv = "item_id\ttitle\ttag\tdescription\n";
  for (int64_t i = 1; i <= V; ++i) {
    const auto c = static_cast<size_t>((i - 1) % C);
    // Distinct vocabulary words (partial Fisher-Yates over the word indices).
    int order[kVocabSize];
    std::iota(order, order + kVocabSize, 0);
    for (int w = 0; w < 4; ++w) std::swap(order[w], order[w + rng.below(kVocabSize - w)]);
    const auto& words = vocab[c];
    const int64_t n_words = rng.between(2, 4);
    std::string title;
    for (int64_t w = 0; w < n_words; ++w) {
      title += capitalized(words[static_cast<size_t>(order[w])]);
      title += ' ';
    }
    title += capitalized(make_word(rng, 2, 3));
    std::string description = std::string("A ") + draw(rng, kAdjectives) + " " +
                              words[static_cast<size_t>(order[0])] + " " +
                              words[static_cast<size_t>(order[1])] + " for fans of " +
                              capitalized(cluster_name[c]) + ".";
    items_csv += "i" + std::to_string(i) + "\t" + title + "\t" + cluster_name[c] + "\t" +
                 description + "\n";
  }
  return items_csv;
}

void need(bool ok, const char* key, const std::string& must, const std::string& got) {
  if (!ok) throw ConfigError(std::string("synth.") + key, "must be " + must + ", got " + got);
}

void need_share(double v, const char* key) {
  need(v >= 0.0 && v <= 1.0, key, "in [0, 1]", std::to_string(v));
}

/// Cumulative weights 1, 1/2, 1/3, ... over n items (all 1 when `uniform`).
std::vector<double> visit_cdf(int64_t n, bool uniform) {
  std::vector<double> cdf;
  double acc = 0.0;
  for (int64_t k = 0; k < n; ++k) cdf.push_back(acc += uniform ? 1.0 : 1.0 / static_cast<double>(k + 1));
  return cdf;
}

/// A weighted draw among the successors of `prev` that `skip` rejects; 0 when none is left.
template <typename Skip>
int64_t successor(const ItemWorld& w, int64_t prev, Skip skip, Rng& rng) {
  const auto& succ = w.successors[static_cast<size_t>(prev)];
  double total = 0.0;
  for (size_t k = 0; k < succ.size(); ++k)
    if (!skip(succ[k])) total += kSuccessorProb[k];
  if (total <= 0.0) return 0;
  double r = rng.uniform() * total;
  int64_t next = 0;
  for (size_t k = 0; k < succ.size(); ++k) {
    if (skip(succ[k])) continue;
    next = succ[k];
    r -= kSuccessorProb[k];
    if (r < 0.0) break;
  }
  return next;
}

/// An item of cluster c by popularity that `skip` rejects; 0 when every item is rejected.
template <typename Skip>
int64_t popular_except(const ItemWorld& w, int64_t c, Skip skip, Rng& rng) {
  for (int t = 0; t < kTries; ++t) {
    const int64_t cand = w.popular(c, rng);
    if (!skip(cand)) return cand;
  }
  for (int64_t cand : w.ranked[static_cast<size_t>(c)])
    if (!skip(cand)) return cand;
  return 0;
}

/// A cluster from the taste cdf, other than `current`, that `usable` accepts (falls back to a
/// scan, then to `current`).
template <typename Usable>
int64_t new_cluster(const std::vector<double>& taste, int64_t current, Usable usable, Rng& rng) {
  const auto C = static_cast<int64_t>(taste.size());
  for (int t = 0; t < kTries; ++t) {
    const auto c = static_cast<int64_t>(rng.pick(taste));
    if (c != current && usable(c)) return c;
  }
  const auto start = static_cast<int64_t>(rng.below(static_cast<uint64_t>(C)));
  for (int64_t k = 0; k < C; ++k) {
    const int64_t c = (start + k) % C;
    if (c != current && usable(c)) return c;
  }
  return current;
}

/// One long_term user's drift: short-term interests over clusters; never a home item.
class DriftWalk {
 public:
  DriftWalk(const SynthOptions& o, const ItemWorld& w, const std::vector<uint8_t>& home)
      : o_(o), w_(w), home_(home), usable_(static_cast<size_t>(w.num_clusters), 0) {
    for (int64_t c = 0; c < w.num_clusters; ++c)
      for (int64_t i : w.ranked[static_cast<size_t>(c)])
        if (!home[static_cast<size_t>(i)]) usable_[static_cast<size_t>(c)] = 1;
  }

  /// The next drift event under the cumulative cluster taste.
  int64_t next(const std::vector<double>& taste, Rng& rng) {
    auto is_home = [&](int64_t i) { return home_[static_cast<size_t>(i)] != 0; };
    if (left_ == 0) {
      cluster_ = new_cluster(taste, cluster_, [&](int64_t c) { return usable_[static_cast<size_t>(c)] != 0; },
                             rng);
      left_ = rng.between(o_.min_interest_len, o_.max_interest_len);
      prev_ = 0;
    }
    --left_;
    int64_t item = 0;
    if (prev_ != 0 && rng.uniform() < o_.transition_prob) item = successor(w_, prev_, is_home, rng);
    if (item == 0) item = popular_except(w_, cluster_, is_home, rng);
    prev_ = item;
    return item;
  }

 private:
  const SynthOptions& o_;
  const ItemWorld& w_;
  const std::vector<uint8_t>& home_;  // per item 0..V: 1 for the user's home items
  std::vector<uint8_t> usable_;       // per cluster: has an item that is not a home item
  int64_t cluster_ = -1;              // the current interest
  int64_t left_ = 0;                  // drift events left in it
  int64_t prev_ = 0;                  // the previous drift item (0: start of an interest)
};

/// Timestamps one hour apart from a start drawn in 2020.
std::vector<int64_t> hourly(int64_t n, Rng& rng) {
  std::vector<int64_t> ts(static_cast<size_t>(n));
  const int64_t t0 = kEpoch2020 + rng.between(0, 365LL * 86400);
  for (int64_t k = 0; k < n; ++k) ts[static_cast<size_t>(k)] = t0 + 3600 * k;
  return ts;
}

}  // namespace

ItemWorld make_item_world(const SynthOptions& o, Rng& rng) {
  ItemWorld w;
  const int64_t V = w.num_items = o.num_items;
  const int64_t C = w.num_clusters = o.num_clusters;
  std::vector<std::vector<int64_t>> members(static_cast<size_t>(C));
  for (int64_t i = 1; i <= V; ++i) members[static_cast<size_t>((i - 1) % C)].push_back(i);

  // Within-cluster Zipf popularity over a random rank order.
  w.ranked.resize(static_cast<size_t>(C));
  w.cdf.resize(static_cast<size_t>(C));
  for (int64_t c = 0; c < C; ++c) {
    auto& r = w.ranked[static_cast<size_t>(c)];
    r = members[static_cast<size_t>(c)];
    for (size_t k = r.size(); k > 1; --k) std::swap(r[k - 1], r[rng.below(k)]);  // Fisher-Yates
    double acc = 0.0;
    for (size_t k = 0; k < r.size(); ++k) {
      acc += 1.0 / std::pow(static_cast<double>(k + 1), kZipfExponent);
      w.cdf[static_cast<size_t>(c)].push_back(acc);
    }
  }

  // Each item's successors: distinct items of its cluster (fewer when the cluster is small).
  w.successors.resize(static_cast<size_t>(V) + 1);
  for (int64_t i = 1; i <= V; ++i) {
    const auto& m = members[static_cast<size_t>((i - 1) % C)];
    std::vector<int64_t> pool;
    for (int64_t j : m) {
      if (j != i) pool.push_back(j);
    }
    const size_t n = std::min<size_t>(kSuccessors, pool.size());
    for (size_t k = 0; k < n; ++k) {  // partial Fisher-Yates
      std::swap(pool[k], pool[k + rng.below(pool.size() - k)]);
      w.successors[static_cast<size_t>(i)].push_back(pool[k]);
    }
  }
  w.items_table = item_table(o, rng);
  return w;
}

std::vector<double> draw_taste(int64_t n, double alpha, Rng& rng) {
  std::vector<double> cdf(static_cast<size_t>(n));
  double acc = 0.0;
  for (int64_t c = 0; c < n; ++c) {
    acc += rng.gamma(alpha);
    cdf[static_cast<size_t>(c)] = acc;
  }
  if (!(acc > 0.0)) {  // every gamma draw underflowed: fall back to a uniform taste
    for (int64_t c = 0; c < n; ++c) cdf[static_cast<size_t>(c)] = static_cast<double>(c + 1);
  }
  return cdf;
}

void check_long_term_options(const SynthOptions& o) {
  need(o.recent_window >= 1, "recent_window", "at least 1", std::to_string(o.recent_window));
  need_share(o.long_term_share, "long_term_share");
  need_share(o.profile_share, "profile_share");
  need(o.profile_phase > 0.0 && o.profile_phase < 1.0, "profile_phase", "in (0, 1)",
       std::to_string(o.profile_phase));
  need(o.profile_kind == "items" || o.profile_kind == "clusters", "profile_kind", "items or clusters",
       o.profile_kind);
  need(o.profile_timing == "old_only" || o.profile_timing == "throughout", "profile_timing",
       "old_only or throughout", o.profile_timing);
  need(o.profile_weights == "harmonic" || o.profile_weights == "uniform", "profile_weights",
       "harmonic or uniform", o.profile_weights);
  if (o.profile_kind == "items") {
    need(o.profile_items >= 2 && o.profile_items <= o.num_items / 2, "profile_items",
         "in [2, num_items / 2 = " + std::to_string(o.num_items / 2) + "]", std::to_string(o.profile_items));
  } else {
    // The drift needs two clusters outside the profile; the two targets two items of a cluster.
    need(o.profile_clusters >= 1 && o.profile_clusters <= o.num_clusters - 2, "profile_clusters",
         "in [1, num_clusters - 2 = " + std::to_string(o.num_clusters - 2) + "]",
         std::to_string(o.profile_clusters));
    need(o.num_items >= 2 * o.num_clusters, "num_items",
         "at least 2 * num_clusters (" + std::to_string(2 * o.num_clusters) + ") with profile_kind clusters",
         std::to_string(o.num_items));
  }
  need(o.min_interest_len >= 1, "min_interest_len", "at least 1", std::to_string(o.min_interest_len));
  need(o.max_interest_len >= o.min_interest_len, "max_interest_len",
       "at least min_interest_len (" + std::to_string(o.min_interest_len) + ")",
       std::to_string(o.max_interest_len));
  if (o.profile_timing == "throughout") return;
  // The shortest history must keep recent_window profile-free events before its two targets.
  const auto phase = static_cast<int64_t>(o.profile_phase * static_cast<double>(o.min_seq_len));
  need(o.min_seq_len - phase >= o.recent_window + 2, "min_seq_len",
       "at least recent_window + 2 events longer than its profile phase (" + std::to_string(phase) +
           " events), i.e. recent_window + 2 = " + std::to_string(o.recent_window + 2) +
           " drift events after it",
       std::to_string(o.min_seq_len));
}

void check_bursty_options(const SynthOptions& o) {
  need(o.num_clusters >= 2, "num_clusters", "at least 2 (a new interest differs from the current one)",
       std::to_string(o.num_clusters));
  // Users never repeat an item, so a sequence cannot exceed V.
  need(o.max_seq_len <= o.num_items, "max_seq_len",
       "at most num_items (" + std::to_string(o.num_items) + ")", std::to_string(o.max_seq_len));
  need(o.min_burst_len >= 1, "min_burst_len", "at least 1", std::to_string(o.min_burst_len));
  need(o.max_burst_len >= o.min_burst_len, "max_burst_len",
       "at least min_burst_len (" + std::to_string(o.min_burst_len) + ")", std::to_string(o.max_burst_len));
  need_share(o.long_gap_share, "long_gap_share");
  need_share(o.stay_prob, "stay_prob");
}

std::vector<SynthUser> long_term_users(const SynthOptions& o, const ItemWorld& w, Rng& rng) {
  const int64_t V = o.num_items;
  const int64_t W = o.recent_window;
  const bool by_cluster = o.profile_kind == "clusters";
  const std::vector<double> home_cdf =
      visit_cdf(by_cluster ? o.profile_clusters : o.profile_items, o.profile_weights == "uniform");
  std::vector<uint8_t> home(static_cast<size_t>(V) + 1, 0);
  std::vector<SynthUser> users(static_cast<size_t>(o.num_users));
  for (auto& user : users) {
    auto& profile = user.profile;
    auto& clusters = user.home_clusters;
    if (by_cluster) {  // every item of a home cluster is a home item: the drift never enters them
      while (static_cast<int64_t>(clusters.size()) < o.profile_clusters) {
        const int64_t cand = rng.between(0, o.num_clusters - 1);
        if (std::find(clusters.begin(), clusters.end(), cand) != clusters.end()) continue;
        clusters.push_back(cand);
        for (int64_t i : w.ranked[static_cast<size_t>(cand)]) {
          home[static_cast<size_t>(i)] = 1;
          profile.push_back(i);
        }
      }
    }
    while (!by_cluster && static_cast<int64_t>(profile.size()) < o.profile_items) {
      const int64_t cand = rng.between(1, V);
      if (!home[static_cast<size_t>(cand)]) {
        home[static_cast<size_t>(cand)] = 1;
        profile.push_back(cand);
      }
    }
    const std::vector<double> taste = draw_taste(o.num_clusters, o.taste_concentration, rng);
    DriftWalk drift(o, w, home);
    // A home event: a home item by visit weight, or an item of a home cluster (by visit weight)
    // drawn by the cluster's popularity.
    auto home_item = [&]() {
      const size_t k = rng.pick(home_cdf);
      return by_cluster ? w.popular(clusters[k], rng) : profile[k];
    };
    const int64_t len = rng.between(o.min_seq_len, o.max_seq_len);
    // profile_timing throughout: the whole history is drawn as the profile phase is (stationary).
    const bool stationary = o.profile_timing == "throughout";
    const auto phase = stationary ? len : static_cast<int64_t>(o.profile_phase * static_cast<double>(len));
    auto& items = user.items;
    items.reserve(static_cast<size_t>(len));
    for (int64_t k = 0; k < phase; ++k)
      items.push_back(rng.uniform() < o.profile_share ? home_item() : drift.next(taste, rng));
    if (!stationary) {
      // Returns W+1..2W events apart, the last one at least W events before the targets.
      int64_t next_return = phase + rng.between(W + 1, 2 * W);
      for (int64_t k = phase; k < len - 2; ++k) {
        if (k == next_return && k < len - 2 - W) {
          items.push_back(home_item());
          next_return += rng.between(W + 1, 2 * W);
        } else {
          items.push_back(drift.next(taste, rng));
        }
      }
      // The validation and test targets; two returns are distinct home items.
      int64_t valid_return = 0;
      for (int target = 0; target < 2; ++target) {
        if (rng.uniform() < o.long_term_share) {
          int64_t item = home_item();
          while (item == valid_return) item = home_item();
          valid_return = item;
          items.push_back(item);
        } else {
          items.push_back(drift.next(taste, rng));
        }
      }
    }
    user.timestamps = hourly(len, rng);
    for (int64_t i : profile) home[static_cast<size_t>(i)] = 0;  // reset for the next user
  }
  return users;
}

std::vector<SynthUser> bursty_users(const SynthOptions& o, const ItemWorld& w, Rng& rng) {
  const int64_t C = o.num_clusters;
  std::vector<uint8_t> seen(static_cast<size_t>(o.num_items) + 1, 0);
  std::vector<int64_t> unseen(static_cast<size_t>(C));  // per cluster: items the user has not seen
  auto is_seen = [&](int64_t i) { return seen[static_cast<size_t>(i)] != 0; };
  auto usable = [&](int64_t c) { return unseen[static_cast<size_t>(c)] > 0; };
  std::vector<SynthUser> users(static_cast<size_t>(o.num_users));
  for (auto& user : users) {
    for (int64_t c = 0; c < C; ++c) unseen[static_cast<size_t>(c)] = static_cast<int64_t>(w.ranked[c].size());
    const std::vector<double> taste = draw_taste(C, o.taste_concentration, rng);
    const int64_t len = rng.between(o.min_seq_len, o.max_seq_len);
    int64_t t = kEpoch2020 + rng.between(0, 365LL * 86400);
    int64_t cluster = new_cluster(taste, -1, usable, rng);
    int64_t prev = 0;  // the previous item while the Markov walk continues, else 0
    auto& items = user.items;
    while (true) {
      const int64_t n = std::min({rng.between(o.min_burst_len, o.max_burst_len),
                                  len - static_cast<int64_t>(items.size()), unseen[static_cast<size_t>(cluster)]});
      for (int64_t b = 0; b < n; ++b) {
        if (b > 0) t += rng.log_uniform(5.0, 300.0);
        int64_t item = 0;
        if (prev != 0 && rng.uniform() < o.transition_prob) item = successor(w, prev, is_seen, rng);
        if (item == 0) item = popular_except(w, cluster, is_seen, rng);
        seen[static_cast<size_t>(item)] = 1;
        --unseen[static_cast<size_t>(cluster)];
        items.push_back(item);
        user.timestamps.push_back(t);
        prev = item;
      }
      if (static_cast<int64_t>(items.size()) >= len) break;
      bool stay = false;
      if (rng.uniform() < o.long_gap_share) {
        t += rng.log_uniform(7.0 * 86400, 30.0 * 86400);
      } else {
        t += rng.log_uniform(3600.0, 12.0 * 3600);
        stay = rng.uniform() < o.stay_prob && usable(cluster);
      }
      if (!stay) {
        cluster = new_cluster(taste, cluster, usable, rng);
        prev = 0;
      }
    }
    for (int64_t i : items) seen[static_cast<size_t>(i)] = 0;  // reset for the next user
  }
  return users;
}

}  // namespace seqrec::data::synth
