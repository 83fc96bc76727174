// Fine-tuning: batch layouts and their loss (packed == padded, exact accumulation), added-token
// rows, the Hugging Face export (reload, PEFT adapter) and a short run on stories260K.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <nlohmann/json.hpp>

#include "llm/tokenizer_fixtures.h"
#include "seqrec/common/error.h"
#include "seqrec/common/fs.h"
#include "seqrec/common/safetensors.h"
#include "seqrec/config/config_node.h"
#include "seqrec/dist/grad_reducer.h"
#include "seqrec/dist/process_group.h"
#include "seqrec/llm/decoder_lm.h"
#include "seqrec/llm/generation.h"
#include "seqrec/llm/sft_data.h"
#include "seqrec/llm/tokenizer.h"
#include "seqrec/train/checkpoint.h"
#include "seqrec/train/finetune.h"
#include "seqrec/train/hf_export.h"
#include "seqrec/train/optim.h"
#include "seqrec/train/sft_batch.h"
#include "dist/dist_support.h"
#include "support.h"

namespace seqrec::train {
namespace {

using llm::kIgnoreLabel;
using llm::TokenizedExample;
using seqrec::testing::TempDir;

const std::string kStories = SEQREC_SOURCE_DIR "/../shared/models/stories260K/hf";

llm::DecoderConfig tiny_config(int64_t vocab, bool tied) {
  llm::DecoderConfig c;
  c.vocab_size = vocab;
  c.hidden_size = 16;
  c.intermediate_size = 24;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 4;
  c.rms_norm_eps = 1e-6;
  c.tie_word_embeddings = tied;
  return c;
}

llm::DecoderLm tiny_lm(int64_t vocab = 40, bool tied = false, uint64_t seed = 3) {
  torch::manual_seed(seed);
  llm::DecoderLm lm(tiny_config(vocab, tied));
  torch::NoGradGuard no_grad;
  for (auto& p : lm->parameters()) p.normal_(0, 0.3);  // larger than the default init: distinct outputs
  return lm;
}

// A Hugging Face folder: the tiny SentencePiece-style tokenizer.json (264 ids, </s> = EOS) and a
// random tiny LLaMA with 264 rows.
void write_tiny_hf(const std::string& dir, bool tied) {
  llm::DecoderLm lm = tiny_lm(264, tied, 11);
  const auto& c = lm->config();
  nlohmann::json config = {{"architectures", {"LlamaForCausalLM"}}, {"model_type", "llama"},
                           {"vocab_size", c.vocab_size}, {"hidden_size", c.hidden_size},
                           {"intermediate_size", c.intermediate_size}, {"num_hidden_layers", c.num_layers},
                           {"num_attention_heads", c.num_heads}, {"num_key_value_heads", c.num_kv_heads},
                           {"rms_norm_eps", c.rms_norm_eps}, {"tie_word_embeddings", tied}, {"bos_token_id", 1},
                           {"eos_token_id", 2}};
  write_file_atomic(dir + "/config.json", config.dump(2));
  save_tensors(dir + "/model.safetensors", model_state(*lm), {{"format", "pt"}});
  write_file_atomic(dir + "/tokenizer.json", seqrec::testing::tiny_sentencepiece_style().dump());
  write_file_atomic(dir + "/tokenizer_config.json", R"({"eos_token": "</s>", "add_bos_token": true})");
  write_file_atomic(dir + "/special_tokens_map.json", R"({"bos_token": "<s>", "eos_token": "</s>"})");
}

// Examples of different lengths and masks (ids < 40).
std::vector<TokenizedExample> toy_examples(int64_t n, uint64_t seed) {
  torch::manual_seed(seed);
  std::vector<TokenizedExample> out;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t len = 3 + (i * 5) % 7, prompt = 1 + i % 3;
    auto ids = torch::randint(3, 40, {len}, torch::kLong);
    TokenizedExample e;
    e.input_ids.assign(ids.data_ptr<int64_t>(), ids.data_ptr<int64_t>() + len);
    e.labels = e.input_ids;
    for (int64_t t = 0; t < prompt; ++t) e.labels[t] = kIgnoreLabel;
    out.push_back(e);
  }
  return out;
}

std::vector<const TokenizedExample*> pointers(const std::vector<TokenizedExample>& v, size_t begin, size_t end) {
  std::vector<const TokenizedExample*> out;
  for (size_t i = begin; i < end; ++i) out.push_back(&v[i]);
  return out;
}

std::map<std::string, torch::Tensor> grads_of(llm::DecoderLm& lm) {
  std::map<std::string, torch::Tensor> out;
  for (auto& p : lm->named_parameters()) out[p.key()] = p.value().grad().clone();
  return out;
}

void zero_grads(llm::DecoderLm& lm) {
  for (auto& p : lm->parameters())
    if (p.grad().defined()) p.mutable_grad().zero_();
}

torch::Tensor logits_of(llm::DecoderLmImpl& lm, const std::vector<int64_t>& ids) {
  torch::NoGradGuard no_grad;
  llm::DecoderInput in;
  in.input_ids = torch::tensor(ids, torch::kLong).unsqueeze(0);
  return lm.logits(lm.forward_hidden(in))[0];                                           // [T, V]
}

// ---------------------------------------------------------------- batches and loss

TEST(SftBatchTest, CollatesPackedAndPaddedLayoutsByHand) {
  TokenizedExample a{{1, 5, 6, 2}, {kIgnoreLabel, kIgnoreLabel, 6, 2}};
  TokenizedExample b{{1, 7, 2}, {kIgnoreLabel, 7, 2}};
  SftBatch packed = collate_sft({&a, &b}, SftLayout::kPacked);
  // The last token of each example is not fed; positions restart; targets are the next labels.
  EXPECT_TRUE(torch::equal(packed.input_ids, torch::tensor({{1, 5, 6, 1, 7}}, torch::kLong)));
  EXPECT_TRUE(torch::equal(packed.positions, torch::tensor({{0, 1, 2, 0, 1}}, torch::kLong)));
  EXPECT_TRUE(torch::equal(packed.packed.lengths, torch::tensor({3, 2}, torch::kLong)));
  EXPECT_TRUE(torch::equal(packed.target_index, torch::tensor({1, 2, 3, 4}, torch::kLong)));
  EXPECT_TRUE(torch::equal(packed.target_ids, torch::tensor({6, 2, 7, 2}, torch::kLong)));
  EXPECT_EQ(packed.num_tokens, 5);
  SftBatch padded = collate_sft({&a, &b}, SftLayout::kPadded);
  EXPECT_TRUE(torch::equal(padded.input_ids, torch::tensor({{1, 5, 6}, {1, 7, 0}}, torch::kLong)));
  EXPECT_TRUE(torch::equal(padded.key_valid, torch::tensor({{true, true, true}, {true, true, false}})));
  EXPECT_TRUE(torch::equal(padded.target_index, torch::tensor({1, 2, 3, 4}, torch::kLong)));
  EXPECT_TRUE(torch::equal(padded.target_ids, torch::tensor({6, 2, 7, 2}, torch::kLong)));
  EXPECT_EQ(padded.num_tokens, 5);
}

TEST(SftBatchTest, LossSumIsTheCrossEntropyOfTheTrainedPositions) {
  llm::DecoderLm lm = tiny_lm();
  TokenizedExample a{{1, 5, 6, 2}, {kIgnoreLabel, kIgnoreLabel, 6, 2}};
  torch::NoGradGuard no_grad;
  const double got = sft_loss_sum(*lm, collate_sft({&a}, SftLayout::kPacked)).item<double>();
  auto logp = torch::log_softmax(logits_of(*lm, {1, 5, 6, 2}), -1);                    // [4, V]
  const double want = -(logp[1][6] + logp[2][2]).item<double>();  // position t predicts labels[t + 1]
  EXPECT_NEAR(got, want, 1e-5);
}

TEST(SftBatchTest, PackedLossAndGradientsEqualPadded) {
  llm::DecoderLm lm = tiny_lm();
  const auto examples = toy_examples(5, 7);
  std::map<SftLayout, double> loss;
  std::map<SftLayout, std::map<std::string, torch::Tensor>> grads;
  for (SftLayout layout : {SftLayout::kPacked, SftLayout::kPadded}) {
    zero_grads(lm);
    const StepLoss s = accumulate_gradients(*lm, {collate_sft(pointers(examples, 0, 5), layout)});
    loss[layout] = s.mean;
    grads[layout] = grads_of(lm);
  }
  EXPECT_NEAR(loss[SftLayout::kPacked], loss[SftLayout::kPadded], 1e-5);
  for (auto& [name, g] : grads[SftLayout::kPacked])
    EXPECT_TRUE(torch::allclose(g, grads[SftLayout::kPadded][name], 1e-4, 1e-6)) << name;
}

TEST(SftBatchTest, AccumulatingFourMicroBatchesEqualsOneBatchOfFour) {
  const auto examples = toy_examples(8, 9);
  llm::DecoderLm lm = tiny_lm();
  zero_grads(lm);
  std::vector<SftBatch> four;
  for (size_t i = 0; i < 8; i += 2) four.push_back(collate_sft(pointers(examples, i, i + 2), SftLayout::kPacked));
  const StepLoss small = accumulate_gradients(*lm, four);
  auto g4 = grads_of(lm);
  zero_grads(lm);
  const StepLoss big = accumulate_gradients(*lm, {collate_sft(pointers(examples, 0, 8), SftLayout::kPacked)});
  auto g1 = grads_of(lm);
  EXPECT_EQ(small.targets, big.targets);
  EXPECT_NEAR(small.mean, big.mean, 1e-6);
  for (auto& [name, g] : g1) EXPECT_TRUE(torch::allclose(g4[name], g, 1e-5, 1e-7)) << name;
  // The mean of the micro-batch means (transformers < 4.46) is a different number: the test can fail.
  double mean_of_means = 0;
  {
    torch::NoGradGuard no_grad;
    for (const auto& b : four)
      mean_of_means += sft_loss_sum(*lm, b).item<double>() / static_cast<double>(b.target_ids.numel()) / 4.0;
  }
  EXPECT_GT(std::abs(mean_of_means - big.mean), 1e-4);
  // And one AdamW step from either gradient lands on the same weights.
  std::map<std::string, torch::Tensor> after[2];
  for (int run = 0; run < 2; ++run) {
    llm::DecoderLm m = tiny_lm();
    NamedTensors params;
    for (auto& p : m->named_parameters()) params.emplace_back(p.key(), p.value());
    AdamW opt(params, {1e-2, 0.9, 0.999, 1e-8, 0.01});
    if (run == 0) {
      accumulate_gradients(*m, four);
    } else {
      accumulate_gradients(*m, {collate_sft(pointers(examples, 0, 8), SftLayout::kPacked)});
    }
    opt.step(1e-2);
    for (auto& p : m->named_parameters()) after[run][p.key()] = p.value().detach().clone();
  }
  for (auto& [name, w] : after[0]) EXPECT_TRUE(torch::allclose(w, after[1][name], 1e-5, 1e-6)) << name;
}

// Data parallelism: 2 Gloo ranks holding 2 and 1 micro-batches of unequal length (rank 1's has the
// most targets) leave every parameter with the gradient of one process holding all three, and both
// ranks report the whole step's loss and counts. Without the global token count (each rank's mean,
// then averaged) the gradient differs: the control shows the test can fail. A rank without
// micro-batches still takes part: with all three on rank 0, both ranks end with one process's
// gradient (rank 0 scales its sums by the world size, the reducer's mean halves them back).
TEST(SftBatchTest, TwoRanksAccumulateTheGradientOfTheWholeStep) {
  std::string skip;
  const auto groups = seqrec::testing::local_groups(2, &skip);
  if (groups.empty()) GTEST_SKIP() << skip;
  const auto examples = toy_examples(9, 13);
  const std::vector<SftBatch> all = {collate_sft(pointers(examples, 0, 2), SftLayout::kPacked),
                                     collate_sft(pointers(examples, 2, 4), SftLayout::kPacked),
                                     collate_sft(pointers(examples, 4, 9), SftLayout::kPacked)};
  ASSERT_GT(all[2].target_ids.numel(), all[0].target_ids.numel() + all[1].target_ids.numel());
  llm::DecoderLm one = tiny_lm();
  zero_grads(one);
  const StepLoss whole = accumulate_gradients(*one, all);
  const auto expected = grads_of(one);

  auto run_ranks = [&](const std::vector<std::vector<SftBatch>>& shares, bool share_counts) {
    std::vector<llm::DecoderLm> lms = {tiny_lm(), tiny_lm()};
    std::vector<StepLoss> losses(2);
    std::vector<std::map<std::string, torch::Tensor>> grads(2);
    seqrec::testing::on_each_rank(2, [&](int64_t r) {
      const size_t i = static_cast<size_t>(r);
      zero_grads(lms[i]);
      NamedTensors params;
      for (auto& p : lms[i]->named_parameters()) params.emplace_back(p.key(), p.value());
      dist::GradientReducer reducer(groups[i], params);
      if (share_counts) {
        losses[i] = accumulate_gradients(*lms[i], shares[i], {groups[i].get(), &reducer});
      } else {  // each rank's own token mean, then the plain average of the ranks
        reducer.set_sync(false);
        losses[i] = accumulate_gradients(*lms[i], shares[i]);
        reducer.finish();
      }
      grads[i] = grads_of(lms[i]);
    });
    return std::make_pair(losses, grads);
  };
  auto max_error = [&](const std::map<std::string, torch::Tensor>& got, const std::map<std::string, torch::Tensor>& want) {
    double worst = 0;
    for (const auto& [name, g] : want)
      worst = std::max(worst, (got.at(name) - g).abs().max().item<double>() / std::max(1e-6, g.abs().max().item<double>()));
    return worst;
  };
  const auto [losses, grads] = run_ranks({{all[0], all[1]}, {all[2]}}, true);
  for (size_t r = 0; r < 2; ++r) {
    EXPECT_EQ(losses[r].targets, whole.targets) << "rank " << r;
    EXPECT_EQ(losses[r].tokens, whole.tokens) << "rank " << r;
    EXPECT_NEAR(losses[r].mean, whole.mean, 1e-6) << "rank " << r;
    EXPECT_LT(max_error(grads[r], expected), 1e-5) << "rank " << r;
  }
  const auto control = run_ranks({{all[0], all[1]}, {all[2]}}, false);
  EXPECT_GT(max_error(control.second[0], expected), 1e-2);

  // Rank 1 without micro-batches: the step is rank 0's three, the gradient one process's.
  const auto [alone, alone_grads] = run_ranks({all, {}}, true);
  EXPECT_EQ(alone[1].targets, whole.targets);
  EXPECT_NEAR(alone[1].mean, whole.mean, 1e-6);
  EXPECT_LT(max_error(alone_grads[1], expected), 1e-5);
}

TEST(SftBatchTest, AddedTokenRowsStartAtTheMeanOfTheKnownRows) {
  llm::DecoderLm lm = tiny_lm(40, false);
  auto known = lm->model->embed_tokens->weight.narrow(0, 0, 30).detach().mean(0);
  auto known_head = lm->lm_head->weight.narrow(0, 0, 30).detach().mean(0);
  // Qwen-style: 40 rows, 30 tokens; 4 added tokens take rows 30..33 without growing the matrix.
  init_added_token_rows(*lm, 30, 34);
  EXPECT_EQ(lm->config().vocab_size, 40);
  EXPECT_TRUE(torch::allclose(lm->model->embed_tokens->weight[33], known, 1e-6, 1e-7));
  EXPECT_TRUE(torch::allclose(lm->lm_head->weight[30], known_head, 1e-6, 1e-7));
  EXPECT_FALSE(torch::allclose(lm->model->embed_tokens->weight[34], known, 1e-3, 1e-3));
  init_added_token_rows(*lm, 34, 46);  // more than the rows: the matrices grow
  EXPECT_EQ(lm->config().vocab_size, 46);
  EXPECT_EQ(lm->lm_head->weight.size(0), 46);
}

// ---------------------------------------------------------------- export

TEST(HfExportTest, ReloadGivesSameLogitsAndEncodings) {
  TempDir base, out;
  write_tiny_hf(base.path(), /*tied=*/true);
  auto tok = llm::load_tokenizer(base.path());
  ASSERT_EQ(tok->add_tokens({"<a_1>", "<b_2>"}), 2);
  llm::DecoderLm lm = llm::load_decoder_lm(base.path());
  init_added_token_rows(*lm, 264, 266);
  {
    torch::NoGradGuard no_grad;
    lm->model->embed_tokens->weight[265].add_(0.5);  // as if trained: the new rows differ
  }
  HfExportSpec spec;
  spec.base_dir = base.path();
  spec.added_tokens = {{264, "<a_1>"}, {265, "<b_2>"}};
  const std::string dir = out.file("model");
  export_hf_model(*lm, spec, dir);

  llm::DecoderLm again = llm::load_decoder_lm(dir);
  auto tok_again = llm::load_tokenizer(dir);
  EXPECT_EQ(again->config().vocab_size, 266);
  EXPECT_EQ(tok_again->vocab_size(), 266);
  for (const std::string text : {"a ab<a_1><b_2>", "<b_2>b<a_1>"}) {
    const auto ids = tok->encode_with_special(text);
    EXPECT_EQ(tok_again->encode_with_special(text), ids) << text;
    EXPECT_TRUE(torch::equal(logits_of(*lm, ids), logits_of(*again, ids))) << text;
  }
  EXPECT_EQ(tok_again->decode({1, 262, 264, 265, 2}), "a<a_1><b_2>");
  auto config = nlohmann::json::parse(read_file(dir + "/config.json"));
  EXPECT_EQ(config["vocab_size"], 266);
  EXPECT_EQ(nlohmann::json::parse(read_file(dir + "/added_tokens.json")), nlohmann::json({{"<a_1>", 264}, {"<b_2>", 265}}));
  EXPECT_EQ(nlohmann::json::parse(read_file(dir + "/tokenizer_config.json"))["added_tokens_decoder"]["265"]["content"],
            "<b_2>");

  export_hf_model(*lm, spec, dir);  // replacing our own folder is fine
  EXPECT_TRUE(path_exists(dir + "/model.safetensors"));
  write_file_atomic(dir + "/notes.txt", "mine");  // a file seqrec did not write: hands off
  ASSERT_THROWS_WITH(export_hf_model(*lm, spec, dir), "holds 'notes.txt', which seqrec did not write");
  ASSERT_THROWS_WITH(export_hf_model(*lm, spec, base.path()), "is not a model folder seqrec exported");
}

TEST(HfExportTest, LoraAdapterSaveLoadGivesSameLogits) {
  TempDir base, out;
  write_tiny_hf(base.path(), /*tied=*/false);
  llm::DecoderLm lm = llm::load_decoder_lm(base.path());
  init_added_token_rows(*lm, 264, 266);
  nn::LoraOptions lora{4, 8, 0.0, {"q_proj", "v_proj", "down_proj"}};
  torch::manual_seed(1);
  nn::apply_lora(*lm, lora);
  {
    torch::NoGradGuard no_grad;  // as if trained: adapters, embeddings and output rows all moved
    for (auto& p : lm->named_parameters())
      if (p.key().find("lora_B") != std::string::npos) p.value().normal_(0, 0.2);
    lm->model->embed_tokens->weight[264].add_(0.3);
    lm->lm_head->weight[265].add_(-0.3);
  }
  HfExportSpec spec;
  spec.base_dir = base.path();
  spec.added_tokens = {{264, "<a_1>"}, {265, "<b_2>"}};
  spec.lora = true;
  spec.lora_options = lora;
  spec.modules_to_save = {"embed_tokens", "lm_head"};
  const std::string dir = out.file("model");
  export_hf_model(*lm, spec, dir);
  const std::vector<int64_t> ids = {1, 262, 264, 265, 261, 7};
  const auto want = logits_of(*lm, ids);

  // Base + resize + adapter (PEFT's way) and the merged folder give the same logits.
  llm::DecoderLm with_adapter = llm::load_decoder_lm(base.path());
  init_added_token_rows(*with_adapter, 264, 266);
  load_peft_adapter(*with_adapter, dir);
  EXPECT_TRUE(torch::allclose(logits_of(*with_adapter, ids), want, 1e-5, 1e-6));
  llm::DecoderLm merged = llm::load_decoder_lm(dir);
  EXPECT_TRUE(torch::allclose(logits_of(*merged, ids), want, 1e-5, 1e-5));
  const auto config = nlohmann::json::parse(read_file(dir + "/adapter_config.json"));
  EXPECT_EQ(config["peft_type"], "LORA");
  EXPECT_EQ(config["r"], 4);
  EXPECT_EQ(config["modules_to_save"], nlohmann::json({"embed_tokens", "lm_head"}));
  auto file = seqrec::SafetensorsFile::open(dir + "/adapter_model.safetensors");
  EXPECT_TRUE(file.contains("base_model.model.model.layers.1.mlp.down_proj.lora_A.weight"));
  EXPECT_TRUE(file.contains("base_model.model.model.embed_tokens.weight"));
  EXPECT_TRUE(file.contains("base_model.model.lm_head.weight"));
  // An adapter for 266 rows does not fit the un-resized base.
  llm::DecoderLm unresized = llm::load_decoder_lm(base.path());
  ASSERT_THROWS_WITH(load_peft_adapter(*unresized, dir), "expected shape [264, 16], got [266, 16]");
}

// ---------------------------------------------------------------- options and a real run

TEST(FinetuneTest, OptionErrorsNameTheKey) {
  auto read = [](const std::string& yaml) {
    auto root = config::ConfigNode::parse(yaml);
    return read_finetune_options(root.child("finetune"));
  };
  const std::string ok = "finetune: {model: m, train_file: t.jsonl, out_dir: o";
  EXPECT_EQ(read(ok + "}").grad_accum_steps, 2);
  ASSERT_THROWS_WITH(read("finetune: {train_file: t, out_dir: o}"), "finetune.model: required key is missing");
  ASSERT_THROWS_WITH(read(ok + ", schedule: linear}"), "finetune.schedule: 'linear' is not one of: cosine, constant");
  ASSERT_THROWS_WITH(read(ok + ", max_length: 1}"), "finetune.max_length: must be >= 2");
  ASSERT_THROWS_WITH(read(ok + ", grad_accum_steps: 0}"), "finetune.grad_accum_steps: must be >= 1");
  ASSERT_THROWS_WITH(read(ok + ", lora: {rank: 0}}"), "finetune.lora.rank: must be >= 1");
  ASSERT_THROWS_WITH(read(ok + ", warmup_ratio: 1.5}"), "finetune.warmup_ratio: must be in [0, 1)");
  EXPECT_DOUBLE_EQ(read(ok + ", warmup_min_ratio: 0.01}").warmup_min_ratio, 0.01);
  ASSERT_THROWS_WITH(read(ok + ", warmup_min_ratio: -1}"), "finetune.warmup_min_ratio: must be in [0, 1]");
  EXPECT_EQ(read(ok + ", zero_stage: 3}").zero_stage, 3);
  ASSERT_THROWS_WITH(read(ok + ", zero_stage: 4}"), "finetune.zero_stage: must be 0, 1, 2 or 3");
  EXPECT_EQ(read(ok + "}").zero_state, config::ZeroState::kSharded);
  EXPECT_EQ(read(ok + ", zero_state: consolidated}").zero_state, config::ZeroState::kConsolidated);
  EXPECT_FALSE(read(ok + ", zero_prefetch: false}").zero_prefetch);
  ASSERT_THROWS_WITH(read(ok + ", zero_state: flat}"), "finetune.zero_state");
}

// Prompts with a few semantic-ID style responses and one text response.
std::string write_pairs(const TempDir& dir) {
  const std::vector<std::pair<std::string, std::string>> pairs = {{"Item one is", "<a_1><b_2>"},
                                                                  {"Item two is", "<a_3><b_4>"},
                                                                  {"Item three is", "<a_1><b_4>"},
                                                                  {"The cat sat on the", " mat."}};
  std::string jsonl;
  for (const auto& [p, r] : pairs) jsonl += nlohmann::json({{"prompt", p}, {"response", r}}).dump() + "\n";
  return dir.write("pairs.jsonl", jsonl);
}

// Same tensor names in the same order, values within `tolerance` (relative to max(1, |max|)).
void expect_close_tensors(const std::string& a_path, const std::string& b_path, double tolerance) {
  const NamedTensors a = load_tensors(a_path, nullptr), b = load_tensors(b_path, nullptr);
  ASSERT_EQ(a.size(), b.size()) << a_path << " vs " << b_path;
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(a[i].first, b[i].first);
    const double scale = std::max(1.0, a[i].second.abs().max().item<double>());
    EXPECT_LT((a[i].second - b[i].second).abs().max().item<double>(), tolerance * scale) << a[i].first;
  }
}

std::vector<int64_t> greedy_response(const std::string& dir, const std::string& prompt) {
  auto tok = llm::load_tokenizer(dir);
  llm::DecoderLm lm = llm::load_decoder_lm(dir);
  llm::GenerationOptions g;
  g.max_new_tokens = 6;
  g.eos_id = tok->eos_id();
  return llm::generate(lm, tok->encode_with_special(prompt), g).at(0).ids;
}

TEST(FinetuneTest, Stories260KLearnsAndGeneratesTheMemorisedResponses) {
  if (!path_exists(kStories + "/config.json")) GTEST_SKIP() << "no " << kStories;
  for (bool lora : {false, true}) {
    SCOPED_TRACE(lora ? "LoRA" : "full");
    TempDir dir;
    FinetuneOptions o;
    o.model_dir = kStories;
    o.train_file = o.valid_file = write_pairs(dir);
    o.out_dir = dir.file("out");
    o.added_tokens = {"<a_1>", "<a_3>", "<b_2>", "<b_4>"};
    o.epochs = lora ? 60 : 40;
    o.batch_size = 2;
    o.grad_accum_steps = 1;
    o.lr = lora ? 1e-2 : 5e-3;
    o.warmup_ratio = 0.05;
    o.log_every = 1000;
    o.lora.enabled = lora;
    o.lora.adapter.dropout = 0;
    const FinetuneSummary s = run_finetune(o, "finetune: {}\n");
    EXPECT_EQ(s.added_tokens, 4);
    EXPECT_EQ(s.steps, o.epochs * 2);
    std::vector<double> valid;
    std::ifstream metrics(o.out_dir + "/metrics.jsonl");
    for (std::string line; std::getline(metrics, line);) valid.push_back(nlohmann::json::parse(line)["valid_loss"]);
    ASSERT_EQ(valid.size(), static_cast<size_t>(o.epochs));
    EXPECT_GT(valid.front(), 5.0);
    EXPECT_LT(s.best_valid_loss, 0.1);
    EXPECT_EQ(s.best_valid_loss, *std::min_element(valid.begin(), valid.end()));
    auto tok = llm::load_tokenizer(o.out_dir);
    const int64_t eos = tok->eos_id();
    EXPECT_EQ(greedy_response(o.out_dir, "Item one is"), (std::vector<int64_t>{512, 514}));  // <a_1><b_2>, then EOS
    EXPECT_EQ(greedy_response(o.out_dir, "Item two is"), (std::vector<int64_t>{513, 515}));
    EXPECT_EQ(tok->decode(greedy_response(o.out_dir, "Item three is")), "<a_1><b_4>");
    EXPECT_NE(eos, -1);
    EXPECT_EQ(path_exists(o.out_dir + "/adapter_model.safetensors"), lora);
  }
}

// Runs anywhere (no shared models): the tiny random model, LoRA with dropout, token-budget padded
// micro-batches; a seed fixes the exported weights bit for bit.
// Epoch files (lcrec-data's per-epoch template draws): epoch 2 trains on its own file. Listing
// train_file itself changes nothing; another file for epoch 2 changes the model; one for epoch 3
// only does not change a 2-epoch run.
// A Qwen2-VL base: its language model is tuned, and its vision tower (`visual.*`, here a bfloat16
// tensor and a float32 one) travels unchanged into the export, in float32, so that the exported
// folder is a whole Qwen2-VL folder that loads again.
TEST(FinetuneTest, Qwen2VlBasesExportTheirVisionTowerUnchanged) {
  TempDir dir;
  write_tiny_hf(dir.file(""), /*tied=*/false);
  auto config = nlohmann::json::parse(read_file(dir.file("config.json")));
  config["model_type"] = "qwen2_vl";
  config["attention_bias"] = false;  // the tiny LLaMA has no q/k/v biases
  write_file_atomic(dir.file("config.json"), config.dump());
  NamedTensors base = load_tensors(dir.file("model.safetensors"), nullptr);
  torch::manual_seed(3);
  const torch::Tensor qkv = torch::randn({6, 4}).to(torch::kBFloat16), merger = torch::randn({3});
  base.emplace_back("visual.blocks.0.attn.qkv.weight", qkv);
  base.emplace_back("visual.merger.mlp.2.bias", merger);
  save_tensors(dir.file("model.safetensors"), base, {{"format", "pt"}});
  FinetuneOptions o;
  o.model_dir = dir.path();
  o.train_file = dir.write("t.jsonl", nlohmann::json({{"prompt", "a b"}, {"response", "ab"}}).dump() + "\n");
  o.out_dir = dir.file("out");
  o.epochs = 1;
  o.lr = 1e-2;
  run_finetune(o, "");
  NamedTensors exported = load_tensors(dir.file("out/model.safetensors"), nullptr);
  std::map<std::string, torch::Tensor> by_name(exported.begin(), exported.end());
  ASSERT_TRUE(by_name.count("visual.blocks.0.attn.qkv.weight"));
  EXPECT_EQ(by_name["visual.blocks.0.attn.qkv.weight"].scalar_type(), torch::kFloat);
  EXPECT_TRUE(torch::equal(by_name["visual.blocks.0.attn.qkv.weight"], qkv.to(torch::kFloat)));
  EXPECT_TRUE(torch::equal(by_name["visual.merger.mlp.2.bias"], merger));
  // The language model did train, and the folder loads again as a Qwen2-VL language model.
  std::map<std::string, torch::Tensor> before(base.begin(), base.end());
  EXPECT_FALSE(torch::equal(by_name["model.layers.0.mlp.up_proj.weight"], before["model.layers.0.mlp.up_proj.weight"]));
  EXPECT_EQ(llm::load_decoder_lm(dir.file("out"))->config().model_type, "qwen2_vl");
}

TEST(FinetuneTest, LaterEpochsTrainOnTheirOwnFiles) {
  TempDir dir;
  write_tiny_hf(dir.file(""), /*tied=*/false);
  auto jsonl = [](std::initializer_list<const char*> responses) {
    std::string out;
    for (const char* r : responses) out += nlohmann::json({{"prompt", "a b"}, {"response", r}}).dump() + "\n";
    return out;
  };
  FinetuneOptions o;
  o.model_dir = dir.path();
  o.train_file = dir.write("e1.jsonl", jsonl({"ab", "b a", "ba"}));
  const std::string other = dir.write("e2.jsonl", jsonl({"bb", "a a", "aa"}));
  o.epochs = 2;
  o.batch_size = 1;
  o.grad_accum_steps = 1;
  o.lr = 1e-2;
  auto weights = [&](std::vector<std::string> files, const std::string& out) {
    o.epoch_train_files = std::move(files);
    o.out_dir = dir.file(out);
    run_finetune(o, "");
    return read_file(o.out_dir + "/model.safetensors");
  };
  const std::string plain = weights({}, "plain");
  EXPECT_EQ(weights({o.train_file}, "same"), plain);
  const std::string second = weights({other}, "other");
  EXPECT_NE(second, plain);
  EXPECT_EQ(weights({other, o.train_file}, "third_unused"), second);
  // Every file is read before training starts: a missing one fails at once, naming it.
  ASSERT_THROWS_WITH(weights({dir.file("missing.jsonl")}, "missing"), "missing.jsonl");
}

// The tiny model in `dir` and a run over prompt "a b" with these responses, <a_1> added, 3 epochs.
FinetuneOptions tiny_run(const TempDir& dir, bool tied, std::initializer_list<const char*> responses) {
  write_tiny_hf(dir.file(""), tied);
  std::string jsonl;
  for (const char* r : responses) jsonl += nlohmann::json({{"prompt", "a b"}, {"response", r}}).dump() + "\n";
  FinetuneOptions o;
  o.model_dir = dir.path();
  o.train_file = dir.write("train.jsonl", jsonl);
  o.added_tokens = {"<a_1>"};
  o.epochs = 3;
  return o;
}

TEST(FinetuneTest, SameSeedGivesTheSameModel) {
  TempDir dir;
  FinetuneOptions o = tiny_run(dir, /*tied=*/false, {"ab", "b a", "<a_1>", "aab<a_1>", "ba"});
  o.batch_tokens = 12;
  o.grad_accum_steps = 2;
  o.packed = false;
  o.lr = 1e-2;
  o.lora.enabled = true;
  o.lora.adapter.dropout = 0.2;
  std::map<std::string, int64_t> steps;
  auto weights = [&](int64_t seed, const std::string& out) {
    o.seed = seed;
    o.out_dir = dir.file(out);
    const FinetuneSummary s = run_finetune(o, "");
    steps[out] = s.steps;
    EXPECT_GT(s.steps, 3);
    EXPECT_TRUE(std::isnan(s.best_valid_loss));
    return read_file(o.out_dir + "/model.safetensors");
  };
  const std::string first = weights(5, "a"), again = weights(5, "b"), other = weights(6, "c");
  // Without validation, metrics.jsonl holds one training line per epoch (it was empty before).
  std::vector<std::string> lines;
  std::istringstream metrics(read_file(dir.file("a/metrics.jsonl")));
  for (std::string line; std::getline(metrics, line);) lines.push_back(line);
  ASSERT_EQ(lines.size(), 3u);
  double previous = 1e9;
  int64_t previous_step = 0;
  for (size_t i = 0; i < lines.size(); ++i) {
    const auto line = nlohmann::json::parse(lines[i]);
    EXPECT_EQ(line["epoch"], static_cast<int64_t>(i + 1));
    EXPECT_GT(line["step"].get<int64_t>(), previous_step);  // token-budget batches: epochs differ in steps
    previous_step = line["step"];
    EXPECT_EQ(line["split"], "train");
    EXPECT_FALSE(line.contains("valid_loss"));
    const double loss = line["loss"];
    EXPECT_GT(loss, 0.0);
    EXPECT_LT(loss, previous);  // lr 1e-2 on five examples: the epoch loss drops
    previous = loss;
  }
  EXPECT_EQ(previous_step, steps["a"]);
  EXPECT_EQ(first, again);
  EXPECT_NE(first, other);
  EXPECT_EQ(read_file(dir.file("a/adapter_model.safetensors")), read_file(dir.file("b/adapter_model.safetensors")));
}

// ZeRO-1, -2 and -3 on 2 ranks (threads over loopback Gloo): the same weights and AdamW moments as
// plain data parallelism, with clipping and weight decay on (both groups, the norm over the owned
// gradients of all ranks); the moments meet in one state file, and a ZeRO-2 run cut after epoch 1
// and resumed (each rank's share handed out from it) ends where the uninterrupted one does. Seven
// examples: the last step of each epoch has one micro-batch, so under ZeRO-3 rank 1 runs the
// blocks with a zero-weight filler (their gathers are collectives); ZeRO-3 also with checkpointing.
TEST(FinetuneTest, ZeroOneTwoAndThreeOnTwoRanksGiveTheWeightsAndMomentsOfDataParallelism) {
  std::string skip;
  const auto groups = seqrec::testing::local_groups(2, &skip);
  if (groups.empty()) GTEST_SKIP() << skip;
  TempDir dir;
  FinetuneOptions o = tiny_run(dir, /*tied=*/false, {"ab", "b a", "<a_1>", "aab<a_1>", "ba", "<a_1>b", "bb a"});
  o.batch_size = 1;
  o.grad_accum_steps = 1;
  o.lr = 2e-2;
  o.weight_decay = 0.1;
  o.grad_clip = 0.5;  // below the tiny model's gradient norm: clipping takes part
  o.threads = 1;
  o.log_every = 1000;
  auto on_two_ranks = [&](int64_t stage, const std::string& out, bool resume, int64_t stop_after) {
    o.zero_stage = stage;
    o.out_dir = dir.file(out);
    std::vector<FinetuneSummary> s(2);
    seqrec::testing::on_each_rank(2, [&](int64_t r) {
      FinetuneInvocation inv;
      inv.group = groups[static_cast<size_t>(r)];
      inv.resume = resume;
      inv.stop_after_epoch = stop_after;
      s[static_cast<size_t>(r)] = run_finetune(o, "", inv);
    });
    return s[0];
  };
  o.zero_state = config::ZeroState::kConsolidated;  // the ZeRO runs' state files are then comparable with DDP's as they are
  const FinetuneSummary ddp = on_two_ranks(0, "ddp", false, 0);
  EXPECT_EQ(ddp.steps, 12);  // 7 examples, 2 micro-batches per step (1 in the last), 3 epochs
  for (const std::string run : {"zero1", "zero2", "zero3", "zero3_checkpointing"}) {
    SCOPED_TRACE(run);
    o.gradient_checkpointing = run == "zero3_checkpointing";
    const FinetuneSummary z = on_two_ranks(run == "zero1" ? 1 : run == "zero2" ? 2 : 3, run, false, 0);
    o.gradient_checkpointing = false;
    EXPECT_NEAR(z.train_loss, ddp.train_loss, 1e-5);
    expect_close_tensors(dir.file("ddp/model.safetensors"), dir.file(run + "/model.safetensors"), 1e-5);
    expect_close_tensors(dir.file("ddp.resume.safetensors"), dir.file(run + ".resume.safetensors"), 1e-5);
  }
  on_two_ranks(2, "zero2_parts", false, 1);
  const FinetuneSummary rest = on_two_ranks(2, "zero2_parts", true, 0);
  EXPECT_EQ(rest.steps, 12);
  expect_close_tensors(dir.file("ddp/model.safetensors"), dir.file("zero2_parts/model.safetensors"), 1e-5);
  expect_close_tensors(dir.file("ddp.resume.safetensors"), dir.file("zero2_parts.resume.safetensors"), 1e-5);

  // Sharded states (finetune.zero_state's default): each rank writes its moments to a shard named
  // after the state and the epoch, the state names them; a run cut after epoch 1 resumes from them
  // to DDP's weights, and then only the last epoch's shards are left; the state's weights and the
  // shards' moments are together DDP's state; a missing shard is refused by name.
  o.zero_state = config::ZeroState::kSharded;
  auto shard = [&](const std::string& run, int epoch, int rank) {
    return dir.file(run + ".resume.e" + std::to_string(epoch) + ".rank" + std::to_string(rank) + "-of-2.safetensors");
  };
  auto by_name = [](const NamedTensors& list) { return std::map<std::string, torch::Tensor>(list.begin(), list.end()); };
  for (const int64_t stage : {2, 3}) {
    const std::string run = "sharded" + std::to_string(stage);
    SCOPED_TRACE(run);
    on_two_ranks(stage, run, false, 1);
    EXPECT_TRUE(path_exists(shard(run, 1, 0)) && path_exists(shard(run, 1, 1)));
    const FinetuneSummary resumed = on_two_ranks(stage, run, true, 0);
    EXPECT_EQ(resumed.steps, 12);
    EXPECT_NEAR(resumed.train_loss, ddp.train_loss, 1e-5);
    expect_close_tensors(dir.file("ddp/model.safetensors"), dir.file(run + "/model.safetensors"), 1e-5);
    EXPECT_FALSE(path_exists(shard(run, 1, 0)) || path_exists(shard(run, 1, 1)));
    auto got = by_name(load_tensors(dir.file(run + ".resume.safetensors"), nullptr));
    for (const auto& [name, t] : got) EXPECT_EQ(name.compare(0, 6, "param."), 0) << name;  // moments: in the shards
    for (int r = 0; r < 2; ++r)
      for (auto& [name, t] : load_tensors(shard(run, 3, r), nullptr)) EXPECT_TRUE(got.emplace(name, t).second) << name;
    const auto want = by_name(load_tensors(dir.file("ddp.resume.safetensors"), nullptr));
    ASSERT_EQ(got.size(), want.size());
    for (const auto& [name, t] : want) {
      ASSERT_TRUE(got.count(name)) << name;
      EXPECT_LT((got[name] - t).abs().max().item<double>(), 1e-5 * std::max(1.0, t.abs().max().item<double>())) << name;
    }
  }
  std::filesystem::remove(shard("sharded2", 3, 1));
  ASSERT_THROWS_WITH(on_two_ranks(2, "sharded2", true, 0),
                     "sharded2.resume.e3.rank1-of-2.safetensors: optimizer shard named by");
}

FinetuneInvocation invocation(bool resume, int64_t stop_after_epoch) {
  FinetuneInvocation inv;
  inv.resume = resume;
  inv.stop_after_epoch = stop_after_epoch;
  return inv;
}

TEST(FinetuneTest, ResumingAfterAnEpochGivesTheUninterruptedResult) {
  TempDir dir;
  FinetuneOptions o = tiny_run(dir, /*tied=*/true, {"ab", "b a", "<a_1>", "aab<a_1>", "ba", "<a_1>b"});
  o.valid_file = o.train_file;
  o.batch_size = 2;
  o.lr = 1e-2;
  o.lora.enabled = true;
  o.lora.adapter.dropout = 0.3;
  o.out_dir = dir.file("whole");
  const FinetuneSummary whole = run_finetune(o, "x: 1\n");
  o.out_dir = dir.file("parts");
  const FinetuneSummary first = run_finetune(o, "x: 1\n", invocation(false, 1));
  EXPECT_EQ(first.steps, whole.steps / 3);
  const FinetuneSummary rest = run_finetune(o, "x: 1\n", invocation(true, 0));
  EXPECT_EQ(rest.steps, whole.steps);
  EXPECT_EQ(rest.best_valid_loss, whole.best_valid_loss);
  EXPECT_EQ(rest.exported_step, whole.exported_step);
  EXPECT_EQ(rest.train_loss, whole.train_loss);
  for (const char* f : {"model.safetensors", "adapter_model.safetensors", "metrics.jsonl"})
    EXPECT_EQ(read_file(dir.file(std::string("whole/") + f)), read_file(dir.file(std::string("parts/") + f))) << f;
  EXPECT_EQ(read_file(dir.file("whole.resume.safetensors")), read_file(dir.file("parts.resume.safetensors")));
  o.lr = 2e-2;  // a different trajectory cannot continue this state
  ASSERT_THROWS_WITH(run_finetune(o, "", invocation(true, 0)), "parts.resume.safetensors: written by a run with other options");
  o.out_dir = dir.file("fresh");  // a file seqrec did not write where the resume state goes: hands off
  write_file_atomic(o.out_dir + ".resume.safetensors", "not ours");
  o.lr = 1e-2;
  ASSERT_THROWS_WITH(run_finetune(o, ""), "fresh.resume.safetensors: exists and is not a resume state seqrec wrote");
  EXPECT_FALSE(path_exists(o.out_dir));  // refused before anything was written
}

}  // namespace
}  // namespace seqrec::train
