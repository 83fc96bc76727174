// Generation: beam search under a hand-made constraint, greedy = beam of width 1, seeded sampling,
// token log-probabilities.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <set>

#include <cstdio>
#include <nlohmann/json.hpp>

#include "seqrec/common/fs.h"
#include "seqrec/llm/generation.h"
#include "llm/tiny_decoder.h"

namespace seqrec::llm {
namespace {

DecoderLm tiny_lm(bool tied = true) { return testing::tiny_decoder_lm(12, 8, tied); }

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
    if (i > 0) {
      EXPECT_GE(hyps[i - 1].score, hyps[i].score);
    }
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

TEST(GenerationTest, Bfloat16ComputeTracksFloat32) {
  DecoderLm lm = tiny_lm(/*tied=*/false);
  torch::NoGradGuard no_grad;
  DecoderInput in;
  in.input_ids = torch::tensor({{1, 5, 7, 9, 3}}, torch::kLong);
  auto ref = torch::log_softmax(lm->logits(lm->forward_hidden(in)), -1);
  lm->to(torch::kBFloat16);
  auto hidden = lm->forward_hidden(in);
  EXPECT_EQ(hidden.scalar_type(), torch::kBFloat16);
  auto low = torch::log_softmax(lm->logits(hidden).to(torch::kFloat), -1);
  EXPECT_LT((low - ref).abs().max().item<double>(), 0.1);
  EXPECT_TRUE(torch::equal(low.argmax(-1), ref.argmax(-1)));
}

// The CLI on the real stories260K checkpoint: greedy text equals the reference continuation.
TEST(LmCliTest, GenerateAndScoreStories260K) {
  const std::string dir = SEQREC_SOURCE_DIR "/../shared/models/stories260K";
  if (!path_exists(dir + "/hf/config.json")) GTEST_SKIP() << "no " << dir;
  auto expected = nlohmann::json::parse(read_file(dir + "/expected/once_upon_a_time.json"));
  const std::string cmd = std::string(SEQREC_BINARY) + " lm generate --model " + dir +
                          "/hf --prompt 'Once upon a time' --max-new-tokens 40 2>/dev/null";
  FILE* pipe = popen(cmd.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::string out;
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof buf, pipe)) out.append(buf, n);
  ASSERT_EQ(pclose(pipe), 0) << out;
  const std::string want = expected["greedy_text"].get<std::string>();
  ASSERT_GT(out.size(), 60u);
  EXPECT_EQ(want.substr(0, 60), out.substr(0, 60));
  const std::string score = std::string(SEQREC_BINARY) + " lm score --model " + dir + "/hf --text 'Once upon a time' 2>/dev/null";
  pipe = popen(score.c_str(), "r");
  out.clear();
  while (size_t n = fread(buf, 1, sizeof buf, pipe)) out.append(buf, n);
  EXPECT_EQ(pclose(pipe), 0);
  EXPECT_NE(out.find("\t403\t"), std::string::npos) << out;  // "Once" after BOS, token 403
}

}  // namespace
}  // namespace seqrec::llm
