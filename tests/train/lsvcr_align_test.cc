// LSVCR stage 1: random positions, prompts, and alignment steps on stories260K with LoRA.
#include "seqrec/train/lsvcr_align.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <map>

#include "seqrec/data/lsvcr_synth.h"
#include "seqrec/dist/grad_reducer.h"
#include "seqrec/dist/process_group.h"
#include "seqrec/llm/decoder_lm.h"
#include "seqrec/llm/tokenizer.h"
#include "seqrec/train/lsvcr_trainer.h"
#include "seqrec/train/optim.h"
#include "dist/dist_support.h"
#include "support.h"
#include "train/lsvcr_support.h"

namespace seqrec::train {
namespace {

const std::string kStories = SEQREC_SOURCE_DIR "/../shared/models/stories260K/hf";

TEST(LsvcrAlignTest, RandomPositionsAreSortedDistinctAndInRange) {
  Rng rng(4);
  auto p = torch::empty({3, 5}, torch::kInt64);
  for (int64_t b = 0; b < 3; ++b) random_positions_row(12, rng, p[b].data_ptr<int64_t>(), 5);
  for (int64_t b = 0; b < 3; ++b)
    for (int64_t i = 0; i < 5; ++i) {
      EXPECT_GE(p[b][i].item<int64_t>(), 0);
      EXPECT_LT(p[b][i].item<int64_t>(), 12);
      if (i > 0) {
        EXPECT_LT(p[b][i - 1].item<int64_t>(), p[b][i].item<int64_t>());
      }
    }
  EXPECT_FALSE(p[0].equal(p[1]) && p[1].equal(p[2]));
  auto all = torch::empty({4}, torch::kInt64);
  random_positions_row(4, rng, all.data_ptr<int64_t>(), 4);
  EXPECT_TRUE(all.equal(torch::arange(4, torch::kInt64)));
}

TEST(LsvcrAlignTest, PromptsListBothHistoriesAndTheResponseIsTheTarget) {
  data::LsvcrStore s;
  s.num_videos = 3;
  s.num_comments = 3;
  s.comment_video = {0, 1, 2, 3};
  s.video_hot_comment = {0, 1, 2, 3};
  s.video_comments = {{}, {1}, {2}, {3}};
  s.video_histories = {data::LsvcrHistory{{1, 2, 3}, {1, 2, 3}}};
  s.comment_histories = {data::LsvcrHistory{{1, 2}, {1, 2}}};
  LsvcrTexts t{{"", "cats", "dogs", "fish"}, {"", "meow", "woof", "blub"}};
  data::LsvcrSample video{0, 2, 2, 3, {}}, comment{0, 2, 1, 3, {3}};
  const LsvcrPrompt pv = lsvcr_prompt(s, t, video, 0, 1);
  EXPECT_EQ(pv.prompt, "Videos the user liked: \"dogs\". Comments the user liked: \"woof\" on \"dogs\". "
                       "The next video the user will like:");
  EXPECT_EQ(pv.response, " fish");
  const LsvcrPrompt pc = lsvcr_prompt(s, t, comment, 3, 5);
  EXPECT_EQ(pc.prompt, "Videos the user liked: \"cats\" \"dogs\". Comments the user liked: \"meow\" on \"cats\". "
                       "Current video: \"fish\". A comment the user will like:");
  EXPECT_EQ(pc.response, " blub");
}

/// A small LSVCR store, RecCom without ID embeddings and stories260K with LoRA (no dropout anywhere).
struct AlignSetup {
  seqrec::testing::SyntheticLsvcr data{seqrec::testing::small_lsvcr(30, 12, 20, 24)};
  const data::LsvcrStore& store = data.store;
  const data::LsvcrSplits& splits = data.splits;
  models::LsvcrOptions m;
  models::LsvcrTextTables tables;
  LsvcrAlignOptions o;
  LsvcrTexts texts;

  AlignSetup() {
    m.num_videos = store.num_videos;
    m.num_comments = store.num_comments;
    m.text_input_dim = 4;
    m.max_history = 6;
    m.max_position = 16;
    m.hidden_dim = 8;
    m.ffn_dim = 16;
    m.text_hidden_dim = 8;
    m.text_dim = 8;
    m.dropout = 0;
    m.use_id_embeddings = false;
    torch::manual_seed(1);
    tables = seqrec::testing::random_text_tables(store, 4);
    o.prompt_history = 2;
    o.max_prompt_tokens = 96;
    o.max_response_tokens = 16;
    o.lora.dropout = 0;
    texts = load_lsvcr_texts(data.prepared.path());
  }
  /// RecCom and the LoRA-adapted LLM, the same weights at every call.
  std::pair<models::Lsvcr, LsvcrAligner> models() const {
    torch::manual_seed(2);
    models::Lsvcr sr(m);
    sr->set_text_tables(tables);
    llm::DecoderLm lm = llm::load_decoder_lm(kStories);
    EXPECT_GT(nn::apply_lora(*lm, o.lora), 0);
    return {sr, LsvcrAligner(lm.ptr(), 8)};
  }
  /// Samples first..first+n-1 of each task's training set with per-sample seeds.
  std::pair<std::vector<LsvcrAlignSample>, std::vector<LsvcrAlignSample>> batch(size_t first, size_t n) const {
    std::vector<LsvcrAlignSample> vb, cb;
    for (size_t i = first; i < first + n; ++i) {
      vb.push_back({&splits.train.video[i], 100 + i});
      cb.push_back({&splits.train.comment[i], 200 + i});
    }
    return {vb, cb};
  }
};

std::vector<std::pair<std::string, torch::Tensor>> trainable(models::LsvcrImpl& sr, LsvcrAlignerImpl& aligner) {
  std::vector<std::pair<std::string, torch::Tensor>> params;
  for (const auto& p : sr.named_parameters())
    if (p.value().requires_grad()) params.emplace_back("sr." + p.key(), p.value());
  for (const auto& p : aligner.named_parameters())
    if (p.value().requires_grad()) params.emplace_back("a." + p.key(), p.value());
  return params;
}

TEST(LsvcrAlignTest, AlignmentStepCombinesTheThreeLossesAndLearns) {
  const AlignSetup w;
  auto [sr, aligner] = w.models();
  auto tokenizer = llm::load_tokenizer(kStories);
  const auto [vb, cb] = w.batch(0, 4);
  const auto params = trainable(*sr, *aligner);
  for (const auto& [name, p] : params) EXPECT_EQ(name.find("llm.") != std::string::npos, name.find("lora_") != std::string::npos) << name;
  AdamW opt(params, {3e-3, 0.9, 0.999, 1e-8, 0.0});
  const LsvcrAlignTerms first = lsvcr_align_step(*sr, *aligner, *tokenizer, w.store, w.texts, vb, cb, w.o);
  EXPECT_NEAR(first.total.item<float>(), (first.lm + first.rec + 0.5 * first.contrast).item<float>(), 1e-4);
  EXPECT_GT(first.lm.item<float>(), 0.5f);
  EXPECT_GT(first.tokens, 8 * 20);
  // The same seeds draw the same responses and positions: the same loss.
  const LsvcrAlignTerms again = lsvcr_align_step(*sr, *aligner, *tokenizer, w.store, w.texts, vb, cb, w.o);
  EXPECT_EQ(again.total.item<float>(), first.total.item<float>());
  LsvcrAlignTerms last;
  for (int step = 0; step < 12; ++step) {
    opt.zero_grad();
    last = lsvcr_align_step(*sr, *aligner, *tokenizer, w.store, w.texts, vb, cb, w.o);
    last.total.backward();
    opt.step(3e-3);
  }
  EXPECT_LT(last.total.item<float>(), first.total.item<float>());
  EXPECT_LT(last.rec.item<float>(), first.rec.item<float>());
  EXPECT_LT(last.contrast.item<float>(), first.contrast.item<float>());
}

// Two ranks with 4 + 4 samples of each task, negatives gathered across them and gradients averaged,
// give the loss and the gradients of one process with all 8: L_rec and L_contrast see all 8 rows as
// negatives, L_LM is the mean over both ranks' response tokens (the ranks' prompts differ in length).
TEST(LsvcrAlignTest, TwoRanksWithGatheredNegativesEqualOneProcessWithTheWholeBatch) {
  std::string skip;
  const auto groups = seqrec::testing::local_groups(2, &skip);
  if (groups.empty()) GTEST_SKIP() << skip;
  const AlignSetup w;
  auto tokenizer = llm::load_tokenizer(kStories);
  std::map<std::string, torch::Tensor> expected;
  double expected_loss = 0;
  {
    auto [sr, aligner] = w.models();
    const auto [vb, cb] = w.batch(0, 8);
    const LsvcrAlignTerms terms = lsvcr_align_step(*sr, *aligner, *tokenizer, w.store, w.texts, vb, cb, w.o);
    terms.total.backward();
    expected_loss = terms.total.item<double>();
    for (const auto& [name, p] : trainable(*sr, *aligner))  // (id_gate gets none: no ID embeddings here)
      expected[name] = p.grad().defined() ? p.grad().clone() : torch::zeros_like(p);
  }
  struct RankRun {
    std::vector<double> losses = std::vector<double>(2);
    std::vector<int64_t> tokens = std::vector<int64_t>(2);
    std::vector<std::map<std::string, torch::Tensor>> grads = std::vector<std::map<std::string, torch::Tensor>>(2);
  };
  auto run_ranks = [&](bool gather) {
    std::vector<std::pair<models::Lsvcr, LsvcrAligner>> copies;
    for (int r = 0; r < 2; ++r) copies.push_back(w.models());
    RankRun out;
    seqrec::testing::on_each_rank(2, [&](int64_t r) {
      const size_t i = static_cast<size_t>(r);
      auto& [sr, aligner] = copies[i];
      const auto params = trainable(*sr, *aligner);
      dist::GradientReducer reducer(groups[i], params);
      const auto [vb, cb] = w.batch(4 * i, 4);
      const LsvcrAlignTerms terms = lsvcr_align_step(*sr, *aligner, *tokenizer, w.store, w.texts, vb, cb, w.o,
                                                     gather ? groups[i] : nullptr);
      terms.total.backward();
      reducer.finish();
      out.losses[i] = terms.total.item<double>();
      out.tokens[i] = terms.tokens;
      for (const auto& [name, p] : params) out.grads[i][name] = p.grad().clone();
    });
    return out;
  };
  auto max_error = [&](const std::map<std::string, torch::Tensor>& grads) {
    double worst = 0;  // relative to each tensor's largest expected entry
    for (const auto& [name, g] : expected)
      worst = std::max(worst, (grads.at(name) - g).abs().max().item<double>() /
                                  std::max(1e-3, g.abs().max().item<double>()));
    return worst;
  };
  const RankRun two = run_ranks(true);
  EXPECT_NE(two.tokens[0], two.tokens[1]);  // the token-mean scaling is exercised
  EXPECT_NE(two.losses[0], two.losses[1]);
  EXPECT_NEAR((two.losses[0] + two.losses[1]) / 2, expected_loss, 1e-5 * std::abs(expected_loss));
  for (size_t r = 0; r < 2; ++r) {
    ASSERT_EQ(two.grads[r].size(), expected.size());
    EXPECT_LT(max_error(two.grads[r]), 1e-4) << "rank " << r;
  }
  // Control: each rank's own 4 as negatives and its own token mean (what a plain DDP of the step
  // would do) is measurably another loss and gradient.
  const RankRun local = run_ranks(false);
  EXPECT_GT(std::abs((local.losses[0] + local.losses[1]) / 2 - expected_loss), 1e-3);
  EXPECT_GT(max_error(local.grads[0]), 1e-2);
}

}  // namespace
}  // namespace seqrec::train
