// Synthetic interaction generator (see synthetic.h): the option checks, the default mode's users,
// and the writer. The item world and the long_term and bursty modes are in synthetic_long.cc. All
// randomness comes from one mt19937_64 through hand-written distributions, so a seed gives the same
// files with every standard library.
#include "seqrec/data/synthetic.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "seqrec/common/error.h"
#include "seqrec/common/fs.h"
#include "seqrec/common/log.h"
#include "seqrec/data/synthetic_images.h"
#include "seqrec/data/synthetic_long.h"

namespace seqrec::data {
namespace {

using synth::ItemWorld;
using synth::Rng;

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
  // (long_term repeats items by design; bursty checks this itself.)
  if (o.mode == SynthMode::kDefault) {
    need(o.max_seq_len <= o.num_items, "max_seq_len",
         "at most num_items (" + std::to_string(o.num_items) + ")", std::to_string(o.max_seq_len));
  }
  need(o.transition_prob >= 0.0 && o.transition_prob <= 1.0, "transition_prob", "a value in [0, 1]",
       std::to_string(o.transition_prob));
  need(o.taste_concentration > 0.0 && std::isfinite(o.taste_concentration), "taste_concentration",
       "a positive value", std::to_string(o.taste_concentration));
  need(!o.output.empty(), "output", "a directory path", "''");
  if (o.mode == SynthMode::kLongTerm) synth::check_long_term_options(o);
  if (o.mode == SynthMode::kBursty) synth::check_bursty_options(o);
}

/// The default mode's users: Dirichlet tastes over clusters, then sequences of distinct items.
std::vector<SynthUser> default_users(const SynthOptions& options, const ItemWorld& world, Rng& rng) {
  const int64_t V = options.num_items;
  std::vector<uint8_t> seen(static_cast<size_t>(V) + 1, 0);
  std::vector<SynthUser> users(static_cast<size_t>(options.num_users));
  const double log_min_gap = std::log(60.0);           // a minute
  const double log_max_gap = std::log(3.0 * 86400.0);  // three days
  for (auto& user : users) {
    const std::vector<double> taste_cdf = synth::draw_taste(world.num_clusters, options.taste_concentration, rng);
    const int64_t len = rng.between(options.min_seq_len, options.max_seq_len);
    std::vector<int64_t>& seq = user.items;
    auto draw_from_taste = [&]() -> int64_t { return world.popular(static_cast<int64_t>(rng.pick(taste_cdf)), rng); };
    while (static_cast<int64_t>(seq.size()) < len) {
      int64_t next = 0;
      if (!seq.empty() && rng.uniform() < options.transition_prob) {
        // Follow a successor of the previous item; skip successors the user has already seen.
        const auto& succ = world.successors[static_cast<size_t>(seq.back())];
        double total = 0.0;
        for (size_t k = 0; k < succ.size(); ++k) {
          if (!seen[static_cast<size_t>(succ[k])]) total += synth::kSuccessorProb[k];
        }
        if (total > 0.0) {
          double r = rng.uniform() * total;
          for (size_t k = 0; k < succ.size(); ++k) {
            if (seen[static_cast<size_t>(succ[k])]) continue;
            next = succ[k];
            r -= synth::kSuccessorProb[k];
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
    int64_t t = synth::kEpoch2020 + rng.between(0, 365LL * 86400);
    for (int64_t item : seq) {
      t += static_cast<int64_t>(std::exp(log_min_gap + rng.uniform() * (log_max_gap - log_min_gap)));
      user.timestamps.push_back(t);
      seen[static_cast<size_t>(item)] = 0;  // reset for the next user
    }
  }
  return users;
}

}  // namespace

SynthMode parse_synth_mode(const std::string& name) {
  for (SynthMode m : {SynthMode::kDefault, SynthMode::kLongTerm, SynthMode::kBursty})
    if (name == synth_mode_name(m)) return m;
  throw ConfigError("synth.mode", "'" + name + "' is not one of: default, long_term, bursty, scale, lsvcr");
}

const char* synth_mode_name(SynthMode mode) {
  switch (mode) {
    case SynthMode::kLongTerm: return "long_term";
    case SynthMode::kBursty: return "bursty";
    default: return "default";
  }
}

SynthOptions synth_defaults(SynthMode mode) {
  SynthOptions o;
  o.mode = mode;
  if (mode == SynthMode::kLongTerm) {
    o.num_users = 500;
    o.num_items = 2000;
    o.num_clusters = 40;
    o.min_seq_len = 1500;
    o.max_seq_len = 2000;
  } else if (mode == SynthMode::kBursty) {
    o.num_users = 2000;
    o.num_items = 2000;  // 100 per cluster: focused users do not run out of unseen items
    o.num_clusters = 20;
    o.min_seq_len = 50;
    o.max_seq_len = 150;
    o.taste_concentration = 0.1;  // one or two main clusters: the new interest is predictable
  }
  return o;
}

namespace {

// Popularity tercile inside the cluster -> shape (synthetic_images.h).
std::vector<Image> render_item_images(const ItemWorld& world, int64_t size) {
  std::vector<Image> images(static_cast<size_t>(world.num_items));
  for (int64_t c = 0; c < world.num_clusters; ++c) {
    const auto& ranked = world.ranked[static_cast<size_t>(c)];
    for (size_t k = 0; k < ranked.size(); ++k) {
      const auto shape = static_cast<SynthShape>(k * 3 / ranked.size());
      images[static_cast<size_t>(ranked[k] - 1)] = render_item_image(c, world.num_clusters, shape, size);
    }
  }
  return images;
}

}  // namespace

SynthData synthesize(const SynthOptions& options) {
  check_options(options);
  Rng rng(options.seed);
  ItemWorld world = synth::make_item_world(options, rng);
  SynthData data;
  switch (options.mode) {
    case SynthMode::kLongTerm: data.users = synth::long_term_users(options, world, rng); break;
    case SynthMode::kBursty: data.users = synth::bursty_users(options, world, rng); break;
    default: data.users = default_users(options, world, rng); break;
  }
  data.items_table = std::move(world.items_table);
  if (options.image_size > 0) data.item_images = render_item_images(world, options.image_size);
  return data;
}

SynthReport generate_synthetic(const SynthOptions& options) {
  const SynthData data = synthesize(options);
  SynthReport report;
  for (const auto& user : data.users) report.num_events += static_cast<int64_t>(user.items.size());
  std::string interactions = "item_id,user_id,timestamp\n";
  interactions.reserve(static_cast<size_t>(report.num_events) * 24 + 32);
  for (size_t u = 0; u < data.users.size(); ++u) {
    const std::string user = "u" + std::to_string(u);
    const auto& s = data.users[u];
    for (size_t k = 0; k < s.items.size(); ++k) {
      interactions += 'i';
      interactions += std::to_string(s.items[k]);
      interactions += ',';
      interactions += user;
      interactions += ',';
      interactions += std::to_string(s.timestamps[k]);
      interactions += '\n';
    }
  }
  make_dirs(options.output);
  write_file_atomic(options.output + "/interactions.csv", interactions);
  write_file_atomic(options.output + "/items.csv", data.items_table);
  if (!data.item_images.empty()) {
    make_dirs(options.output + "/images");
    for (size_t i = 0; i < data.item_images.size(); ++i)
      write_file_atomic(options.output + "/images/i" + std::to_string(i + 1) + ".png", encode_png(data.item_images[i]));
  }
  log_info("synthetic data (%s): %lld users, %lld items, %lld events -> %s", synth_mode_name(options.mode),
           static_cast<long long>(options.num_users), static_cast<long long>(options.num_items),
           static_cast<long long>(report.num_events), options.output.c_str());
  return report;
}

}  // namespace seqrec::data
