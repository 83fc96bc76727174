// Tests of the synthetic generator: determinism, ranges, time order, titles, and that prepare
// reads its output.
#include "seqrec/data/synthetic.h"

#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "seqrec/common/error.h"
#include "seqrec/common/fs.h"
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

}  // namespace
}  // namespace seqrec::data
