// train.init_from: renamed, missing and unexpected tensors, shape mismatches and the config reader.
#include "seqrec/train/init_from.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "seqrec/config/config_node.h"
#include "seqrec/train/checkpoint.h"
#include "support.h"

namespace seqrec::train {
namespace {

struct Toy : torch::nn::Module {
  Toy() {
    encoder = register_module("encoder", torch::nn::Linear(2, 3));
    head = register_parameter("head", torch::zeros({3}));
  }
  torch::nn::Linear encoder{nullptr};
  torch::Tensor head;
};

TEST(InitFromTest, RenamedTensorsLoadMissingOnesKeepTheirInitAndUnexpectedOnesAreListed) {
  seqrec::testing::TempDir dir;
  const std::string path = dir.file("other.safetensors");
  auto w = torch::arange(6, torch::kFloat32).view({3, 2});
  auto b = torch::tensor({7.0f, 8.0f, 9.0f});
  save_tensors(path, {{"sr.video_encoder.weight", w}, {"sr.video_encoder.bias", b}, {"llm.lora_a", torch::ones({2})}}, {});
  torch::manual_seed(0);
  Toy toy;
  InitFromOptions o;
  o.checkpoint = path;
  o.name_map = {{"sr.video_encoder.", "encoder."}};
  const InitFromReport r = init_from_checkpoint(toy, o);
  EXPECT_EQ(r.loaded, (std::vector<std::string>{"encoder.bias", "encoder.weight"}));
  EXPECT_EQ(r.missing, (std::vector<std::string>{"head"}));
  EXPECT_EQ(r.unexpected, (std::vector<std::string>{"llm.lora_a"}));
  EXPECT_TRUE(toy.encoder->weight.equal(w));
  EXPECT_TRUE(toy.encoder->bias.equal(b));
  EXPECT_TRUE(toy.head.equal(torch::zeros({3})));  // kept as initialised
}

TEST(InitFromTest, NameMapTakesTheFirstMatchingPrefix) {
  const std::vector<std::pair<std::string, std::string>> map = {{"sr.", ""}, {"s", "t"}, {"", "model."}};
  EXPECT_EQ(map_tensor_name("sr.encoder.w", map), "encoder.w");
  EXPECT_EQ(map_tensor_name("sx", map), "tx");
  EXPECT_EQ(map_tensor_name("head", map), "model.head");
}

TEST(InitFromTest, ShapeMismatchAndNoMatchAtAllAreCheckpointErrors) {
  seqrec::testing::TempDir dir;
  Toy toy;
  InitFromOptions o;
  o.checkpoint = dir.file("a.safetensors");
  save_tensors(o.checkpoint, {{"head", torch::zeros({4})}}, {});
  ASSERT_THROWS_WITH(init_from_checkpoint(toy, o), "tensor 'head': the model has shape [3], the checkpoint [4]");
  save_tensors(o.checkpoint, {{"other", torch::zeros({4})}}, {});
  ASSERT_THROWS_WITH(init_from_checkpoint(toy, o), "no tensor name matches the model (check train.init_from.name_map)");
  o.checkpoint = dir.file("absent.safetensors");
  ASSERT_THROWS_WITH(init_from_checkpoint(toy, o), "absent.safetensors: no such checkpoint file");
}

TEST(InitFromTest, ConfigReaderParsesPrefixRenames) {
  auto root = config::ConfigNode::parse("train: {init_from: {checkpoint: x.safetensors, name_map: ['sr.=', 'a=b.']}}");
  const InitFromOptions o = read_init_from_options(root.child("train"));
  EXPECT_EQ(o.checkpoint, "x.safetensors");
  ASSERT_EQ(o.name_map.size(), 2u);
  EXPECT_EQ(o.name_map[0], (std::pair<std::string, std::string>{"sr.", ""}));
  EXPECT_EQ(o.name_map[1], (std::pair<std::string, std::string>{"a", "b."}));
  auto bad = config::ConfigNode::parse("train: {init_from: {checkpoint: x, name_map: ['nothing']}}");
  ASSERT_THROWS_WITH(read_init_from_options(bad.child("train")), "train.init_from.name_map: expected 'from=to'");
  auto none = config::ConfigNode::parse("train: {epochs: 1}");
  EXPECT_TRUE(read_init_from_options(none.child("train")).checkpoint.empty());
}

}  // namespace
}  // namespace seqrec::train
