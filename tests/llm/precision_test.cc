// Mixed precision of the LLM towers: bf16 training forward passes close to float32 ones, float32
// parameters, gradients and optimizer state, float32 evaluation, learning, and the config errors.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "seqrec/config/config_node.h"
#include "seqrec/config/options.h"
#include "seqrec/llm/decoder_lm.h"
#include "seqrec/llm/precision.h"
#include "seqrec/train/finetune.h"
#include "seqrec/train/optim.h"
#include "support.h"

namespace seqrec::llm {
namespace {

DecoderLm tiny_lm() {
  torch::manual_seed(9);
  DecoderConfig c;
  c.vocab_size = 20;
  c.hidden_size = 32;
  c.intermediate_size = 48;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 8;
  c.tie_word_embeddings = false;
  return DecoderLm(c);
}

torch::Tensor toy_ids() {  // a repetitive toy "text"
  return torch::tensor(std::vector<int64_t>{1, 4, 5, 6, 7, 4, 5, 6, 7, 4, 5, 6, 7, 4, 5, 6}, torch::kLong).unsqueeze(0);
}

torch::Tensor lm_loss(DecoderLm& lm) {
  auto ids = toy_ids();
  DecoderInput in;
  in.input_ids = ids.narrow(1, 0, ids.size(1) - 1);
  auto logits = lm->logits(lm->forward_hidden(in))[0];                    // [T-1, V]
  return torch::nn::functional::cross_entropy(logits, ids[0].narrow(0, 1, ids.size(1) - 1));
}

double max_abs_diff(const torch::Tensor& a, const torch::Tensor& b) { return (a - b).abs().max().item<double>(); }

// The stated tolerance of bf16 against fp32 on these tiny towers: bfloat16 keeps 8 significant bits
// (relative rounding 2^-9), a few roundings per layer over 2 layers of O(1) activations.
constexpr double kBf16Tolerance = 0.05;

TEST(PrecisionTest, Bf16TrainingForwardIsCloseToFp32AndEvaluationIsExactFp32) {
  DecoderLm fp32 = tiny_lm(), bf16 = tiny_lm();  // same seed: same weights
  EXPECT_EQ(set_training_precision(*bf16, config::Precision::kBf16, torch::kCPU, "train.precision"), 1);
  EXPECT_EQ(bf16->training_dtype, torch::kBFloat16);
  fp32->train();
  bf16->train();
  DecoderInput in;
  in.input_ids = toy_ids();
  auto a = fp32->forward_hidden(in), b = bf16->forward_hidden(in);                  // [1, T, D]
  EXPECT_EQ(b.scalar_type(), torch::kFloat);
  EXPECT_LT(max_abs_diff(a, b), kBf16Tolerance);
  EXPECT_GT(max_abs_diff(a, b), 1e-5);  // it really ran in bfloat16
  auto la = fp32->logits(a), lb = bf16->logits(b);
  EXPECT_EQ(lb.scalar_type(), torch::kFloat);
  EXPECT_LT(max_abs_diff(la, lb), kBf16Tolerance);

  // Packed segments (HLLM's item texts): the float32 jagged kernel under bf16 projections.
  auto packed = nn::pack_segments({7, 9});
  DecoderInput pin;
  pin.input_ids = toy_ids();
  pin.positions = torch::cat({torch::arange(7, torch::kLong), torch::arange(9, torch::kLong)}).unsqueeze(0);
  pin.packed = &packed;
  auto pa = fp32->forward_hidden(pin), pb = bf16->forward_hidden(pin);
  EXPECT_EQ(pb.scalar_type(), torch::kFloat);
  EXPECT_LT(max_abs_diff(pa, pb), kBf16Tolerance);
  EXPECT_GT(max_abs_diff(pa, pb), 1e-5);

  // Evaluation computes in float32 whatever the training precision: bit for bit.
  fp32->eval();
  bf16->eval();
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(torch::equal(fp32->forward_hidden(in), bf16->forward_hidden(in)));
  EXPECT_TRUE(torch::equal(fp32->forward_hidden(pin), bf16->forward_hidden(pin)));
}

TEST(PrecisionTest, Bf16GradientsAreFloat32AndCloseToFp32Ones) {
  DecoderLm fp32 = tiny_lm(), bf16 = tiny_lm();
  set_training_precision(*bf16, config::Precision::kBf16, torch::kCPU, "finetune.precision");
  fp32->train();
  bf16->train();
  lm_loss(fp32).backward();
  lm_loss(bf16).backward();
  auto ga = fp32->named_parameters(), gb = bf16->named_parameters();
  for (const auto& p : ga) {
    const auto& g32 = p.value().grad();
    const auto& g16 = gb[p.key()].grad();
    ASSERT_TRUE(g16.defined()) << p.key();
    EXPECT_EQ(gb[p.key()].scalar_type(), torch::kFloat) << p.key();
    EXPECT_EQ(g16.scalar_type(), torch::kFloat) << p.key();
    // Direction and size: cosine > 0.99 and the same norm within 5%.
    const double cos = torch::cosine_similarity(g32.flatten(), g16.flatten(), 0).item<double>();
    EXPECT_GT(cos, 0.99) << p.key();
    EXPECT_NEAR(g16.norm().item<double>() / g32.norm().item<double>(), 1.0, 0.05) << p.key();
  }
}

TEST(PrecisionTest, Bf16TrainingLearnsWithFloat32OptimizerState) {
  DecoderLm lm = tiny_lm();
  set_training_precision(*lm, config::Precision::kBf16, torch::kCPU, "train.precision");
  lm->train();
  std::vector<std::pair<std::string, torch::Tensor>> params;
  for (const auto& p : lm->named_parameters()) params.emplace_back(p.key(), p.value());
  train::AdamW optimizer(params, {1e-2, 0.9, 0.98, 1e-8, 0.0});
  double first = 0, last = 0;
  for (int step = 0; step < 40; ++step) {
    optimizer.zero_grad();
    auto loss = lm_loss(lm);
    loss.backward();
    optimizer.step(1e-2);
    (step == 0 ? first : last) = loss.item<double>();
  }
  EXPECT_LT(last, 0.25 * first) << first << " -> " << last;
  for (const auto& [name, p] : params) EXPECT_EQ(p.scalar_type(), torch::kFloat) << name;
  const auto state = optimizer.state();
  EXPECT_EQ(state.size(), 2 * params.size());
  for (const auto& [name, t] : state) EXPECT_EQ(t.scalar_type(), torch::kFloat) << name;
}

TEST(PrecisionTest, BadPrecisionAndModelsWithoutLlmTowersAreConfigErrors) {
  auto node = config::ConfigNode::parse("train:\n  precision: fp16\n");
  ASSERT_THROWS_WITH(config::read_train_options(node.child("train")),
                     "train.precision: 'fp16' is not one of: fp32, bf16");
  EXPECT_EQ(config::read_train_options(config::ConfigNode::parse("train:\n  precision: bf16\n").child("train")).precision,
            config::Precision::kBf16);
  EXPECT_EQ(config::read_train_options(config::ConfigNode::parse("train:\n  epochs: 1\n").child("train")).precision,
            config::Precision::kFp32);
  const std::string finetune = "finetune:\n  model: m\n  train_file: t.jsonl\n  out_dir: o\n";
  EXPECT_EQ(train::read_finetune_options(config::ConfigNode::parse(finetune + "  precision: bf16\n").child("finetune"))
                .precision,
            config::Precision::kBf16);
  ASSERT_THROWS_WITH(
      train::read_finetune_options(config::ConfigNode::parse(finetune + "  precision: half\n").child("finetune")),
      "finetune.precision: 'half' is not one of: fp32, bf16");
  torch::nn::Linear id_model(4, 4);  // no decoder LM inside
  EXPECT_EQ(set_training_precision(*id_model, config::Precision::kFp32, torch::kCPU, "train.precision"), 0);
  ASSERT_THROWS_WITH(set_training_precision(*id_model, config::Precision::kBf16, torch::kCPU, "train.precision"),
                     "train.precision: bf16 is for LLM towers");
}

}  // namespace
}  // namespace seqrec::llm
