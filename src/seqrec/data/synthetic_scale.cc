// The Pixel8M-shaped log: chunks of users generated in parallel, written in order.
#include "seqrec/data/synthetic_scale.h"

#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <numeric>
#include <vector>

#include "seqrec/common/error.h"
#include "seqrec/common/fs.h"
#include "seqrec/common/log.h"
#include "seqrec/common/parallel.h"
#include "seqrec/common/random.h"
#include "seqrec/data/parquet_writer.h"

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
  if (o.format != "csv" && o.format != "parquet") {
    throw ConfigError("synth.format", "expected csv or parquet, got '" + o.format + "'");
  }
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
std::vector<Row> chunk_rows(const ScaleSynthOptions& o, const AliasTable& items,
                            const std::vector<uint32_t>& item_of_rank, int64_t first, int64_t count) {
  Rng rng(derive_seed({o.seed, static_cast<uint64_t>(first)}));
  std::vector<Row> rows;
  const double extra = o.mean_seq_len - static_cast<double>(o.min_seq_len);
  constexpr int64_t kStart = 1'577'836'800;  // 2020-01-01
  constexpr int64_t kSpan = 2 * 365 * 86'400;
  for (int64_t u = first; u < first + count; ++u) {
    int64_t len = o.min_seq_len;
    // Rounded, not floored, so that the mean length is mean_seq_len.
    if (extra > 0) len += std::llround(-std::log(1.0 - rng.uniform()) * extra);
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
  return rows;
}

std::string rows_text(const std::vector<Row>& rows) {
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
  return out;
}

/// The three int64 columns of a Parquet batch.
std::vector<parquet::Column> rows_columns(const std::vector<Row>& rows) {
  std::vector<parquet::Column> cols(3);
  for (auto& c : cols) {
    c.physical = parquet::PhysicalType::kInt64;
    c.ints.reserve(rows.size());
    c.num_rows = static_cast<int64_t>(rows.size());
  }
  for (const Row& r : rows) {
    cols[0].ints.push_back(r.user);
    cols[1].ints.push_back(r.item);
    cols[2].ints.push_back(r.timestamp);
  }
  return cols;
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

  const bool as_parquet = o.format == "parquet";
  const std::string path = o.output + (as_parquet ? "/interactions.parquet" : "/interactions.csv");
  const int threads = resolve_threads(o.threads);
  const int64_t chunks = (o.num_users + o.users_per_chunk - 1) / o.users_per_chunk;
  int64_t total = 0;
  std::unique_ptr<parquet::Writer> pq;
  std::FILE* f = nullptr;
  clean_stale_temps(path);
  const std::string tmp = temp_path_for(path);
  if (as_parquet) {
    parquet::WriterOptions wo;  // snappy, row groups of 2^20 rows
    pq = std::make_unique<parquet::Writer>(
        path, std::vector<parquet::WriteColumn>{{"user_id", parquet::WriteType::kInt64, false},
                                                {"item_id", parquet::WriteType::kInt64, false},
                                                {"timestamp", parquet::WriteType::kInt64, false}},
        wo);
  } else {
    f = std::fopen(tmp.c_str(), "wb");
    if (f == nullptr) throw DataError("cannot write " + path + ": " + std::strerror(errno));
  }
  bool ok = as_parquet || std::fputs("user_id,item_id,timestamp\n", f) >= 0;
  std::vector<std::vector<Row>> rows(static_cast<size_t>(threads));
  std::vector<std::string> texts(static_cast<size_t>(threads));
  for (int64_t c0 = 0; c0 < chunks && ok; c0 += threads) {
    const int64_t n = std::min<int64_t>(threads, chunks - c0);
    parallel_tasks(n, threads, [&](int64_t t) {
      const int64_t first = (c0 + t) * o.users_per_chunk;
      auto& r = rows[static_cast<size_t>(t)];
      r = chunk_rows(o, items, item_of_rank, first, std::min(o.users_per_chunk, o.num_users - first));
      if (!as_parquet) texts[static_cast<size_t>(t)] = rows_text(r);
    });
    for (int64_t t = 0; t < n && ok; ++t) {
      total += static_cast<int64_t>(rows[static_cast<size_t>(t)].size());
      if (as_parquet) {
        pq->write(rows_columns(rows[static_cast<size_t>(t)]));
      } else {
        const std::string& s = texts[static_cast<size_t>(t)];
        ok = std::fwrite(s.data(), 1, s.size(), f) == s.size();
      }
    }
    if ((c0 / threads) % 64 == 63) log_info("synth: %lld events written", static_cast<long long>(total));
  }
  if (as_parquet) {
    pq->close();
    return total;
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
