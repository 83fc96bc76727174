// LLaMA-ID: causality, padding invariance, and the parameter-name pin.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "seqrec/config/config_node.h"
#include "seqrec/common/error.h"
#include "seqrec/config/options.h"
#include "seqrec/models/llama_id.h"
#include "seqrec/models/registry.h"
#include "seqrec/train/losses.h"
#include "support.h"

namespace seqrec::models {
namespace {

SequenceRecommender tiny(const std::string& extra = "") {
  torch::manual_seed(3);
  auto node = config::ConfigNode::parse("name: llama_id\nitem_dim: 8\nhidden_dim: 16\nnum_blocks: 2\nnum_heads: 2\n"
                                        "num_kv_heads: 1\ndropout: 0\n" + extra);
  auto model = make_model(node, ModelContext{9, 6, {}, ""});
  model->eval();
  return model;
}

torch::Tensor encode(SequenceRecommender& m, std::vector<int64_t> ids) {
  data::SequenceBatch b;
  b.item_ids = torch::tensor(ids, torch::kLong).view({1, -1});
  return m->encode(b);
}

TEST(LlamaIdTest, CausalAndPaddingInvariant) {
  auto m = tiny();
  torch::NoGradGuard no_grad;
  auto a = encode(m, {0, 0, 3, 4, 5, 6}), b = encode(m, {0, 0, 3, 4, 5, 9});
  EXPECT_TRUE(torch::allclose(a.narrow(1, 0, 5), b.narrow(1, 0, 5), 1e-6, 1e-7));
  EXPECT_FALSE(torch::allclose(a.narrow(1, 5, 1), b.narrow(1, 5, 1)));
  // Same sequence with less left padding: same outputs at the real positions (RoPE counts from the
  // first real item, padding keys are masked).
  auto c = encode(m, {3, 4, 5, 6});
  EXPECT_TRUE(torch::allclose(a.narrow(1, 2, 4), c, 1e-5, 1e-6));
  EXPECT_NEAR(a[0][5].norm().item<double>(), 1.0, 1e-5);
  EXPECT_EQ(m->all_item_embeddings().sizes(), (std::vector<int64_t>{10, 16}));
}

TEST(LlamaIdTest, ParameterNamesArePinned) {
  auto m = tiny();
  std::vector<std::string> names;
  for (const auto& p : m->named_parameters()) names.push_back(p.key());
  std::sort(names.begin(), names.end());
  std::vector<std::string> expected = {"item_embedding.weight", "item_proj.bias", "item_proj.weight", "norm.weight"};
  for (int i = 0; i < 2; ++i)
    for (const char* n : {"input_layernorm.weight", "mlp.down_proj.weight", "mlp.gate_proj.weight", "mlp.up_proj.weight",
                          "post_attention_layernorm.weight", "self_attn.k_proj.weight", "self_attn.o_proj.weight",
                          "self_attn.q_proj.weight", "self_attn.v_proj.weight"})
      expected.push_back("blocks." + std::to_string(i) + "." + n);
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(names, expected);
}

TEST(LlamaIdTest, BadHeadsAreConfigErrors) {
  ASSERT_THROWS_WITH(tiny("ffn_dim: 0\n"), "ffn_dim: must be >= 1");
  auto node = config::ConfigNode::parse("name: llama_id\nhidden_dim: 16\nnum_heads: 2\nnum_kv_heads: 3\n");
  ASSERT_THROWS_WITH(make_model(node, ModelContext{9, 6, {}, ""}), "must divide num_heads");
}


// ---- PerSRec's user tokens on LLaMA-ID (P 4, R 2, K 2 unless the insert method says otherwise) ----

std::shared_ptr<LlamaIdImpl> personalized(const std::string& insert = "[4, 2]") {
  torch::manual_seed(5);
  auto node = config::ConfigNode::parse(
      "name: llama_id\nitem_dim: 8\nhidden_dim: 16\nnum_blocks: 2\nnum_heads: 2\nnum_kv_heads: 1\ndropout: 0\n"
      "personalized:\n  number_of_user_tokens: 2\n  pretrain_item_num: 4\n  insert_method: " + insert + "\n");
  auto model = std::dynamic_pointer_cast<LlamaIdImpl>(make_model(node, ModelContext{5, 6, {}, ""}));
  EXPECT_TRUE(model);
  // Weights far from LLaMA's 0.02 init, so that old items move the recent outputs visibly (at the
  // init their effect through two attention hops is ~1e-7, below float noise).
  torch::NoGradGuard no_grad;
  for (auto& p : model->parameters())
    if (p.dim() >= 2) p.normal_(0.0, 0.4);
  return model;
}

data::SequenceBatch histories_batch() {
  data::SequenceBatch b;  // shorter than R, between R and P + R, a full window
  b.item_ids = torch::tensor({0, 0, 0, 0, 0, 3, 0, 0, 2, 5, 1, 4, 1, 2, 3, 4, 5, 1}, torch::kLong).view({3, 6});
  b.user_ids = torch::tensor({0, 1, 2}, torch::kLong);
  b.last_only = true;
  return b;
}

TEST(LlamaIdTest, UserTokensCachedPredictEqualsTheUncachedSegmentMaskedForward) {
  for (const std::string insert : {"[4, 2]", "[2, 1, 4, 1]"}) {
    auto model = personalized(insert);
    model->eval();
    torch::NoGradGuard no_grad;
    auto batch = histories_batch();
    auto uncached = model->encode(batch);                                   // [B, 1, D]
    ASSERT_EQ(uncached.sizes(), (std::vector<int64_t>{3, 1, 16}));
    auto cache = model->compress(batch);
    ASSERT_EQ(cache.keys.size(), 2u);
    EXPECT_EQ(cache.keys[0].sizes(), (std::vector<int64_t>{3, 1, 2, 8}));  // [B, Hkv, K, hd]
    auto cached = model->predict(batch, cache);
    EXPECT_TRUE(torch::allclose(cached, uncached, 1e-5, 1e-5)) << insert << " " << (cached - uncached).abs().max().item<float>();
    model->set_token_cache(std::make_shared<TokenCache>(cache));
    EXPECT_TRUE(torch::allclose(model->encode(batch), uncached, 1e-5, 1e-5));
    model->set_token_cache(nullptr);
    // The segment mask is real: the full row's output depends on its old items ...
    auto other = batch;
    other.item_ids = batch.item_ids.clone();
    other.item_ids[2][0] = 5;
    other.item_ids[2][1] = 5;
    const float moved = (model->encode(other).narrow(0, 2, 1) - uncached.narrow(0, 2, 1)).abs().max().item<float>();
    EXPECT_GT(moved, 1e-5) << insert;
    // ... but only through the tokens: with their keys and values zeroed, other old items give
    // bitwise the same output.
    auto zeroed = model->compress(other);
    for (auto* c : {&cache, &zeroed})
      for (size_t l = 0; l < c->keys.size(); ++l) c->keys[l].zero_(), c->values[l].zero_();
    EXPECT_TRUE(torch::equal(model->predict(batch, cache).narrow(0, 2, 1), model->predict(other, zeroed).narrow(0, 2, 1)));
    // A cache computed from other old items is refused.
    EXPECT_THROW(model->predict(other, model->compress(batch)), CheckpointError);
  }
}

TEST(LlamaIdTest, UserTokensAreTheBoundaryTargetAndAPinnedParameter) {
  auto model = personalized();
  EXPECT_EQ(model->batch_layout().boundary_target, 6);  // V + 1
  EXPECT_EQ(model->batch_layout().recent_item_num, 2);
  auto params = model->named_parameters();
  ASSERT_TRUE(params.contains("user_tokens"));
  EXPECT_EQ(params["user_tokens"].sizes(), (std::vector<int64_t>{1, 2, 16}));
  model->eval();
  auto e = model->item_embeddings(torch::tensor({6, 7, 3}, torch::kLong));
  auto t = params["user_tokens"][0];
  EXPECT_TRUE(torch::allclose(e[0], t[0] / t[0].norm(), 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(e[1], t[1] / t[1].norm(), 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(e[2], model->all_item_embeddings()[3], 1e-6, 1e-7));
  // Training: a loss whose last old item targets the first token reaches the tokens.
  model->train();
  data::SequenceBatch b;
  b.item_ids = torch::tensor({1, 2, 3, 4, 5, 1}, torch::kLong).view({1, 6});
  b.targets = torch::tensor({2, 3, 4, 6, 1, 2}, torch::kLong).view({1, 6});
  b.negatives = torch::tensor({5, 5, 5, 5, 4, 4}, torch::kLong).view({1, 6, 1});
  b.user_ids = torch::tensor({0}, torch::kLong);
  config::LossOptions loss;
  loss.name = config::LossName::kBce;
  train::compute_loss(*model, b, loss).backward();
  EXPECT_GT(params["user_tokens"].grad().abs().sum().item<float>(), 0.f);
}

}  // namespace
}  // namespace seqrec::models
