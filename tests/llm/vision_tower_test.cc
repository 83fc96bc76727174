// CLIP / SigLIP / Qwen2-VL vision towers against a PyTorch transcription of transformers' modeling code
// (tests/reference/vision_tower_reference.py; its outputs are the fixtures), and Molar's use of them.
#include "seqrec/llm/vision_tower.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "seqrec/common/error.h"
#include "seqrec/common/safetensors.h"
#include "seqrec/nn/tensor_view.h"
#include "support.h"

namespace seqrec::llm {
namespace {

const std::string kFixtures = SEQREC_SOURCE_DIR "/tests/fixtures/vision/";

torch::Tensor fixture_tensor(const std::string& dir, const std::string& name) {
  return nn::tensor_view(SafetensorsFile::open(kFixtures + dir + "/expected.safetensors").get(name)).clone();
}

TEST(VisionTowerTest, ClipDualEncoderMatchesTheReferenceTo1e4) {
  VisionTower tower = load_vision_tower(kFixtures + "clip");
  const auto& c = tower->config();
  EXPECT_EQ(c.model_type, "clip_vision_model");  // read from vision_config of a model_type clip config
  EXPECT_EQ(c.hidden_act, "quick_gelu");
  EXPECT_EQ(c.num_patches(), 4);
  torch::NoGradGuard no_grad;
  auto out = tower->forward(fixture_tensor("clip", "pixels"));        // [2, 1 + 4, 16]
  auto want = fixture_tensor("clip", "last_hidden_state");
  ASSERT_EQ(out.sizes(), want.sizes());
  EXPECT_LT((out - want).abs().max().item<double>(), 1e-4);
  EXPECT_GT(want.abs().mean().item<double>(), 0.1);  // not a trivially small output
}

TEST(VisionTowerTest, SiglipMatchesTheReferenceTo1e4) {
  VisionTower tower = load_vision_tower(kFixtures + "siglip");  // its pooling head is in the file, not loaded
  EXPECT_TRUE(tower->config().siglip());
  EXPECT_EQ(tower->config().hidden_act, "gelu_pytorch_tanh");
  torch::NoGradGuard no_grad;
  auto out = tower->forward(fixture_tensor("siglip", "pixels"));      // [2, 4, 16]: no class token
  auto want = fixture_tensor("siglip", "last_hidden_state");
  ASSERT_EQ(out.sizes(), want.sizes());
  EXPECT_LT((out - want).abs().max().item<double>(), 1e-4);
}

// Qwen2-VL's tower on two 56 x 84 pictures (4 x 6 patches, 2 x 3 merged tokens each): the Conv3d
// patch embedding over a repeated frame, the window order, the 2-D rotary positions, attention
// inside each picture and the patch merger, against the reference's transcription of HF's
// processor flattening and modeling_qwen2_vl.py.
TEST(VisionTowerTest, Qwen2VlMatchesTheReferenceTo1e4) {
  VisionTower tower = load_vision_tower(kFixtures + "qwen2_vl");  // its language model's tensors are not loaded
  const auto& c = tower->config();
  EXPECT_TRUE(c.qwen2_vl());
  EXPECT_FALSE(c.has_class_token());
  EXPECT_EQ(c.hidden_size, 16);        // embed_dim
  EXPECT_EQ(c.intermediate_size, 32);  // embed_dim x mlp_ratio
  EXPECT_EQ(c.output_size(), 12);      // vision_config.hidden_size: the merger's output
  EXPECT_EQ(c.num_channels, 3);        // in_chans, as Qwen2-VL's released configs spell it
  EXPECT_EQ(tower->named_parameters().size(), 1u + 2 * 12 + 6);
  torch::NoGradGuard no_grad;
  auto out = tower->forward(fixture_tensor("qwen2_vl", "pixels"));   // [2, 6, 12]
  auto want = fixture_tensor("qwen2_vl", "merged_tokens");
  ASSERT_EQ(out.sizes(), want.sizes());
  EXPECT_LT((out - want).abs().max().item<double>(), 1e-4);
  EXPECT_GT(want.abs().mean().item<double>(), 0.1);
}

TEST(VisionTowerTest, BadFoldersGiveClearErrors) {
  seqrec::testing::TempDir dir;
  ASSERT_THROWS_WITH(read_vision_config(dir.path()), "config.json: no such file");
  dir.write("config.json", R"({"model_type": "vit", "hidden_size": 16})");
  ASSERT_THROWS_WITH(read_vision_config(dir.path()), "model_type 'vit' is not a supported vision tower");
  dir.write("config.json", R"({"model_type": "clip_vision_model", "image_size": 10, "patch_size": 4})");
  ASSERT_THROWS_WITH(read_vision_config(dir.path()), "patch_size must divide image_size");
  dir.write("config.json", R"({"model_type": "clip_vision_model", "hidden_size": 16, "intermediate_size": 32,
      "num_hidden_layers": 1, "num_attention_heads": 4, "image_size": 8, "patch_size": 4})");
  ASSERT_THROWS_WITH(load_vision_tower(dir.path()), "neither model.safetensors");
  dir.write("config.json", R"({"model_type": "qwen2_vl"})");
  ASSERT_THROWS_WITH(read_vision_config(dir.path()), "model_type qwen2_vl without a vision_config object");
  dir.write("config.json", R"({"model_type": "qwen2_vl", "vision_config": {"embed_dim": 16, "num_heads": 2,
      "image_size": 42}})");
  ASSERT_THROWS_WITH(read_vision_config(dir.path()), "image_size 42 must be a multiple of patch_size x spatial_merge_size = 28");
  dir.write("config.json", R"({"model_type": "qwen2_vl", "vision_config": {"embed_dim": 12, "num_heads": 2}})");
  ASSERT_THROWS_WITH(read_vision_config(dir.path()), "head size embed_dim / num_heads must be a multiple of 4");
}

}  // namespace
}  // namespace seqrec::llm
