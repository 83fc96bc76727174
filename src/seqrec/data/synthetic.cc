// Synthetic interaction generator (see synthetic.h). All randomness comes from one mt19937_64
// through hand-written distributions, so a seed gives the same files with every standard library.
#include "seqrec/data/synthetic.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "seqrec/common/error.h"
#include "seqrec/common/fs.h"
#include "seqrec/common/log.h"

namespace seqrec::data {
namespace {

/// Portable random draws on top of the (standardised) 64-bit Mersenne twister.
class Rng {
 public:
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
  /// Standard normal (Box-Muller, one value per call: simpler than caching and still portable).
  double normal() {
    const double u1 = uniform_pos();
    const double u2 = uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }
  /// Gamma(alpha, 1) by Marsaglia-Tsang; alpha < 1 via the Gamma(alpha+1) * U^(1/alpha) boost.
  double gamma(double alpha) {
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
  /// Index drawn from a cumulative weight table (last entry = total).
  size_t pick(const std::vector<double>& cdf) {
    const double r = uniform() * cdf.back();
    const auto it = std::upper_bound(cdf.begin(), cdf.end(), r);
    return std::min(static_cast<size_t>(it - cdf.begin()), cdf.size() - 1);
  }

 private:
  std::mt19937_64 engine_;
};

// Pronounceable made-up words from consonant-vowel syllables.
const char* const kOnsets[] = {"b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t",
                               "v", "z", "br", "dr", "gl", "kr", "pl", "st", "tr", "sh", "ch"};
const char* const kVowels[] = {"a", "e", "i", "o", "u", "ai", "ou", "ea"};
const char* const kCodas[] = {"", "", "", "n", "r", "s", "l", "m", "x"};

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

void check_options(const SynthOptions& o) {
  auto need = [](bool ok, const char* key, const std::string& expected, const std::string& got) {
    if (!ok) throw ConfigError(std::string("synth.") + key, "expected " + expected + ", got " + got);
  };
  need(o.num_users >= 1, "num_users", "at least 1", std::to_string(o.num_users));
  need(o.num_items >= 2, "num_items", "at least 2", std::to_string(o.num_items));
  need(o.num_clusters >= 1 && o.num_clusters <= o.num_items, "num_clusters",
       "1..num_items (" + std::to_string(o.num_items) + ")", std::to_string(o.num_clusters));
  need(o.min_seq_len >= 1, "min_seq_len", "at least 1", std::to_string(o.min_seq_len));
  need(o.max_seq_len >= o.min_seq_len, "max_seq_len",
       "at least min_seq_len (" + std::to_string(o.min_seq_len) + ")", std::to_string(o.max_seq_len));
  // Users never repeat an item (like the public datasets), so a sequence cannot exceed V.
  need(o.max_seq_len <= o.num_items, "max_seq_len",
       "at most num_items (" + std::to_string(o.num_items) + ")", std::to_string(o.max_seq_len));
  need(o.transition_prob >= 0.0 && o.transition_prob <= 1.0, "transition_prob", "a value in [0, 1]",
       std::to_string(o.transition_prob));
  need(o.taste_concentration > 0.0 && std::isfinite(o.taste_concentration), "taste_concentration",
       "a positive value", std::to_string(o.taste_concentration));
  need(!o.output.empty(), "output", "a directory path", "''");
}

constexpr int kSuccessors = 3;
constexpr double kSuccessorProb[kSuccessors] = {0.6, 0.3, 0.1};
constexpr int kVocabSize = 8;
constexpr double kZipfExponent = 1.0;
constexpr int64_t kEpoch2020 = 1577836800;  // 2020-01-01T00:00:00Z

}  // namespace

SynthReport generate_synthetic(const SynthOptions& options) {
  check_options(options);
  const int64_t V = options.num_items;
  const int64_t C = options.num_clusters;
  Rng rng(options.seed);

  // Items 1..V: item i belongs to cluster (i - 1) % C.
  std::vector<std::vector<int64_t>> members(static_cast<size_t>(C));
  for (int64_t i = 1; i <= V; ++i) members[static_cast<size_t>((i - 1) % C)].push_back(i);

  // Within-cluster Zipf popularity over a random rank order.
  std::vector<std::vector<int64_t>> ranked(static_cast<size_t>(C));
  std::vector<std::vector<double>> cdf(static_cast<size_t>(C));
  for (int64_t c = 0; c < C; ++c) {
    auto& r = ranked[static_cast<size_t>(c)];
    r = members[static_cast<size_t>(c)];
    for (size_t k = r.size(); k > 1; --k) std::swap(r[k - 1], r[rng.below(k)]);  // Fisher-Yates
    double acc = 0.0;
    for (size_t k = 0; k < r.size(); ++k) {
      acc += 1.0 / std::pow(static_cast<double>(k + 1), kZipfExponent);
      cdf[static_cast<size_t>(c)].push_back(acc);
    }
  }

  // Each item's successors: distinct items of its cluster (fewer when the cluster is small).
  std::vector<std::vector<int64_t>> successors(static_cast<size_t>(V) + 1);
  for (int64_t i = 1; i <= V; ++i) {
    const auto& m = members[static_cast<size_t>((i - 1) % C)];
    std::vector<int64_t> pool;
    for (int64_t j : m) {
      if (j != i) pool.push_back(j);
    }
    const size_t n = std::min<size_t>(kSuccessors, pool.size());
    for (size_t k = 0; k < n; ++k) {  // partial Fisher-Yates
      std::swap(pool[k], pool[k + rng.below(pool.size() - k)]);
      successors[static_cast<size_t>(i)].push_back(pool[k]);
    }
  }

  // Text: cluster names and vocabularies, one extra word per item.
  std::vector<std::string> cluster_name(static_cast<size_t>(C));
  std::vector<std::vector<std::string>> vocab(static_cast<size_t>(C));
  for (int64_t c = 0; c < C; ++c) {
    cluster_name[static_cast<size_t>(c)] = make_word(rng, 2, 3);
    for (int w = 0; w < kVocabSize; ++w) vocab[static_cast<size_t>(c)].push_back(make_word(rng, 1, 3));
  }
  const char* const kAdjectives[] = {"classic", "bright", "quiet", "bold", "gentle",
                                     "curious", "vivid", "simple", "rare", "warm"};
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

  // Users: Dirichlet tastes over clusters, then sequences of distinct items.
  std::string interactions = "item_id,user_id,timestamp\n";
  interactions.reserve(static_cast<size_t>(options.num_users) *
                       static_cast<size_t>(options.max_seq_len + options.min_seq_len) * 12);
  std::vector<double> taste_cdf(static_cast<size_t>(C));
  std::vector<uint8_t> seen(static_cast<size_t>(V) + 1, 0);
  std::vector<int64_t> seq;
  SynthReport report;
  const double log_min_gap = std::log(60.0);           // a minute
  const double log_max_gap = std::log(3.0 * 86400.0);  // three days
  for (int64_t u = 0; u < options.num_users; ++u) {
    double acc = 0.0;
    for (int64_t c = 0; c < C; ++c) {
      acc += rng.gamma(options.taste_concentration);
      taste_cdf[static_cast<size_t>(c)] = acc;
    }
    if (!(acc > 0.0)) {  // every gamma draw underflowed: fall back to a uniform taste
      for (int64_t c = 0; c < C; ++c) taste_cdf[static_cast<size_t>(c)] = static_cast<double>(c + 1);
    }
    const int64_t len = rng.between(options.min_seq_len, options.max_seq_len);
    seq.clear();
    auto draw_from_taste = [&]() -> int64_t {
      const size_t c = rng.pick(taste_cdf);
      return ranked[c][rng.pick(cdf[c])];
    };
    while (static_cast<int64_t>(seq.size()) < len) {
      int64_t next = 0;
      if (!seq.empty() && rng.uniform() < options.transition_prob) {
        // Follow a successor of the previous item; skip successors the user has already seen.
        const auto& succ = successors[static_cast<size_t>(seq.back())];
        double total = 0.0;
        for (size_t k = 0; k < succ.size(); ++k) {
          if (!seen[static_cast<size_t>(succ[k])]) total += kSuccessorProb[k];
        }
        if (total > 0.0) {
          double r = rng.uniform() * total;
          for (size_t k = 0; k < succ.size(); ++k) {
            if (seen[static_cast<size_t>(succ[k])]) continue;
            next = succ[k];
            r -= kSuccessorProb[k];
            if (r < 0.0) break;
          }
        }
      }
      if (next == 0) {
        // A few taste draws; then any unseen item, so long sequences always terminate.
        for (int attempt = 0; attempt < 32 && next == 0; ++attempt) {
          const int64_t cand = draw_from_taste();
          if (!seen[static_cast<size_t>(cand)]) next = cand;
        }
        if (next == 0) {
          int64_t cand = rng.between(1, V);
          while (seen[static_cast<size_t>(cand)]) cand = cand % V + 1;
          next = cand;
        }
      }
      seen[static_cast<size_t>(next)] = 1;
      seq.push_back(next);
    }
    int64_t t = kEpoch2020 + rng.between(0, 365LL * 86400);
    const std::string user = "u" + std::to_string(u);
    for (int64_t item : seq) {
      t += static_cast<int64_t>(
          std::exp(log_min_gap + rng.uniform() * (log_max_gap - log_min_gap)));
      interactions += 'i';
      interactions += std::to_string(item);
      interactions += ',';
      interactions += user;
      interactions += ',';
      interactions += std::to_string(t);
      interactions += '\n';
      seen[static_cast<size_t>(item)] = 0;  // reset for the next user
    }
    report.num_events += len;
  }

  make_dirs(options.output);
  write_file_atomic(options.output + "/interactions.csv", interactions);
  write_file_atomic(options.output + "/items.csv", items_csv);
  log_info("synthetic data: %lld users, %lld items, %lld events -> %s",
           static_cast<long long>(options.num_users), static_cast<long long>(V),
           static_cast<long long>(report.num_events), options.output.c_str());
  return report;
}

}  // namespace seqrec::data
