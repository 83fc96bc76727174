// A Pixel8M-shaped interaction log for data-at-scale work (`synth.mode: scale`): millions of users
// with heavy-tailed history lengths, a power-law (Zipf) item popularity, streamed straight to disk
// in bounded memory. It has no taste structure: it exists to measure prepare and training
// throughput at scale, not model quality.
#pragma once

#include <cstdint>
#include <string>

namespace seqrec::data {

/// Options of the scale generator (the `synth:` section with mode scale).
struct ScaleSynthOptions {
  int64_t num_users = 8'900'000;   ///< Pixel8M: 8.9M users
  int64_t num_items = 400'000;     ///< Pixel8M: ~0.4M items
  int64_t min_seq_len = 5;         ///< every user has at least this many events
  double mean_seq_len = 17.8;      ///< Pixel8M: 158M / 8.9M; lengths are min + exponential
  int64_t max_seq_len = 2000;      ///< lengths are capped here
  double zipf_exponent = 1.0;      ///< item popularity p(rank r) ~ r^-s
  int64_t users_per_chunk = 65'536;///< users generated together; rows of a chunk are written in
                                   ///< time order (interleaved users), chunks one after another
  int64_t threads = 0;             ///< 0 = all cores; the output does not depend on it
  uint64_t seed = 42;
  std::string format = "csv";      ///< csv | parquet (interactions.parquet: three INT64 columns,
                                   ///< snappy, row groups of 2^20 rows)
  std::string output;              ///< directory; writes interactions.csv (or .parquet)
};

/// Validates the options (ConfigError naming synth.<field>) and streams <output>/interactions.csv
/// or .parquet (columns user_id,item_id,timestamp; integer ids, users 0..U-1, items 1..V; written to a temp name
/// and renamed). Returns the number of events. Deterministic for a seed.
int64_t generate_scale_log(const ScaleSynthOptions& options);

}  // namespace seqrec::data
