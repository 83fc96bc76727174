// LSVCR stage 1: random positions, prompts, and alignment steps on stories260K with LoRA.
#include "seqrec/train/lsvcr_align.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>

#include "seqrec/data/lsvcr_synth.h"
#include "seqrec/llm/decoder_lm.h"
#include "seqrec/llm/tokenizer.h"
#include "seqrec/train/lsvcr_trainer.h"
#include "seqrec/train/optim.h"
#include "support.h"

namespace seqrec::train {
namespace {

const std::string kStories = SEQREC_SOURCE_DIR "/../shared/models/stories260K/hf";

TEST(LsvcrAlignTest, RandomPositionsAreSortedDistinctAndInRange) {
  Rng rng(4);
  auto p = random_positions(3, 5, 12, rng);
  ASSERT_EQ(p.sizes(), (std::vector<int64_t>{3, 5}));
  for (int64_t b = 0; b < 3; ++b)
    for (int64_t i = 0; i < 5; ++i) {
      EXPECT_GE(p[b][i].item<int64_t>(), 0);
      EXPECT_LT(p[b][i].item<int64_t>(), 12);
      if (i > 0) {
        EXPECT_LT(p[b][i - 1].item<int64_t>(), p[b][i].item<int64_t>());
      }
    }
  EXPECT_FALSE(p[0].equal(p[1]) && p[1].equal(p[2]));
  EXPECT_TRUE(random_positions(1, 4, 4, rng).equal(torch::arange(4, torch::kInt64).view({1, 4})));
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

TEST(LsvcrAlignTest, AlignmentStepCombinesTheThreeLossesAndLearns) {
  if (!std::filesystem::exists(kStories + "/config.json")) GTEST_SKIP() << "no " << kStories;
  seqrec::testing::TempDir raw, prepared;
  data::LsvcrSynthOptions so;
  so.num_users = 30;
  so.num_videos = 12;
  so.num_topics = 3;
  so.min_comments = 20;
  so.max_comments = 24;
  so.output = raw.path();
  data::generate_lsvcr_synthetic(so);
  data::prepare_lsvcr(raw.path(), prepared.path());
  const auto store = data::LsvcrStore::load(prepared.file(data::kLsvcrStoreFile));
  const auto splits = data::split_lsvcr(store);
  models::LsvcrOptions m;
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
  torch::manual_seed(2);
  models::Lsvcr sr(m);
  models::LsvcrTextTables tables;
  tables.video_title = torch::randn({store.num_videos + 1, 4});
  tables.comment_text = torch::randn({store.num_comments + 1, 4});
  tables.comment_video = torch::tensor(store.comment_video, torch::kInt64);
  tables.video_hot_comment = torch::tensor(store.video_hot_comment, torch::kInt64);
  sr->set_text_tables(tables);
  LsvcrAlignOptions o;
  o.prompt_history = 2;
  o.max_prompt_tokens = 96;
  o.max_response_tokens = 16;
  o.lora.dropout = 0;
  auto tokenizer = llm::load_tokenizer(kStories);
  llm::DecoderLm lm = llm::load_decoder_lm(kStories);
  ASSERT_GT(nn::apply_lora(*lm, o.lora), 0);
  LsvcrAligner aligner(lm.ptr(), 8);
  const LsvcrTexts texts = load_lsvcr_texts(prepared.path());
  std::vector<const data::LsvcrSample*> vb, cb;
  for (size_t i = 0; i < 4; ++i) {
    vb.push_back(&splits.train.video[i]);
    cb.push_back(&splits.train.comment[i]);
  }
  std::vector<std::pair<std::string, torch::Tensor>> params;
  for (const auto& p : sr->named_parameters())
    if (p.value().requires_grad()) params.emplace_back("sr." + p.key(), p.value());
  for (const auto& p : aligner->named_parameters())
    if (p.value().requires_grad()) params.emplace_back("a." + p.key(), p.value());
  for (const auto& [name, p] : params) EXPECT_EQ(name.find("llm.") != std::string::npos, name.find("lora_") != std::string::npos) << name;
  AdamW opt(params, {3e-3, 0.9, 0.999, 1e-8, 0.0});
  Rng first_rng(9);
  const LsvcrAlignTerms first = lsvcr_align_step(*sr, *aligner, *tokenizer, store, texts, vb, cb, o, first_rng);
  EXPECT_NEAR(first.total.item<float>(), (first.lm + first.rec + 0.5 * first.contrast).item<float>(), 1e-4);
  EXPECT_GT(first.lm.item<float>(), 0.5f);
  EXPECT_GT(first.tokens, 8 * 20);
  LsvcrAlignTerms last;
  for (int step = 0; step < 12; ++step) {
    Rng rng(9);
    opt.zero_grad();
    last = lsvcr_align_step(*sr, *aligner, *tokenizer, store, texts, vb, cb, o, rng);
    last.total.backward();
    opt.step(3e-3);
  }
  EXPECT_LT(last.total.item<float>(), first.total.item<float>());
  EXPECT_LT(last.rec.item<float>(), first.rec.item<float>());
  EXPECT_LT(last.contrast.item<float>(), first.contrast.item<float>());
}

}  // namespace
}  // namespace seqrec::train
