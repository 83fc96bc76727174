// Generation: beam search under a hand-made constraint, greedy = beam of width 1, seeded sampling,
// token log-probabilities.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <set>

#include "seqrec/llm/generation.h"

namespace seqrec::llm {
namespace {

DecoderLm tiny_lm(bool tied = true) {
  torch::manual_seed(8);
  DecoderConfig c;
  c.vocab_size = 12;
  c.hidden_size = 16;
  c.intermediate_size = 24;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 4;
  c.tie_word_embeddings = tied;  // untied: a small random head gives a flat distribution
  DecoderLm lm(c);
  lm->eval();
  return lm;
}

// Allows only the sequences {3,4,5}, {3,6,7} and {8,9,10}, then EOS (11).
class AllowedSequences : public LogitsConstraint {
 public:
  void apply(int64_t step, const std::vector<std::vector<int64_t>>& prefixes, torch::Tensor& logprobs) override {
    const std::vector<std::vector<int64_t>> allowed = {{3, 4, 5}, {3, 6, 7}, {8, 9, 10}};
    auto mask = torch::ones_like(logprobs, torch::kBool);
    for (size_t n = 0; n < prefixes.size(); ++n)
      for (const auto& seq : allowed) {
        if (!std::equal(prefixes[n].begin(), prefixes[n].end(), seq.begin(), seq.begin() + std::min(seq.size(), prefixes[n].size())))
          continue;
        const int64_t next = prefixes[n].size() < seq.size() ? seq[prefixes[n].size()] : 11;
        mask[n][next] = false;
      }
    logprobs.masked_fill_(mask, -INFINITY);
    EXPECT_LE(step, 3);
  }
};

TEST(GenerationTest, ConstrainedBeamSearchReturnsOnlyAllowedSequencesRankedByScore) {
  DecoderLm lm = tiny_lm();
  GenerationOptions o;
  o.strategy = "beam";
  o.num_beams = 3;
  o.max_new_tokens = 6;
  o.eos_id = 11;
  AllowedSequences constraint;
  auto hyps = generate(lm, {1, 2}, o, &constraint);
  ASSERT_EQ(hyps.size(), 3u);
  std::set<std::vector<int64_t>> seen;
  for (size_t i = 0; i < hyps.size(); ++i) {
    seen.insert(hyps[i].ids);
    if (i > 0) EXPECT_GE(hyps[i - 1].score, hyps[i].score);
    // The score is the length-normalised sum of the sequence's log-probabilities (EOS included).
    std::vector<int64_t> full = {1, 2};
    full.insert(full.end(), hyps[i].ids.begin(), hyps[i].ids.end());
    full.push_back(11);
    auto lp = token_logprobs(lm, full);
    double sum = 0;
    for (size_t t = 1; t < lp.size(); ++t) sum += lp[t];  // skip the prompt's own token
    // Constrained log-probabilities renormalise nothing: raw model log-probs are summed.
    EXPECT_NEAR(hyps[i].score, sum / 4.0, 1e-4);
  }
  EXPECT_EQ(seen, (std::set<std::vector<int64_t>>{{3, 4, 5}, {3, 6, 7}, {8, 9, 10}}));
}

TEST(GenerationTest, GreedyEqualsBeamOfWidthOne) {
  DecoderLm lm = tiny_lm();
  GenerationOptions g;
  g.max_new_tokens = 8;
  GenerationOptions b = g;
  b.strategy = "beam";
  b.num_beams = 1;
  b.length_penalty = 0.0;
  EXPECT_EQ(generate(lm, {1, 2}, g)[0].ids, generate(lm, {1, 2}, b)[0].ids);
}

TEST(GenerationTest, SamplingIsReproducibleForASeed) {
  DecoderLm lm = tiny_lm(/*tied=*/false);
  GenerationOptions o;
  o.strategy = "sample";
  o.max_new_tokens = 20;
  o.temperature = 1.5;
  o.top_p = 0.9;
  o.seed = 3;
  auto a = generate(lm, {1}, o)[0].ids, b = generate(lm, {1}, o)[0].ids;
  EXPECT_EQ(a, b);
  o.seed = 4;
  EXPECT_NE(a, generate(lm, {1}, o)[0].ids);
  EXPECT_EQ(a.size(), 20u);
}

TEST(GenerationTest, UnknownStrategyIsRejected) {
  DecoderLm lm = tiny_lm();
  GenerationOptions o;
  o.strategy = "nucleus";
  EXPECT_THROW(generate(lm, {1}, o), std::exception);
}

}  // namespace
}  // namespace seqrec::llm
