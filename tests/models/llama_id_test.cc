// LLaMA-ID: causality, padding invariance, and the parameter-name pin.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "seqrec/config/config_node.h"
#include "seqrec/models/registry.h"
#include "support.h"

namespace seqrec::models {
namespace {

SequenceRecommender tiny(const std::string& extra = "") {
  torch::manual_seed(3);
  auto node = config::ConfigNode::parse("name: llama_id\nitem_dim: 8\nhidden_dim: 16\nnum_blocks: 2\nnum_heads: 2\n"
                                        "num_kv_heads: 1\ndropout: 0\n" + extra);
  auto model = make_model(node, ModelContext{9, 6, {}});
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
  ASSERT_THROWS_WITH(make_model(node, ModelContext{9, 6, {}}), "must divide num_heads");
}

}  // namespace
}  // namespace seqrec::models
