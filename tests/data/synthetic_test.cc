// Tests of the synthetic generator: determinism, ranges, time order, titles, that prepare reads its
// output, and the structure of the long_term and bursty modes measured on what they write.
#include "seqrec/data/synthetic.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "seqrec/common/error.h"
#include "seqrec/common/fs.h"
#include "seqrec/common/hash.h"
#include "seqrec/data/interaction_store.h"
#include "seqrec/data/item_catalog.h"
#include "seqrec/data/prepare.h"
#include "support.h"

namespace seqrec::data {
namespace {

using seqrec::testing::TempDir;

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) out.push_back(line);
  return out;
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : s) {
    if (c == sep) {
      out.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  out.push_back(cur);
  return out;
}

SynthOptions small(const std::string& output, uint64_t seed = 7) {
  SynthOptions o;
  o.num_users = 50;
  o.num_items = 80;
  o.num_clusters = 8;
  o.min_seq_len = 3;
  o.max_seq_len = 12;
  o.seed = seed;
  o.output = output;
  return o;
}

TEST(Synthetic, DeterministicForASeed) {
  TempDir dir;
  generate_synthetic(small(dir.file("a")));
  generate_synthetic(small(dir.file("b")));
  generate_synthetic(small(dir.file("c"), 8));
  EXPECT_EQ(read_file(dir.file("a/interactions.csv")), read_file(dir.file("b/interactions.csv")));
  EXPECT_EQ(read_file(dir.file("a/items.csv")), read_file(dir.file("b/items.csv")));
  EXPECT_NE(read_file(dir.file("a/interactions.csv")), read_file(dir.file("c/interactions.csv")));
  EXPECT_NE(read_file(dir.file("a/items.csv")), read_file(dir.file("c/items.csv")));
}

TEST(Synthetic, CountsRangesAndTimeOrder) {
  TempDir dir;
  const SynthOptions o = small(dir.path());
  const SynthReport r = generate_synthetic(o);
  const auto lines = lines_of(read_file(dir.file("interactions.csv")));
  ASSERT_FALSE(lines.empty());
  EXPECT_EQ(lines[0], "item_id,user_id,timestamp");
  EXPECT_EQ(static_cast<int64_t>(lines.size()) - 1, r.num_events);

  std::map<std::string, std::vector<int64_t>> times;
  std::map<std::string, std::set<std::string>> items_of;
  std::string prev_user;
  std::set<std::string> finished;  // rows are grouped by user
  for (size_t k = 1; k < lines.size(); ++k) {
    const auto f = split(lines[k], ',');
    ASSERT_EQ(f.size(), 3u) << lines[k];
    ASSERT_EQ(f[0][0], 'i');
    ASSERT_EQ(f[1][0], 'u');
    const int64_t item = std::stoll(f[0].substr(1));
    EXPECT_GE(item, 1);
    EXPECT_LE(item, o.num_items);
    if (f[1] != prev_user) {
      EXPECT_EQ(finished.count(f[1]), 0u) << "user rows not contiguous: " << f[1];
      if (!prev_user.empty()) finished.insert(prev_user);
      prev_user = f[1];
    }
    times[f[1]].push_back(std::stoll(f[2]));
    EXPECT_TRUE(items_of[f[1]].insert(f[0]).second) << "repeated item for " << f[1];
  }
  EXPECT_EQ(static_cast<int64_t>(times.size()), o.num_users);
  for (const auto& [user, ts] : times) {
    EXPECT_GE(static_cast<int64_t>(ts.size()), o.min_seq_len) << user;
    EXPECT_LE(static_cast<int64_t>(ts.size()), o.max_seq_len) << user;
    EXPECT_GE(ts.front(), 1577836800) << user;  // 2020
    for (size_t k = 1; k < ts.size(); ++k) EXPECT_LT(ts[k - 1], ts[k]) << user;
  }
}

TEST(Synthetic, ItemTitles) {
  TempDir dir;
  const SynthOptions o = small(dir.path());
  generate_synthetic(o);
  const auto lines = lines_of(read_file(dir.file("items.csv")));
  ASSERT_EQ(static_cast<int64_t>(lines.size()), o.num_items + 1);
  EXPECT_EQ(lines[0], "item_id\ttitle\ttag\tdescription");
  std::set<std::string> tags;
  for (size_t k = 1; k < lines.size(); ++k) {
    const auto f = split(lines[k], '\t');
    ASSERT_EQ(f.size(), 4u) << lines[k];
    EXPECT_EQ(f[0], "i" + std::to_string(k));
    EXPECT_FALSE(f[1].empty());
    EXPECT_GE(split(f[1], ' ').size(), 3u) << f[1];
    EXPECT_FALSE(f[2].empty());
    EXPECT_FALSE(f[3].empty());
    tags.insert(f[2]);
  }
  EXPECT_EQ(static_cast<int64_t>(tags.size()), o.num_clusters);
}

/// The transition signal: the most frequent successor of an item should be far more frequent
/// than chance, or no sequence model could beat popularity.
TEST(Synthetic, TransitionsAreLearnable) {
  TempDir dir;
  SynthOptions o;  // defaults
  o.output = dir.path();
  generate_synthetic(o);
  const auto lines = lines_of(read_file(dir.file("interactions.csv")));
  std::map<std::string, std::map<std::string, int>> next;
  int pairs = 0;
  for (size_t k = 2; k < lines.size(); ++k) {
    const auto a = split(lines[k - 1], ',');
    const auto b = split(lines[k], ',');
    if (a[1] != b[1]) continue;
    ++next[a[0]][b[0]];
    ++pairs;
  }
  int top_hits = 0;
  for (const auto& [item, counts] : next) {
    int best = 0;
    for (const auto& [succ, n] : counts) best = std::max(best, n);
    top_hits += best;
  }
  // With transition_prob 0.6 and successor weights 0.6/0.3/0.1, about a third of the steps
  // go to the item's main successor.
  EXPECT_GT(static_cast<double>(top_hits) / pairs, 0.25);
}

TEST(Synthetic, PrepareReadsTheOutput) {
  TempDir dir;
  const SynthOptions o = small(dir.file("synth"));
  const SynthReport r = generate_synthetic(o);
  PrepareOptions p;
  p.input = dir.file("synth/interactions.csv");
  p.items = dir.file("synth/items.csv");
  p.items_format = ItemFormat::kTable;
  p.output = dir.file("prepared");
  const PrepareReport pr = prepare(p);
  EXPECT_EQ(pr.num_events, r.num_events);
  EXPECT_EQ(pr.num_users, o.num_users);
  EXPECT_TRUE(pr.has_timestamps);
  EXPECT_EQ(pr.items_with_text, pr.num_items);
  const ItemCatalog cat = ItemCatalog::load(p.output);
  EXPECT_EQ(cat.columns(), (std::vector<std::string>{"title", "tag", "description"}));
  for (int64_t id = 1; id <= cat.num_items(); ++id) EXPECT_FALSE(cat.title(id).empty());
  const auto store = InteractionStore::open(p.output + "/interactions.bin");
  EXPECT_EQ(store.num_events(), r.num_events);
}

TEST(Synthetic, RejectsBadOptions) {
  TempDir dir;
  SynthOptions o = small(dir.path());
  o.max_seq_len = 2;
  ASSERT_THROWS_WITH(generate_synthetic(o), "synth.max_seq_len");
  o = small(dir.path());
  o.num_clusters = 0;
  ASSERT_THROWS_WITH(generate_synthetic(o), "synth.num_clusters");
  o = small(dir.path());
  o.transition_prob = 1.5;
  ASSERT_THROWS_WITH(generate_synthetic(o), "synth.transition_prob");
}


/// The default mode is the demo's data: adding modes must not change a byte of it for a seed.
/// (The hashes were taken from the generator before synth.mode existed.)
TEST(Synthetic, DefaultModeOutputIsPinned) {
  TempDir dir;
  generate_synthetic(small(dir.path()));
  const std::string interactions = read_file(dir.file("interactions.csv"));
  const std::string items = read_file(dir.file("items.csv"));
  EXPECT_EQ(fnv1a(kFnvOffset, interactions.data(), interactions.size()), 0xa0c857c11191e89bULL);
  EXPECT_EQ(fnv1a(kFnvOffset, items.data(), items.size()), 0x12d22d71633de3e2ULL);
}

/// interactions.csv read back: per user, in file order, the items and timestamps.
struct Events {
  std::vector<int64_t> items;  ///< item ids (the number after "i")
  std::vector<int64_t> ts;     ///< timestamps
};

std::vector<Events> read_events(const std::string& path) {
  const auto lines = lines_of(read_file(path));
  std::vector<Events> out;
  std::string prev;
  for (size_t k = 1; k < lines.size(); ++k) {
    const auto f = split(lines[k], ',');
    if (f.size() != 3) throw std::runtime_error("bad row: " + lines[k]);
    if (f[1] != prev) out.emplace_back();
    prev = f[1];
    out.back().items.push_back(std::stoll(f[0].substr(1)));
    out.back().ts.push_back(std::stoll(f[2]));
  }
  return out;
}

SynthOptions long_term(const std::string& output, uint64_t seed = 7) {
  SynthOptions o = synth_defaults(SynthMode::kLongTerm);
  o.num_users = 300;
  o.num_items = 400;
  o.num_clusters = 10;
  o.min_seq_len = 300;
  o.max_seq_len = 400;
  o.recent_window = 60;
  o.profile_items = 6;
  o.seed = seed;
  o.output = output;
  return o;
}

SynthOptions bursty(const std::string& output, uint64_t seed = 7) {
  SynthOptions o = synth_defaults(SynthMode::kBursty);
  o.num_users = 400;
  o.num_items = 1200;
  o.num_clusters = 12;
  o.min_seq_len = 40;
  o.max_seq_len = 120;
  o.seed = seed;
  o.output = output;
  return o;
}

TEST(Synthetic, NewModesAreDeterministicForASeed) {
  for (auto make : {long_term, bursty}) {
    TempDir dir;
    generate_synthetic(make(dir.file("a"), 7));
    generate_synthetic(make(dir.file("b"), 7));
    generate_synthetic(make(dir.file("c"), 8));
    const std::string a = read_file(dir.file("a/interactions.csv"));
    EXPECT_EQ(a, read_file(dir.file("b/interactions.csv")));
    EXPECT_EQ(read_file(dir.file("a/items.csv")), read_file(dir.file("b/items.csv")));
    EXPECT_NE(a, read_file(dir.file("c/interactions.csv")));
  }
}

TEST(Synthetic, LongTermWritesLongHourlyHistories) {
  TempDir dir;
  const SynthOptions o = long_term(dir.path());
  const SynthReport r = generate_synthetic(o);
  const SynthData data = synthesize(o);
  const auto users = read_events(dir.file("interactions.csv"));
  ASSERT_EQ(static_cast<int64_t>(users.size()), o.num_users);
  ASSERT_EQ(data.users.size(), users.size());
  int64_t events = 0;
  for (size_t u = 0; u < users.size(); ++u) {
    const auto& e = users[u];
    events += static_cast<int64_t>(e.items.size());
    EXPECT_GE(static_cast<int64_t>(e.items.size()), o.min_seq_len);
    EXPECT_LE(static_cast<int64_t>(e.items.size()), o.max_seq_len);
    EXPECT_EQ(e.items, data.users[u].items) << "the file holds the generated sequence, user " << u;
    for (size_t k = 1; k < e.ts.size(); ++k) ASSERT_EQ(e.ts[k] - e.ts[k - 1], 3600) << "user " << u;
    for (int64_t i : e.items) ASSERT_TRUE(i >= 1 && i <= o.num_items);
  }
  EXPECT_EQ(events, r.num_events);
  EXPECT_EQ(read_file(dir.file("items.csv")), data.items_table);
}

/// The profile (the user's home items) is frequent in the profile phase, returns in the drift part
/// are more than recent_window events apart, none is in the last recent_window events before the
/// two targets, and the returns among the targets are home items seen in the old part.
TEST(Synthetic, LongTermProfileIsOnlyInOldEvents) {
  TempDir dir;
  const SynthOptions o = long_term(dir.path());
  const SynthData data = synthesize(o);
  const int64_t W = o.recent_window;
  int64_t old_home = 0, old_total = 0, recent_home = 0, close_returns = 0, drift_returns = 0;
  int64_t target_returns = 0, target_returns_seen_old = 0, drift_pairs = 0, same_cluster_pairs = 0;
  for (const SynthUser& user : data.users) {
    ASSERT_EQ(static_cast<int64_t>(user.profile.size()), o.profile_items);
    const std::set<int64_t> home(user.profile.begin(), user.profile.end());
    const auto& s = user.items;
    const auto len = static_cast<int64_t>(s.size());
    const auto phase = static_cast<int64_t>(o.profile_phase * static_cast<double>(len));
    auto is_home = [&](int64_t k) { return home.count(s[static_cast<size_t>(k)]) > 0; };
    for (int64_t k = 0; k < phase; ++k) old_home += is_home(k);
    old_total += phase;
    for (int64_t k = len - 2 - W; k < len - 2; ++k) recent_home += is_home(k);
    int64_t last = -1;
    for (int64_t k = phase; k < len - 2; ++k) {
      if (!is_home(k)) continue;
      ++drift_returns;
      if (last >= 0 && k - last <= W) ++close_returns;
      last = k;
    }
    for (int64_t k = phase + 1; k < len - 2; ++k) {
      if (is_home(k) || is_home(k - 1)) continue;
      ++drift_pairs;
      same_cluster_pairs += (s[k] - 1) % o.num_clusters == (s[k - 1] - 1) % o.num_clusters;
    }
    for (int64_t k : {len - 2, len - 1}) {
      if (!is_home(k)) continue;
      ++target_returns;
      target_returns_seen_old += std::count(s.begin(), s.begin() + phase, s[static_cast<size_t>(k)]) > 0;
    }
  }
  EXPECT_EQ(recent_home, 0) << "a home item among the last recent_window events before the targets";
  EXPECT_NEAR(static_cast<double>(old_home) / old_total, o.profile_share, 0.03);
  EXPECT_GT(drift_returns, o.num_users) << "returns to the profile happen in the drift part too";
  EXPECT_EQ(close_returns, 0) << "returns in the drift part closer than recent_window";
  ASSERT_GT(target_returns, 0);
  EXPECT_GE(static_cast<double>(target_returns_seen_old) / target_returns, 0.99)
      << "return targets are home items seen in the old part";
  // Short-term interests last 20-60 drift events: consecutive drift items share a cluster.
  EXPECT_GT(static_cast<double>(same_cluster_pairs) / drift_pairs, 0.9);
}

TEST(Synthetic, LongTermTargetShareFollowsTheOption) {
  TempDir dir;
  for (double share : {0.0, 0.3, 0.7, 1.0}) {
    SynthOptions o = long_term(dir.path());
    o.num_users = 600;
    o.min_seq_len = o.max_seq_len = 200;
    o.recent_window = 50;
    o.long_term_share = share;
    const SynthData data = synthesize(o);
    int64_t returns = 0, distinct_pairs = 0, pairs = 0;
    for (const SynthUser& user : data.users) {
      const std::set<int64_t> home(user.profile.begin(), user.profile.end());
      const int64_t valid = user.items[user.items.size() - 2], test = user.items.back();
      returns += home.count(valid) + home.count(test);
      if (home.count(valid) && home.count(test)) {
        ++pairs;
        distinct_pairs += valid != test;
      }
    }
    const double measured = static_cast<double>(returns) / (2.0 * o.num_users);
    if (share == 0.0 || share == 1.0) {
      EXPECT_EQ(measured, share);
    } else {
      EXPECT_NEAR(measured, share, 0.06) << "long_term_share " << share;
    }
    EXPECT_EQ(distinct_pairs, pairs) << "two return targets are distinct home items";
  }
}

/// profile_kind clusters: the profile is a set of home clusters; the drift never enters them,
/// home events in the old part and returns spread over their items by popularity, and nothing of
/// them is among the last recent_window events before the targets.
TEST(Synthetic, LongTermClusterProfileIsOnlyInOldEvents) {
  TempDir dir;
  SynthOptions o = long_term(dir.path());
  o.profile_kind = "clusters";
  o.profile_clusters = 2;
  const SynthData data = synthesize(o);
  const int64_t W = o.recent_window, C = o.num_clusters;
  int64_t old_home = 0, old_total = 0, recent_home = 0, target_returns = 0, targets = 0;
  std::set<int64_t> distinct_home_items;
  std::map<int64_t, int64_t> visits_by_rank;  // home events per position in home_clusters
  for (const SynthUser& user : data.users) {
    ASSERT_EQ(static_cast<int64_t>(user.home_clusters.size()), o.profile_clusters);
    ASSERT_NE(user.home_clusters[0], user.home_clusters[1]);
    auto rank = [&](int64_t item) {
      const auto it = std::find(user.home_clusters.begin(), user.home_clusters.end(), (item - 1) % C);
      return it == user.home_clusters.end() ? -1 : static_cast<int64_t>(it - user.home_clusters.begin());
    };
    EXPECT_EQ(static_cast<int64_t>(user.profile.size()), o.profile_clusters * o.num_items / C)
        << "profile: every item of the home clusters";
    for (int64_t i : user.profile) ASSERT_GE(rank(i), 0);
    const auto& s = user.items;
    const auto len = static_cast<int64_t>(s.size());
    const auto phase = static_cast<int64_t>(o.profile_phase * static_cast<double>(len));
    for (int64_t k = 0; k < phase; ++k) {
      const int64_t r = rank(s[static_cast<size_t>(k)]);
      if (r < 0) continue;
      ++old_home;
      ++visits_by_rank[r];
      distinct_home_items.insert(s[static_cast<size_t>(k)]);
    }
    old_total += phase;
    for (int64_t k = len - 2 - W; k < len - 2; ++k) recent_home += rank(s[static_cast<size_t>(k)]) >= 0;
    for (int64_t k : {len - 2, len - 1}) {
      ++targets;
      target_returns += rank(s[static_cast<size_t>(k)]) >= 0;
    }
  }
  EXPECT_EQ(recent_home, 0) << "a home-cluster item among the last recent_window events before the targets";
  EXPECT_NEAR(static_cast<double>(old_home) / old_total, o.profile_share, 0.03);
  // Visit weights 1 : 1/2 over the two home clusters.
  EXPECT_NEAR(static_cast<double>(visits_by_rank[0]) / old_home, 2.0 / 3.0, 0.03);
  EXPECT_NEAR(static_cast<double>(target_returns) / targets, o.long_term_share, 0.06);
  EXPECT_GT(distinct_home_items.size(), 20u) << "home visits spread over the clusters' items";

  o.profile_clusters = o.num_clusters - 1;
  ASSERT_THROWS_WITH(synthesize(o), "synth.profile_clusters: must be in [1, num_clusters - 2 = 8]");
  o.profile_kind = "topics";
  ASSERT_THROWS_WITH(synthesize(o), "synth.profile_kind: must be items or clusters, got topics");
}

/// profile_timing throughout: a stationary history; every event, the last ones included, is a home
/// event with probability profile_share, so the recent window holds home events too; visit weights
/// harmonic (1 : 1/2 : ...) or uniform over the home items.
TEST(Synthetic, LongTermProfileThroughoutIsStationary) {
  TempDir dir;
  for (const std::string weights : {"harmonic", "uniform"}) {
    SynthOptions o = long_term(dir.path());
    o.profile_timing = "throughout";
    o.profile_weights = weights;
    o.profile_share = 0.6;
    o.recent_window = 1000;  // not used: no check against min_seq_len
    const SynthData data = synthesize(o);
    int64_t home = 0, total = 0, last_home = 0, recent_home = 0, recent_total = 0;
    std::vector<int64_t> visits(static_cast<size_t>(o.profile_items), 0);  // per visit rank
    for (const SynthUser& user : data.users) {
      ASSERT_EQ(static_cast<int64_t>(user.profile.size()), o.profile_items);
      const auto& s = user.items;
      for (size_t k = 0; k < s.size(); ++k) {
        const auto it = std::find(user.profile.begin(), user.profile.end(), s[k]);
        if (it == user.profile.end()) continue;
        ++home;
        ++visits[static_cast<size_t>(it - user.profile.begin())];
        if (k + 1 == s.size()) ++last_home;
        if (k + 62 >= s.size()) ++recent_home;
      }
      total += static_cast<int64_t>(s.size());
      recent_total += 62;
    }
    EXPECT_NEAR(static_cast<double>(home) / total, o.profile_share, 0.01) << weights;
    EXPECT_NEAR(static_cast<double>(recent_home) / recent_total, o.profile_share, 0.02) << weights;
    EXPECT_NEAR(static_cast<double>(last_home) / o.num_users, o.profile_share, 0.1) << weights;
    // Rank 0 against rank 5 (of 6): 6 : 1 harmonic, 1 : 1 uniform.
    const double ratio = static_cast<double>(visits[0]) / static_cast<double>(visits[5]);
    EXPECT_NEAR(ratio, weights == "harmonic" ? 6.0 : 1.0, weights == "harmonic" ? 0.6 : 0.1) << weights;
  }
  SynthOptions o = long_term(dir.path());
  o.profile_timing = "always";
  ASSERT_THROWS_WITH(synthesize(o), "synth.profile_timing: must be old_only or throughout, got always");
  o = long_term(dir.path());
  o.profile_weights = "zipf";
  ASSERT_THROWS_WITH(synthesize(o), "synth.profile_weights: must be harmonic or uniform, got zipf");
}

TEST(Synthetic, BurstyLengthsAndNoRepeats) {
  TempDir dir;
  const SynthOptions o = bursty(dir.path());
  const SynthReport r = generate_synthetic(o);
  const auto users = read_events(dir.file("interactions.csv"));
  ASSERT_EQ(static_cast<int64_t>(users.size()), o.num_users);
  int64_t events = 0;
  for (const auto& e : users) {
    events += static_cast<int64_t>(e.items.size());
    EXPECT_GE(static_cast<int64_t>(e.items.size()), o.min_seq_len);
    EXPECT_LE(static_cast<int64_t>(e.items.size()), o.max_seq_len);
    EXPECT_EQ(std::set<int64_t>(e.items.begin(), e.items.end()).size(), e.items.size());
    for (size_t k = 1; k < e.ts.size(); ++k) ASSERT_LT(e.ts[k - 1], e.ts[k]);
  }
  EXPECT_EQ(events, r.num_events);
}

/// HSTU's time bucket of a gap.
int64_t bucket(int64_t dt) { return static_cast<int64_t>(std::floor(std::log(static_cast<double>(dt)) / 0.301)); }

TEST(Synthetic, BurstyGapsSeparateBursts) {
  TempDir dir;
  const SynthOptions o = bursty(dir.path());
  generate_synthetic(o);
  int64_t within = 0, short_gaps = 0, long_gaps = 0, other = 0, long_runs = 0;
  int64_t max_within_bucket = 0, min_between_bucket = 1000, min_long_bucket = 1000, max_short_bucket = 0;
  for (const auto& e : read_events(dir.file("interactions.csv"))) {
    int64_t run = 1;  // events in the current burst
    for (size_t k = 1; k < e.ts.size(); ++k) {
      const int64_t dt = e.ts[k] - e.ts[k - 1];
      if (dt >= 5 && dt <= 300) {
        ++within;
        max_within_bucket = std::max(max_within_bucket, bucket(dt));
        long_runs += ++run > o.max_burst_len;
        continue;
      }
      run = 1;
      min_between_bucket = std::min(min_between_bucket, bucket(dt));
      if (dt >= 3600 && dt <= 12 * 3600) {
        ++short_gaps;
        max_short_bucket = std::max(max_short_bucket, bucket(dt));
      } else if (dt >= 7 * 86400 && dt <= 30 * 86400) {
        ++long_gaps;
        min_long_bucket = std::min(min_long_bucket, bucket(dt));
      } else {
        ++other;
      }
    }
  }
  EXPECT_EQ(other, 0) << "gaps are seconds-minutes (bursts), hours or weeks";
  EXPECT_EQ(long_runs, 0) << "a burst longer than max_burst_len";
  // Bursts of 1-4 events (2.5 on average): most gaps are inside bursts.
  EXPECT_GT(within, short_gaps + long_gaps);
  EXPECT_NEAR(static_cast<double>(long_gaps) / (short_gaps + long_gaps), o.long_gap_share, 0.04);
  // The three kinds of gaps fall into disjoint time-bias buckets.
  EXPECT_LT(max_within_bucket, min_between_bucket);
  EXPECT_LT(max_short_bucket, min_long_bucket);
}

/// The point of the mode: the gap before an item tells whether it continues the interest.
TEST(Synthetic, BurstyLongGapsStartANewInterest) {
  TempDir dir;
  const SynthOptions o = bursty(dir.path());
  generate_synthetic(o);
  int64_t n[3] = {0, 0, 0}, changed[3] = {0, 0, 0};  // within a burst, after a short gap, after a long gap
  for (const auto& e : read_events(dir.file("interactions.csv"))) {
    for (size_t k = 1; k < e.ts.size(); ++k) {
      const int64_t dt = e.ts[k] - e.ts[k - 1];
      const int kind = dt <= 300 ? 0 : dt <= 12 * 3600 ? 1 : 2;
      ++n[kind];
      changed[kind] += (e.items[k] - 1) % o.num_clusters != (e.items[k - 1] - 1) % o.num_clusters;
    }
  }
  ASSERT_GT(n[1], 100);
  ASSERT_GT(n[2], 100);
  const double within = static_cast<double>(changed[0]) / n[0];
  const double after_short = static_cast<double>(changed[1]) / n[1];
  const double after_long = static_cast<double>(changed[2]) / n[2];
  EXPECT_EQ(within, 0.0);
  EXPECT_GE(after_long, 0.97);
  // 1 - stay_prob, plus the rare switch when the user has seen the whole cluster.
  EXPECT_GE(after_short, 1.0 - o.stay_prob - 0.04);
  EXPECT_LE(after_short, 1.0 - o.stay_prob + 0.08);
  EXPECT_GT(after_long - after_short, 0.7);
}

TEST(Synthetic, ModeOptionErrorsNameTheField) {
  TempDir dir;
  ASSERT_THROWS_WITH(parse_synth_mode("longterm"), "synth.mode: 'longterm' is not one of: default, long_term, bursty");
  for (SynthMode m : {SynthMode::kDefault, SynthMode::kLongTerm, SynthMode::kBursty}) {
    EXPECT_EQ(parse_synth_mode(synth_mode_name(m)), m);
    SynthOptions o = synth_defaults(m);  // the defaults are valid
    o.num_users = 2;
    o.output = dir.path();
    EXPECT_EQ(synthesize(o).users.size(), 2u) << synth_mode_name(m);
  }
  SynthOptions o = long_term(dir.path());
  o.long_term_share = 1.5;
  ASSERT_THROWS_WITH(synthesize(o), "synth.long_term_share: must be in [0, 1]");
  o = long_term(dir.path());
  o.profile_share = -0.1;
  ASSERT_THROWS_WITH(synthesize(o), "synth.profile_share: must be in [0, 1]");
  o = long_term(dir.path());
  o.profile_phase = 1.0;
  ASSERT_THROWS_WITH(synthesize(o), "synth.profile_phase: must be in (0, 1)");
  o = long_term(dir.path());
  o.profile_items = 1;
  ASSERT_THROWS_WITH(synthesize(o), "synth.profile_items: must be in [2,");
  o = long_term(dir.path());
  o.recent_window = 0;
  ASSERT_THROWS_WITH(synthesize(o), "synth.recent_window: must be at least 1");
  o = long_term(dir.path());
  o.recent_window = 209;  // 300 events, 90 in the profile phase: 210 - 2 profile-free ones fit at most
  ASSERT_THROWS_WITH(synthesize(o), "synth.min_seq_len: must be at least recent_window + 2");
  o.recent_window = 208;
  EXPECT_NO_THROW(synthesize(o));
  o = long_term(dir.path());
  o.max_interest_len = 5;
  ASSERT_THROWS_WITH(synthesize(o), "synth.max_interest_len: must be at least min_interest_len (20)");
  o = long_term(dir.path());
  o.max_seq_len = o.num_items + 100;  // long_term repeats items: longer than V is fine
  o.num_users = 3;
  EXPECT_NO_THROW(synthesize(o));

  o = bursty(dir.path());
  o.stay_prob = -0.1;
  ASSERT_THROWS_WITH(synthesize(o), "synth.stay_prob: must be in [0, 1]");
  o = bursty(dir.path());
  o.long_gap_share = 2;
  ASSERT_THROWS_WITH(synthesize(o), "synth.long_gap_share: must be in [0, 1]");
  o = bursty(dir.path());
  o.min_burst_len = 3;
  o.max_burst_len = 2;
  ASSERT_THROWS_WITH(synthesize(o), "synth.max_burst_len: must be at least min_burst_len (3)");
  o = bursty(dir.path());
  o.min_burst_len = 0;
  ASSERT_THROWS_WITH(synthesize(o), "synth.min_burst_len: must be at least 1");
  o = bursty(dir.path());
  o.num_clusters = 1;
  ASSERT_THROWS_WITH(synthesize(o), "synth.num_clusters: must be at least 2");
  o = bursty(dir.path());
  o.max_seq_len = o.num_items + 1;
  ASSERT_THROWS_WITH(synthesize(o), "synth.max_seq_len: must be at most num_items (1200)");
}

}  // namespace
}  // namespace seqrec::data
