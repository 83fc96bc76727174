// Constrained beam search over item codes on tiny random LLaMAs: the trie never yields a non-item,
// is exact against brute force when the beams cover the catalogue, the whitelist can yield
// non-items, and a batch of prompts of different lengths equals the prompts one at a time.
#include "seqrec/semantic_id/constrained_beam.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <random>
#include <set>

#include "llm/tiny_decoder.h"
#include "support.h"

namespace seqrec::semantic_id {
namespace {

using Tokens = std::vector<int64_t>;
constexpr int64_t kBos = 1, kEos = 2, kFirstCodeToken = 10;

// A random LLaMA whose vocabulary holds 10 text tokens and `levels` x `per_level` code tokens.
llm::DecoderLm tiny_lm(uint64_t seed, int64_t levels, int64_t per_level) {
  return testing::tiny_decoder_lm(kFirstCodeToken + levels * per_level, seed);
}

// Distinct random codes for items 1..n (item 0 has none); level l uses its own block of tokens.
std::vector<Tokens> random_codes(int64_t n, int64_t levels, int64_t per_level, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::set<Tokens> seen;
  std::vector<Tokens> codes(1);
  while (static_cast<int64_t>(codes.size()) <= n) {
    Tokens code;
    for (int64_t l = 0; l < levels; ++l)
      code.push_back(kFirstCodeToken + l * per_level + static_cast<int64_t>(rng() % per_level));
    if (seen.insert(code).second) codes.push_back(code);
  }
  return codes;
}

std::vector<Tokens> random_prompts(const std::vector<int64_t>& lengths, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<Tokens> prompts;
  for (int64_t len : lengths) {
    Tokens p = {kBos};
    while (static_cast<int64_t>(p.size()) < len) p.push_back(3 + static_cast<int64_t>(rng() % 7));
    prompts.push_back(p);
  }
  return prompts;
}

// HF's sequences_score of `code` after `prompt`, from one uncached forward pass.
double brute_force_score(llm::DecoderLm& lm, const Tokens& prompt, const Tokens& code) {
  Tokens full = prompt;
  full.insert(full.end(), code.begin(), code.end());
  full.push_back(kEos);
  const auto lp = llm::token_logprobs(lm, full);
  double sum = 0;
  for (size_t t = prompt.size() - 1; t < lp.size(); ++t) sum += lp[t];
  return sum / static_cast<double>(code.size() + 1);
}

ItemGenerationOptions beams(int64_t k, CodeConstraint constraint = CodeConstraint::kTrie) {
  ItemGenerationOptions o;
  o.num_beams = k;
  o.constraint = constraint;
  return o;
}

TEST(ConstrainedBeamTest, TrieNeverYieldsANonItem) {
  for (uint64_t seed : {1, 2, 3}) {
    llm::DecoderLm lm = tiny_lm(seed, 3, 4);
    const auto codes = random_codes(30, 3, 4, seed);
    PrefixTrie trie(codes, kEos);
    ItemGenerator generator(trie, beams(8));
    const auto prompts = random_prompts({1, 4, 8, 2, 6, 3, 7, 5, 2, 8}, seed);
    const auto ranked = generator.generate(lm, prompts);
    ASSERT_EQ(ranked.size(), prompts.size());
    for (size_t i = 0; i < ranked.size(); ++i) {
      const auto& r = ranked[i];
      ASSERT_EQ(r.items.size(), 8u);
      EXPECT_EQ(std::set<int64_t>(r.items.begin(), r.items.end()).size(), 8u) << "beams repeat an item";
      for (size_t b = 0; b < r.items.size(); ++b) {
        ASSERT_NE(r.items[b], kNotAnItem) << "seed " << seed << " prompt " << i << " beam " << b;
        EXPECT_EQ(r.codes[b], codes[r.items[b]]);
        if (b > 0) {
          EXPECT_GE(r.scores[b - 1], r.scores[b]);
        }
        EXPECT_NEAR(r.scores[b], brute_force_score(lm, prompts[i], r.codes[b]), 1e-4);
      }
    }
  }
}

TEST(ConstrainedBeamTest, TrieIsExactWhenTheBeamsCoverTheCatalogue) {
  llm::DecoderLm lm = tiny_lm(4, 3, 3);
  const auto codes = random_codes(12, 3, 3, 4);
  PrefixTrie trie(codes, kEos);
  const auto prompts = random_prompts({5, 2}, 4);
  for (int64_t k : {12, 16}) {  // 16 > 12 items: only the 12 real sequences come back
    const auto ranked = ItemGenerator(trie, beams(k)).generate(lm, prompts);
    for (size_t i = 0; i < prompts.size(); ++i) {
      std::vector<std::pair<double, int64_t>> all;
      for (int64_t item = 1; item <= 12; ++item) all.push_back({brute_force_score(lm, prompts[i], codes[item]), item});
      std::sort(all.begin(), all.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
      ASSERT_EQ(ranked[i].items.size(), 12u);
      for (size_t b = 0; b < all.size(); ++b) {
        EXPECT_EQ(ranked[i].items[b], all[b].second) << "k " << k << " prompt " << i << " rank " << b;
        EXPECT_NEAR(ranked[i].scores[b], all[b].first, 1e-4);
      }
    }
  }
}

TEST(ConstrainedBeamTest, WhitelistCanYieldNonItems) {
  // Two items, {10, 12} and {11, 13}: the whitelist also allows {10, 13} and {11, 12}.
  llm::DecoderLm lm = tiny_lm(5, 2, 2);
  PrefixTrie trie({{}, {10, 12}, {11, 13}}, kEos);
  const auto prompts = random_prompts({4}, 5);
  const auto loose = ItemGenerator(trie, beams(4, CodeConstraint::kLevelWhitelist)).generate(lm, prompts)[0];
  ASSERT_EQ(loose.items.size(), 4u);
  EXPECT_EQ(std::set<Tokens>(loose.codes.begin(), loose.codes.end()),
            (std::set<Tokens>{{10, 12}, {10, 13}, {11, 12}, {11, 13}}));
  EXPECT_EQ(std::count(loose.items.begin(), loose.items.end(), kNotAnItem), 2);
  for (size_t b = 0; b < 4; ++b) EXPECT_NEAR(loose.scores[b], brute_force_score(lm, prompts[0], loose.codes[b]), 1e-4);
  const auto strict = ItemGenerator(trie, beams(4)).generate(lm, prompts)[0];
  EXPECT_EQ(std::set<int64_t>(strict.items.begin(), strict.items.end()), (std::set<int64_t>{1, 2}));
  // --filter_items: the non-items go last at -1000, the items keep their order.
  ItemGenerationOptions filter = beams(4, CodeConstraint::kLevelWhitelist);
  filter.filter_non_items = true;
  const auto filtered = ItemGenerator(trie, filter).generate(lm, prompts)[0];
  Tokens kept;
  for (int64_t item : loose.items)
    if (item != kNotAnItem) kept.push_back(item);
  EXPECT_EQ(filtered.items, (Tokens{kept[0], kept[1], kNotAnItem, kNotAnItem}));
  EXPECT_EQ(filtered.scores[2], -1000.0);
  EXPECT_EQ(filtered.scores[3], -1000.0);
}

TEST(ConstrainedBeamTest, BatchedPromptsEqualOneAtATime) {
  llm::DecoderLm lm = tiny_lm(6, 3, 4);
  const auto codes = random_codes(20, 3, 4, 6);
  PrefixTrie trie(codes, kEos);
  const auto prompts = random_prompts({3, 7, 1, 5, 2}, 6);
  for (auto constraint : {CodeConstraint::kTrie, CodeConstraint::kLevelWhitelist}) {
    ItemGenerator generator(trie, beams(6, constraint));
    const auto batched = generator.generate(lm, prompts);
    for (size_t i = 0; i < prompts.size(); ++i) {
      const auto single = generator.generate(lm, {prompts[i]})[0];
      EXPECT_EQ(batched[i].codes, single.codes) << "prompt " << i;
      EXPECT_EQ(batched[i].items, single.items);
      ASSERT_EQ(batched[i].scores.size(), single.scores.size());
      for (size_t b = 0; b < single.scores.size(); ++b) EXPECT_NEAR(batched[i].scores[b], single.scores[b], 1e-5);
    }
  }
}

TEST(ConstrainedBeamTest, UsesLcRecSearchSettingsAndRejectsBadInput) {
  PrefixTrie trie({{}, {10, 12, 14}, {11, 13, 15}}, kEos);
  ItemGenerator generator(trie, beams(20));
  EXPECT_EQ(generator.beam_options().max_new_tokens, 4);  // code length + EOS
  EXPECT_EQ(generator.beam_options().num_return, 20);
  EXPECT_EQ(generator.beam_options().early_stopping, llm::EarlyStopping::kFirstK);
  EXPECT_EQ(generator.beam_options().eos_id, kEos);
  ASSERT_THROWS_WITH(ItemGenerator(trie, beams(0)), "num_beams must be >= 1, got 0");
  llm::DecoderLm small = tiny_lm(7, 1, 4);  // vocabulary 14: token 14 and 15 do not exist
  ASSERT_THROWS_WITH(generator.generate(small, {{kBos, 3}}), "outside the model's vocabulary of 14");
}

}  // namespace
}  // namespace seqrec::semantic_id
