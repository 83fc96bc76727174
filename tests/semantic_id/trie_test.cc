// Prefix trie and LC-Rec's per-level whitelist over item codes (no torch).
#include "seqrec/semantic_id/trie.h"

#include <gtest/gtest.h>

#include "support.h"

namespace seqrec::semantic_id {
namespace {

using Tokens = std::vector<int64_t>;

// Item 0 is padding (no code); item 4 collides with item 1.
PrefixTrie crafted_trie() {
  return PrefixTrie({{}, {10, 20, 30}, {10, 21, 31}, {11, 20, 30}, {10, 20, 30}}, /*eos_id=*/2);
}

TEST(PrefixTrieTest, AllowedSetsFollowTheCodes) {
  PrefixTrie trie = crafted_trie();
  EXPECT_EQ(trie.allowed({}), (Tokens{10, 11}));
  EXPECT_EQ(trie.allowed({10}), (Tokens{20, 21}));
  EXPECT_EQ(trie.allowed({11}), (Tokens{20}));
  EXPECT_EQ(trie.allowed({10, 20}), (Tokens{30}));
  EXPECT_EQ(trie.allowed({10, 21}), (Tokens{31}));
  EXPECT_EQ(trie.allowed({10, 20, 30}), (Tokens{2}));  // a whole code: EOS only
  EXPECT_TRUE(trie.allowed({10, 20, 30, 2}).empty());  // nothing after EOS
  EXPECT_TRUE(trie.allowed({12}).empty());
  EXPECT_TRUE(trie.allowed({11, 21}).empty());
  EXPECT_EQ(trie.num_items(), 4);
  EXPECT_EQ(trie.num_codes(), 3);
  EXPECT_EQ(trie.max_length(), 3);
  EXPECT_EQ(trie.eos_id(), 2);
}

TEST(PrefixTrieTest, MapsSequencesBackToItems) {
  PrefixTrie trie = crafted_trie();
  EXPECT_EQ(trie.item_of({10, 21, 31}), 2);
  EXPECT_EQ(trie.item_of({10, 21, 31, 2}), 2);  // a trailing EOS is ignored
  EXPECT_EQ(trie.item_of({10, 20, 30}), 1);     // collision: the smallest item
  EXPECT_EQ(trie.item_of({11, 21, 31}), kNotAnItem);
  EXPECT_EQ(trie.item_of({10, 20}), kNotAnItem);  // a prefix is no item
  EXPECT_EQ(trie.item_of({}), kNotAnItem);
  EXPECT_EQ(trie.item_of({10, 20, 30, 2, 2}), kNotAnItem);
  EXPECT_EQ(trie.canonical_item(4), 1);
  EXPECT_EQ(trie.canonical_item(3), 3);
  EXPECT_EQ(trie.canonical_item(0), kNotAnItem);
  EXPECT_EQ(trie.canonical_item(9), kNotAnItem);
}

TEST(PrefixTrieTest, EosJoinsTheAllowedSetInOrderWhenCodesNest) {
  // Codes of different lengths: after {5} both the longer code and EOS may come.
  PrefixTrie low({{5}, {5, 6}}, /*eos_id=*/1);
  EXPECT_EQ(low.allowed({5}), (Tokens{1, 6}));
  PrefixTrie high({{5}, {5, 6}}, /*eos_id=*/9);
  EXPECT_EQ(high.allowed({5}), (Tokens{6, 9}));
  EXPECT_EQ(high.item_of({5}), 0);
  EXPECT_EQ(high.item_of({5, 6}), 1);
  EXPECT_EQ(high.code_lengths(), (Tokens{1, 2}));
}

TEST(PrefixTrieTest, RejectsBadCodes) {
  ASSERT_THROWS_WITH(PrefixTrie({{3, 4}, {5, 2}}, 2), "item 1: code token 2 at level 1 is the EOS id");
  ASSERT_THROWS_WITH(PrefixTrie({{3, -4}}, 2), "item 0: code token -4 at level 1 is negative");
  ASSERT_THROWS_WITH(PrefixTrie({{}, {}}, 2), "no item has a code");
}

TEST(LevelWhitelistTest, AllowsEveryLevelTokenWhateverThePrefix) {
  PrefixTrie trie = crafted_trie();
  LevelWhitelist whitelist(trie);
  EXPECT_EQ(whitelist.allowed(0), (Tokens{10, 11}));
  EXPECT_EQ(whitelist.allowed(1), (Tokens{20, 21}));
  EXPECT_EQ(whitelist.allowed(2), (Tokens{30, 31}));
  EXPECT_EQ(whitelist.allowed(3), (Tokens{2}));
  EXPECT_TRUE(whitelist.allowed(4).empty());
  EXPECT_TRUE(whitelist.allowed(-1).empty());
  // It lets through {11, 21, 31}, which the trie refuses after {11}.
  EXPECT_EQ(trie.allowed({11}), (Tokens{20}));
}

TEST(LevelWhitelistTest, EosComesWhereSomeCodeEnds) {
  PrefixTrie trie({{5}, {5, 6}}, /*eos_id=*/9);
  LevelWhitelist whitelist(trie);
  EXPECT_EQ(whitelist.allowed(0), (Tokens{5}));
  EXPECT_EQ(whitelist.allowed(1), (Tokens{6, 9}));
  EXPECT_EQ(whitelist.allowed(2), (Tokens{9}));
}

}  // namespace
}  // namespace seqrec::semantic_id
