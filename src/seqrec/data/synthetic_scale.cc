// The Pixel8M-shaped log: chunks of users generated in parallel, written in order.
#include "seqrec/data/synthetic_scale.h"

#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <vector>

#include "seqrec/common/error.h"
#include "seqrec/common/fs.h"
#include "seqrec/common/log.h"
#include "seqrec/common/parallel.h"
#include "seqrec/common/random.h"

namespace seqrec::data {
namespace {

/// Walker's alias table: O(1) draws from a discrete distribution.
class AliasTable {
 public:
  explicit AliasTable(const std::vector<double>& weights) {
    const size_t n = weights.size();
    prob_.resize(n);
    alias_.resize(n);
    const double total = std::accumulate(weights.begin(), weights.end(), 0.0);
    std::vector<double> scaled(n);
    std::vector<uint32_t> small, large;
    for (size_t i = 0; i < n; ++i) {
      scaled[i] = weights[i] * static_cast<double>(n) / total;
      (scaled[i] < 1.0 ? small : large).push_back(static_cast<uint32_t>(i));
    }
    while (!small.empty() && !large.empty()) {
      const uint32_t s = small.back(), l = large.back();
      small.pop_back();
      prob_[s] = scaled[s];
      alias_[s] = l;
      scaled[l] -= 1.0 - scaled[s];
      if (scaled[l] < 1.0) {
        large.pop_back();
        small.push_back(l);
      }
    }
    for (uint32_t i : large) prob_[i] = 1.0, alias_[i] = i;
    for (uint32_t i : small) prob_[i] = 1.0, alias_[i] = i;
  }
  uint32_t draw(Rng& rng) const {
    const uint32_t i = static_cast<uint32_t>(rng.below(prob_.size()));
    return rng.uniform() < prob_[i] ? i : alias_[i];
  }

 private:
  std::vector<double> prob_;
  std::vector<uint32_t> alias_;
};

void check(const ScaleSynthOptions& o) {
  if (o.num_users < 1) throw ConfigError("synth.num_users", "expected >= 1, got " + std::to_string(o.num_users));
  if (o.num_items < 1 || o.num_items >= (int64_t{1} << 31)) {
    throw ConfigError("synth.num_items", "expected 1..2^31-1, got " + std::to_string(o.num_items));
  }
  if (o.min_seq_len < 1) throw ConfigError("synth.min_seq_len", "expected >= 1, got " + std::to_string(o.min_seq_len));
  if (o.max_seq_len < o.min_seq_len) {
    throw ConfigError("synth.max_seq_len", "expected >= synth.min_seq_len (" + std::to_string(o.min_seq_len) +
                                               "), got " + std::to_string(o.max_seq_len));
  }
  if (!(o.mean_seq_len >= static_cast<double>(o.min_seq_len))) {
    throw ConfigError("synth.mean_seq_len", "expected >= synth.min_seq_len, got " + std::to_string(o.mean_seq_len));
  }
  if (!(o.zipf_exponent >= 0)) throw ConfigError("synth.zipf_exponent", "expected >= 0");
  if (o.users_per_chunk < 1) throw ConfigError("synth.users_per_chunk", "expected >= 1");
  if (o.output.empty()) throw ConfigError("synth.output", "expected a directory path, got ''");
}

struct Row {
  int64_t timestamp;
  uint32_t user;
  uint32_t item;
};

void put_int(std::string* out, int64_t v) {
  char buf[24];
  auto [p, ec] = std::to_chars(buf, buf + sizeof buf, v);
  (void)ec;
  out->append(buf, p);
}

/// The rows of users [first, first + count), in time order (ties by user, then event order).
std::string chunk_text(const ScaleSynthOptions& o, const AliasTable& items,
                       const std::vector<uint32_t>& item_of_rank, int64_t first, int64_t count,
                       int64_t* events) {
  Rng rng(derive_seed({o.seed, static_cast<uint64_t>(first)}));
  std::vector<Row> rows;
  const double extra = o.mean_seq_len - static_cast<double>(o.min_seq_len);
  constexpr int64_t kStart = 1'577'836'800;  // 2020-01-01
  constexpr int64_t kSpan = 2 * 365 * 86'400;
  for (int64_t u = first; u < first + count; ++u) {
    int64_t len = o.min_seq_len;
    if (extra > 0) len += static_cast<int64_t>(-std::log(1.0 - rng.uniform()) * extra);
    len = std::min(len, o.max_seq_len);
    int64_t t = kStart + static_cast<int64_t>(rng.below(kSpan));
    for (int64_t k = 0; k < len; ++k) {
      // Gaps log-uniform between 10 s and 10 days.
      t += static_cast<int64_t>(std::exp(std::log(10.0) + rng.uniform() * std::log(86'400.0)));
      rows.push_back(Row{t, static_cast<uint32_t>(u), item_of_rank[items.draw(rng)]});
    }
  }
  std::stable_sort(rows.begin(), rows.end(),
                   [](const Row& a, const Row& b) { return a.timestamp < b.timestamp; });
  std::string out;
  out.reserve(rows.size() * 26);
  for (const Row& r : rows) {
    put_int(&out, r.user);
    out += ',';
    put_int(&out, r.item);
    out += ',';
    put_int(&out, r.timestamp);
    out += '\n';
  }
  *events = static_cast<int64_t>(rows.size());
  return out;
}

}  // namespace

int64_t generate_scale_log(const ScaleSynthOptions& o) {
  check(o);
  make_dirs(o.output);
  // Popularity by rank, with ranks assigned to item ids in a seeded random order (so popular items
  // are not simply the small ids).
  std::vector<double> weights(static_cast<size_t>(o.num_items));
  for (size_t r = 0; r < weights.size(); ++r) weights[r] = std::pow(static_cast<double>(r + 1), -o.zipf_exponent);
  const AliasTable items(weights);
  std::vector<uint32_t> item_of_rank(weights.size());
  std::iota(item_of_rank.begin(), item_of_rank.end(), 1u);
  Rng shuffle(derive_seed({o.seed, 0x17e45ULL}));
  for (size_t i = item_of_rank.size(); i > 1; --i) std::swap(item_of_rank[i - 1], item_of_rank[shuffle.below(i)]);

  const std::string path = o.output + "/interactions.csv";
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (f == nullptr) throw DataError("cannot write " + path + ": " + std::strerror(errno));
  const int threads = resolve_threads(o.threads);
  const int64_t chunks = (o.num_users + o.users_per_chunk - 1) / o.users_per_chunk;
  int64_t total = 0;
  bool ok = std::fputs("user_id,item_id,timestamp\n", f) >= 0;
  std::vector<std::string> texts(static_cast<size_t>(threads));
  std::vector<int64_t> counts(static_cast<size_t>(threads));
  for (int64_t c0 = 0; c0 < chunks && ok; c0 += threads) {
    const int64_t n = std::min<int64_t>(threads, chunks - c0);
    parallel_tasks(n, threads, [&](int64_t t) {
      const int64_t first = (c0 + t) * o.users_per_chunk;
      texts[static_cast<size_t>(t)] =
          chunk_text(o, items, item_of_rank, first, std::min(o.users_per_chunk, o.num_users - first),
                     &counts[static_cast<size_t>(t)]);
    });
    for (int64_t t = 0; t < n && ok; ++t) {
      const std::string& s = texts[static_cast<size_t>(t)];
      ok = std::fwrite(s.data(), 1, s.size(), f) == s.size();
      total += counts[static_cast<size_t>(t)];
    }
    if ((c0 / threads) % 64 == 63) log_info("synth: %lld events written", static_cast<long long>(total));
  }
  ok = std::fflush(f) == 0 && ok;
  const int e = errno;
  ok = std::fclose(f) == 0 && ok;
  if (!ok) {
    std::remove(tmp.c_str());
    throw DataError("cannot write " + path + ": " + std::strerror(e));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    throw DataError("cannot write " + path + ": rename failed");
  }
  return total;
}

}  // namespace seqrec::data
