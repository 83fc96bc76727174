// LoRA: a fresh adapter changes nothing, merging preserves outputs, training moves only adapters,
// save/load round trip; and vocabulary resizing.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "seqrec/llm/decoder_lm.h"
#include "seqrec/llm/precision.h"
#include "seqrec/nn/lora.h"
#include "support.h"

namespace seqrec::nn {
namespace {

llm::DecoderLm tiny_lm() {
  torch::manual_seed(9);
  llm::DecoderConfig c;
  c.vocab_size = 20;
  c.hidden_size = 16;
  c.intermediate_size = 24;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 4;
  c.tie_word_embeddings = false;
  return llm::DecoderLm(c);
}

torch::Tensor toy_ids() {  // a repetitive toy "text"
  return torch::tensor(std::vector<int64_t>{1, 4, 5, 6, 7, 4, 5, 6, 7, 4, 5, 6, 7, 4, 5, 6}, torch::kLong).unsqueeze(0);
}

torch::Tensor lm_loss(llm::DecoderLm& lm) {
  auto ids = toy_ids().to(lm->model->embed_tokens->weight.device());
  llm::DecoderInput in;
  in.input_ids = ids.narrow(1, 0, ids.size(1) - 1);
  auto logits = lm->logits(lm->forward_hidden(in))[0];                    // [T-1, V]
  return torch::nn::functional::cross_entropy(logits, ids[0].narrow(0, 1, ids.size(1) - 1));
}

TEST(LoraTest, FreshAdapterChangesNothingAndOnlyAdaptersTrain) {
  llm::DecoderLm lm = tiny_lm();
  lm->eval();
  const auto before = lm_loss(lm).item<float>();
  LoraOptions o;
  o.rank = 4;
  o.alpha = 8;
  o.target_modules = {"q_proj", "v_proj", "down_proj"};
  EXPECT_EQ(apply_lora(*lm, o), 6);                                        // 3 targets x 2 layers
  EXPECT_FLOAT_EQ(lm_loss(lm).item<float>(), before);                      // B = 0
  std::map<std::string, torch::Tensor> base;
  for (auto& p : lm->named_parameters())
    if (p.key().find(".lora_") == std::string::npos) base[p.key()] = p.value().detach().clone();
  std::vector<torch::Tensor> trainable;
  for (auto& p : lm->parameters())
    if (p.requires_grad()) trainable.push_back(p);
  EXPECT_EQ(trainable.size(), 12u);                                        // A and B of 6 layers
  torch::optim::Adam opt(trainable, torch::optim::AdamOptions(1e-2));
  lm->train();
  double first = 0, last = 0;
  for (int step = 0; step < 30; ++step) {
    opt.zero_grad();
    auto loss = lm_loss(lm);
    loss.backward();
    opt.step();
    (step == 0 ? first : last) = loss.item<double>();
  }
  EXPECT_LT(last, first * 0.7) << "LoRA training should lower the toy loss";
  for (auto& p : lm->named_parameters())
    if (base.count(p.key())) {
      EXPECT_TRUE(torch::equal(p.value(), base[p.key()])) << p.key() << " changed";
    }
}

TEST(LoraTest, MergeKeepsOutputsAndSaveLoadRoundTrips) {
  testing::TempDir dir;
  llm::DecoderLm lm = tiny_lm();
  LoraOptions o;
  o.rank = 2;
  o.alpha = 4;
  o.target_modules = {"q_proj", "gate_proj"};
  apply_lora(*lm, o);
  {
    torch::NoGradGuard no_grad;
    for (auto& p : lm->named_parameters())
      if (p.key().find("lora_B") != std::string::npos) p.value().normal_(0, 0.1);  // a "trained" adapter
  }
  lm->eval();
  const auto with_adapter = lm_loss(lm).item<float>();
  save_lora(*lm, o, dir.file("adapter.safetensors"));

  llm::DecoderLm fresh = tiny_lm();                                       // same seed: same base weights
  load_lora(*fresh, dir.file("adapter.safetensors"));
  fresh->eval();
  EXPECT_NEAR(lm_loss(fresh).item<float>(), with_adapter, 1e-6);
  EXPECT_TRUE(lora_state(*fresh)[0].first.rfind("base_model.model.model.layers.", 0) == 0);

  merge_lora(*lm);
  EXPECT_TRUE(lora_state(*lm).empty());
  EXPECT_NEAR(lm_loss(lm).item<float>(), with_adapter, 1e-5);
}

TEST(LoraTest, NoMatchingTargetIsAConfigError) {
  llm::DecoderLm lm = tiny_lm();
  LoraOptions o;
  o.target_modules = {"query_key_value"};
  ASSERT_THROWS_WITH(apply_lora(*lm, o), "no linear layer matched");
}

// Loss and gradients of one training step of the tiny LM on `device`, blocks checkpointed or not.
struct StepResult {
  float loss = 0;
  std::map<std::string, torch::Tensor> grads;
};

StepResult train_step(torch::Device device, double dropout, bool checkpoint, config::Precision precision) {
  torch::manual_seed(9);
  llm::DecoderConfig c = tiny_lm()->config();
  c.dropout = dropout;  // dropout masks must replay identically in the recomputation
  torch::manual_seed(9);
  llm::DecoderLm lm(c);
  lm->to(device);
  lm->gradient_checkpointing = checkpoint;
  llm::set_training_precision(*lm, precision, device, "train.precision");
  lm->train();
  torch::manual_seed(21);
  auto loss = lm_loss(lm);
  loss.backward();
  StepResult r;
  r.loss = loss.item<float>();
  for (auto& p : lm->named_parameters()) r.grads[p.key()] = p.value().grad().cpu().clone();
  return r;
}

void expect_checkpointing_changes_nothing(torch::Device device, config::Precision precision) {
  for (double dropout : {0.0, 0.3}) {
    const StepResult kept = train_step(device, dropout, false, precision);
    const StepResult recomputed = train_step(device, dropout, true, precision);
    EXPECT_FLOAT_EQ(kept.loss, recomputed.loss) << device << " " << config::name(precision) << " dropout " << dropout;
    for (auto& [name, g] : kept.grads)
      EXPECT_TRUE(torch::allclose(g, recomputed.grads.at(name), 1e-5, 1e-6))
          << name << " " << device << " " << config::name(precision) << " dropout " << dropout;
  }
}

TEST(GradientCheckpointingTest, SameGradientsAsKeepingActivations) {
  expect_checkpointing_changes_nothing(torch::kCPU, config::Precision::kFp32);
}

TEST(GradientCheckpointingTest, SameGradientsUnderBf16Autocast) {
  // The recomputation re-enters the forward's autocast: the same bfloat16 roundings, the same gradients.
  expect_checkpointing_changes_nothing(torch::kCPU, config::Precision::kBf16);
  // ... which do differ from float32 ones (the comparison above is not vacuous).
  EXPECT_NE(train_step(torch::kCPU, 0.0, true, config::Precision::kBf16).loss, train_step(torch::kCPU, 0.0, true, config::Precision::kFp32).loss);
}

TEST(GradientCheckpointingTest, SameGradientsOnTheGpu) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  expect_checkpointing_changes_nothing(torch::Device(torch::kCUDA, 0), config::Precision::kFp32);
  expect_checkpointing_changes_nothing(torch::Device(torch::kCUDA, 0), config::Precision::kBf16);
}

TEST(ResizeEmbeddingsTest, KeepsOldRowsAndStartsNewOnesAtTheMean) {
  llm::DecoderLm lm = tiny_lm();
  lm->eval();
  auto old_embed = lm->model->embed_tokens->weight.detach().clone();
  llm::DecoderInput in;
  in.input_ids = toy_ids();
  auto before = lm->logits(lm->forward_hidden(in)).detach();
  llm::resize_token_embeddings(*lm, 26);
  EXPECT_EQ(lm->config().vocab_size, 26);
  auto after = lm->logits(lm->forward_hidden(in)).detach();                 // [1, T, 26]
  EXPECT_TRUE(torch::allclose(after.narrow(2, 0, 20), before, 1e-6, 1e-6));
  EXPECT_TRUE(torch::allclose(lm->model->embed_tokens->weight[23], old_embed.mean(0), 1e-6, 1e-6));
  EXPECT_EQ(lm->named_parameters()["lm_head.weight"].size(0), 26);
}

}  // namespace
}  // namespace seqrec::nn
