// Decoder LM: the real stories260K checkpoint against reference logits and greedy text (skipped
// without ../shared), and self-written tiny checkpoints (tied/untied, sharded, Qwen2 biases).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "seqrec/common/fs.h"
#include "seqrec/llm/decoder_lm.h"
#include "seqrec/train/checkpoint.h"
#include "support.h"

namespace seqrec::llm {
namespace {

const std::string kStories = SEQREC_SOURCE_DIR "/../shared/models/stories260K";

std::vector<int64_t> greedy(DecoderLm& lm, std::vector<int64_t> ids, int64_t steps) {
  torch::NoGradGuard no_grad;
  DecoderCache cache;
  DecoderInput in;
  in.input_ids = torch::tensor(ids, torch::kLong).unsqueeze(0);
  std::vector<int64_t> out;
  for (int64_t s = 0; s < steps; ++s) {
    auto h = lm->forward_hidden(in, &cache);                               // [1, T, D]
    const int64_t next = lm->logits(h.select(1, h.size(1) - 1)).argmax(-1).item<int64_t>();
    out.push_back(next);
    in.input_ids = torch::tensor({next}, torch::kLong).unsqueeze(0);
  }
  return out;
}

TEST(DecoderLmTest, Stories260KLogitsMatchReference) {
  if (!path_exists(kStories + "/hf/config.json")) GTEST_SKIP() << "no " << kStories;
  auto expected = nlohmann::json::parse(read_file(kStories + "/expected/once_upon_a_time.json"));
  DecoderLm lm = load_decoder_lm(kStories + "/hf");
  std::vector<int64_t> ids = expected["prompt_ids_with_bos"].get<std::vector<int64_t>>();
  torch::NoGradGuard no_grad;
  DecoderInput in;
  in.input_ids = torch::tensor(ids, torch::kLong).unsqueeze(0);
  auto logits = lm->logits(lm->forward_hidden(in))[0];                     // [T, V]
  double max_diff = 0;
  for (size_t t = 0; t < ids.size(); ++t) {
    auto want = torch::tensor(expected["logits"][t].get<std::vector<float>>());
    max_diff = std::max(max_diff, (logits[t] - want).abs().max().item<double>());
  }
  EXPECT_LT(max_diff, 1e-4) << "max |logit - reference|";
  RecordProperty("max_abs_logit_diff", std::to_string(max_diff));
}

TEST(DecoderLmTest, Stories260KGreedyMatchesReferenceWithKvCache) {
  if (!path_exists(kStories + "/hf/config.json")) GTEST_SKIP() << "no " << kStories;
  auto expected = nlohmann::json::parse(read_file(kStories + "/expected/once_upon_a_time.json"));
  DecoderLm lm = load_decoder_lm(kStories + "/hf");
  std::vector<int64_t> prompt = expected["prompt_ids_with_bos"].get<std::vector<int64_t>>();
  std::vector<int64_t> want = expected["greedy_ids"].get<std::vector<int64_t>>();
  // greedy_ids may include the prompt; compare the continuation.
  std::vector<int64_t> continuation(want.begin() + (want.size() > 256 && want[0] == prompt[0] ? prompt.size() : 0), want.end());
  auto got = greedy(lm, prompt, static_cast<int64_t>(continuation.size()));
  EXPECT_EQ(got, continuation);
}

DecoderConfig tiny_config(const std::string& type, bool tied) {
  DecoderConfig c;
  c.model_type = type;
  c.vocab_size = 40;
  c.hidden_size = 16;
  c.intermediate_size = 24;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 4;
  c.tie_word_embeddings = tied;
  c.attention_bias = type == "qwen2";
  return c;
}

void write_config(const std::string& dir, const DecoderConfig& c) {
  nlohmann::json j = {{"model_type", c.model_type}, {"vocab_size", c.vocab_size}, {"hidden_size", c.hidden_size},
                      {"intermediate_size", c.intermediate_size}, {"num_hidden_layers", c.num_layers},
                      {"num_attention_heads", c.num_heads}, {"num_key_value_heads", c.num_kv_heads},
                      {"rms_norm_eps", 1e-6}, {"rope_theta", 10000.0}, {"tie_word_embeddings", c.tie_word_embeddings}};
  std::ofstream(dir + "/config.json") << j.dump();
}

torch::Tensor run(DecoderLm& lm) {
  torch::NoGradGuard no_grad;
  DecoderInput in;
  in.input_ids = torch::tensor({{1, 5, 7, 9, 3}}, torch::kLong);
  return lm->logits(lm->forward_hidden(in));
}

TEST(DecoderLmTest, LoadsSelfWrittenCheckpointsTiedUntiedShardedAndQwen2) {
  for (const auto& [type, tied, sharded] : std::vector<std::tuple<std::string, bool, bool>>{
           {"llama", true, false}, {"llama", false, false}, {"qwen2", false, true}, {"mistral", true, true}}) {
    testing::TempDir dir;
    torch::manual_seed(5);
    DecoderConfig c = tiny_config(type, tied);
    DecoderLm source(c);
    write_config(dir.path(), c);
    train::NamedTensors state = train::model_state(*source);
    if (!sharded) {
      train::save_tensors(dir.file("model.safetensors"), state, {{"format", "pt"}});
    } else {
      train::NamedTensors a(state.begin(), state.begin() + state.size() / 2), b(state.begin() + state.size() / 2, state.end());
      train::save_tensors(dir.file("model-00001-of-00002.safetensors"), a, {});
      train::save_tensors(dir.file("model-00002-of-00002.safetensors"), b, {});
      nlohmann::json index = {{"metadata", nlohmann::json::object()}, {"weight_map", nlohmann::json::object()}};
      for (auto& [n, t] : a) index["weight_map"][n] = "model-00001-of-00002.safetensors";
      for (auto& [n, t] : b) index["weight_map"][n] = "model-00002-of-00002.safetensors";
      std::ofstream(dir.file("model.safetensors.index.json")) << index.dump();
    }
    DecoderLm loaded = load_decoder_lm(dir.path());
    EXPECT_TRUE(torch::allclose(run(source), run(loaded))) << type << " tied=" << tied << " sharded=" << sharded;
    if (type == "qwen2") {
      EXPECT_TRUE(loaded->named_parameters().contains("model.layers.0.self_attn.q_proj.bias"));
    }
  }
}

// Qwen2-VL's language model is Qwen2 with M-RoPE, which over text is plain RoPE: a Qwen2-VL folder
// (text fields top-level as released, or under text_config as newer transformers save them;
// rope_scaling mrope; its vision tower's visual.* tensors beside) gives the Qwen2 folder's logits.
TEST(DecoderLmTest, Qwen2VlFoldersLoadTheirLanguageModelAsQwen2) {
  torch::manual_seed(9);
  const DecoderConfig c = tiny_config("qwen2", true);
  DecoderLm source(c);
  train::NamedTensors state = train::model_state(*source);
  state.emplace_back("visual.blocks.0.attn.qkv.weight", torch::randn({6, 2}));
  state.emplace_back("visual.merger.mlp.2.weight", torch::randn({16, 8}));
  nlohmann::json text = {{"vocab_size", c.vocab_size}, {"hidden_size", c.hidden_size},
                         {"intermediate_size", c.intermediate_size}, {"num_hidden_layers", c.num_layers},
                         {"num_attention_heads", c.num_heads}, {"num_key_value_heads", c.num_kv_heads},
                         {"rms_norm_eps", 1e-6}, {"rope_theta", 10000.0}, {"tie_word_embeddings", true},
                         {"rope_scaling", {{"type", "mrope"}, {"mrope_section", {1, 0, 1}}}}};
  const nlohmann::json vision = {{"depth", 1}, {"embed_dim", 8}, {"hidden_size", 16}};
  nlohmann::json released = text, nested = {{"model_type", "qwen2_vl"}, {"text_config", text}, {"vision_config", vision}};
  released["model_type"] = "qwen2_vl";
  released["vision_config"] = vision;
  nested["hidden_size"] = 99;  // a stale top-level field: text_config wins
  for (const nlohmann::json& config : {released, nested}) {
    testing::TempDir dir;
    std::ofstream(dir.file("config.json")) << config.dump();
    train::save_tensors(dir.file("model.safetensors"), state, {});
    DecoderLm loaded = load_decoder_lm(dir.path());
    EXPECT_EQ(loaded->config().model_type, "qwen2_vl");
    EXPECT_TRUE(loaded->config().attention_bias);  // Qwen2's q/k/v biases
    EXPECT_TRUE(torch::equal(run(source), run(loaded)));
  }
  // M-RoPE is accepted from Qwen2-VL only; a Qwen2 folder's unexpected visual.* tensors are still named.
  testing::TempDir dir;
  nlohmann::json qwen2 = text;
  qwen2["model_type"] = "qwen2";
  std::ofstream(dir.file("config.json")) << qwen2.dump();
  train::save_tensors(dir.file("model.safetensors"), state, {});
  ASSERT_THROWS_WITH(load_decoder_lm(dir.path()), "rope_scaling type 'mrope' is not supported (llama3)");
  qwen2.erase("rope_scaling");
  std::ofstream(dir.file("config.json")) << qwen2.dump();
  ASSERT_THROWS_WITH(load_decoder_lm(dir.path()), "unexpected: visual.blocks.0.attn.qkv.weight");
}

// M-RoPE by hand: head_dim 8 (inverse frequencies 1, 0.1, 0.01, 0.001), sections [1, 1, 2] cut
// the channels into [1, 1, 2, 1, 1, 2]: channel 0 and 4 rotate by the temporal position, 1 and 5
// by the row, 2, 3, 6, 7 by the column.
TEST(DecoderLmTest, MultimodalRotaryTakesEachChannelChunkFromItsPositionRow) {
  const torch::Tensor inv = nn::rope_inverse_frequencies(8, 10000.0);
  const torch::Tensor positions = torch::tensor({2, 5, 7}, torch::kLong).view({3, 1, 1});
  const nn::Rotary r = multimodal_rotary(positions, inv, {1, 1, 2});
  ASSERT_EQ(r.cos.sizes(), (std::vector<int64_t>{1, 1, 8}));
  const double angle[] = {2 * 1.0, 5 * 0.1, 7 * 0.01, 7 * 0.001};
  for (int64_t c = 0; c < 8; ++c) {
    EXPECT_NEAR(r.cos[0][0][c].item<double>(), std::cos(angle[c % 4]), 1e-6) << c;
    EXPECT_NEAR(r.sin[0][0][c].item<double>(), std::sin(angle[c % 4]), 1e-6) << c;
  }
}

// Qwen2-VL's language model with image tokens at (t, row, column) positions, against the
// transcription of modeling_qwen2_vl.py (tests/reference/qwen2_vl_mrope_reference.py: 3 text
// tokens, a 2 x 3 image grid, 2 text tokens, random weights and input embeddings). The same
// inputs with 1-D positions move the reference output by 1.4: the test sees the image positions.
TEST(DecoderLmTest, Qwen2VlMropeMatchesTheReference) {
  const std::string dir = SEQREC_SOURCE_DIR "/tests/fixtures/qwen2_vl_lm";
  DecoderLm lm = load_decoder_lm(dir);
  EXPECT_EQ(lm->config().mrope_section, (std::vector<int64_t>{1, 1, 2}));
  lm->eval();
  torch::NoGradGuard no_grad;
  const train::NamedTensors expected = train::load_tensors(dir + "/expected.safetensors", nullptr);
  auto get = [&](const std::string& name) {
    for (const auto& [n, t] : expected)
      if (n == name) return t;
    ADD_FAILURE() << "no " << name;
    return torch::Tensor();
  };
  DecoderInput in;
  in.inputs_embeds = get("inputs_embeds");
  in.positions = get("position_ids").to(torch::kLong);  // [3, 1, 11]
  EXPECT_TRUE(in.positions[1][0].narrow(0, 3, 6).equal(torch::tensor({3, 3, 3, 4, 4, 4}, torch::kLong)));  // rows
  const torch::Tensor hidden = lm->forward_hidden(in);
  EXPECT_LT((hidden - get("hidden")).abs().max().item<double>(), 1e-4);
  in.positions = in.positions + 40;  // rotary attention sees differences only
  EXPECT_LT((lm->forward_hidden(in) - get("hidden")).abs().max().item<double>(), 1e-4);
  in.positions = torch::arange(11, torch::kLong).view({1, 11});  // 1-D: another output
  EXPECT_GT((lm->forward_hidden(in) - get("hidden")).abs().max().item<double>(), 0.1);
  // [3, B, T] positions on a model without M-RoPE are refused.
  DecoderLm plain(tiny_config("llama", false));
  DecoderInput three;
  three.input_ids = torch::zeros({1, 2}, torch::kLong);
  three.positions = torch::zeros({3, 1, 2}, torch::kLong);
  ASSERT_THROWS_WITH(plain->forward_hidden(three), "[3, B, T] positions are M-RoPE's");
}

// A bad mrope_section is named with the sum it must have.
TEST(DecoderLmTest, MropeSectionMustCoverHalfTheHeadDim) {
  testing::TempDir dir;
  nlohmann::json config = nlohmann::json::parse(read_file(SEQREC_SOURCE_DIR "/tests/fixtures/qwen2_vl_lm/config.json"));
  config["rope_scaling"]["mrope_section"] = {1, 1, 1};
  std::ofstream(dir.file("config.json")) << config.dump();
  ASSERT_THROWS_WITH(read_decoder_config(dir.path()),
                     "rope_scaling.mrope_section must be 3 non-negative counts summing to head_dim / 2 = 4, got [1,1,1]");
}

TEST(DecoderLmTest, LoadsHalfAndBfloat16Checkpoints) {
  for (auto dtype : {torch::kHalf, torch::kBFloat16}) {
    testing::TempDir dir;
    torch::manual_seed(7);
    DecoderConfig c = tiny_config("llama", false);
    DecoderLm source(c);
    write_config(dir.path(), c);
    train::NamedTensors state;
    for (auto& [n, t] : train::model_state(*source)) state.emplace_back(n, t.detach().to(dtype));
    train::save_tensors(dir.file("model.safetensors"), state, {});
    DecoderLm loaded = load_decoder_lm(dir.path());
    // Parameters hold exactly the rounded values; outputs agree to the rounding of the weights.
    for (auto& [n, t] : state) EXPECT_TRUE(torch::equal(loaded->named_parameters()[n], t.to(torch::kFloat))) << n;
    const double tol = dtype == torch::kHalf ? 1e-2 : 5e-2;
    EXPECT_TRUE(torch::allclose(run(source), run(loaded), tol, tol)) << c10::toString(dtype);
  }
}

TEST(DecoderLmTest, WrongShapeNamesTensorAndShapes) {
  testing::TempDir dir;
  DecoderConfig c = tiny_config("llama", true);
  DecoderLm source(c);
  write_config(dir.path(), c);
  train::NamedTensors state = train::model_state(*source);
  for (auto& [n, t] : state)
    if (n == "model.norm.weight") t = torch::ones({7});
  train::save_tensors(dir.file("model.safetensors"), state, {});
  ASSERT_THROWS_WITH(load_decoder_lm(dir.path()), "tensor 'model.norm.weight': expected shape [16], got [7]");
}

TEST(DecoderLmTest, Llama3RopeScalingMatchesHandValues) {
  DecoderConfig c;
  c.head_dim = 8;
  c.rope_theta = 10000;
  c.rope_factor = 8;
  c.rope_low_freq_factor = 1;
  c.rope_high_freq_factor = 4;
  c.rope_original_max_position = 64;
  auto inv = decoder_inverse_frequencies(c);
  // Base frequencies 1, 0.1, 0.01, 0.001 (theta^(-2i/8)); wavelengths 2pi/f = 6.28, 62.8, 628, 6283.
  // high_wavelen = 64/4 = 16, low_wavelen = 64/1 = 64: f0 kept; f1 (62.8, between) smoothed with
  // s = (64/62.83 - 1) / (4 - 1) = 0.006237: (1 - s) * 0.1 / 8 + s * 0.1; f2, f3 divided by 8.
  const double s = (64.0 / (2 * M_PI / 0.1) - 1.0) / 3.0;
  EXPECT_NEAR(inv[0].item<double>(), 1.0, 1e-6);
  EXPECT_NEAR(inv[1].item<double>(), (1 - s) * 0.1 / 8 + s * 0.1, 1e-7);
  EXPECT_NEAR(inv[2].item<double>(), 0.01 / 8, 1e-8);
  EXPECT_NEAR(inv[3].item<double>(), 0.001 / 8, 1e-9);
}

TEST(DecoderLmTest, InputsEmbedsEqualTokenIds) {
  torch::manual_seed(10);
  DecoderLm lm(tiny_config("qwen2", false));
  lm->eval();
  torch::NoGradGuard no_grad;
  DecoderInput by_ids, by_embeds;
  by_ids.input_ids = torch::tensor({{1, 5, 7}}, torch::kLong);
  by_embeds.inputs_embeds = lm->model->embed_tokens(by_ids.input_ids);
  EXPECT_TRUE(torch::allclose(lm->forward_hidden(by_ids), lm->forward_hidden(by_embeds)));
}

TEST(DecoderLmTest, MissingAndUnexpectedTensorsAreListed) {
  testing::TempDir dir;
  DecoderConfig c = tiny_config("llama", true);
  DecoderLm source(c);
  write_config(dir.path(), c);
  train::NamedTensors state = train::model_state(*source);
  state.erase(state.begin());                                    // drop one tensor
  state.emplace_back("model.layers.9.extra.weight", torch::zeros({2}));
  train::save_tensors(dir.file("model.safetensors"), state, {});
  ASSERT_THROWS_WITH(load_decoder_lm(dir.path()), "missing: ");
  ASSERT_THROWS_WITH(load_decoder_lm(dir.path()), "unexpected: model.layers.9.extra.weight");
}

TEST(DecoderLmTest, KvCacheDecodingEqualsFullForward) {
  torch::manual_seed(6);
  DecoderLm lm(tiny_config("llama", false));
  lm->eval();
  auto full = run(lm);                                           // [1, 5, V]
  torch::NoGradGuard no_grad;
  DecoderCache cache;
  std::vector<int64_t> ids = {1, 5, 7, 9, 3};
  for (size_t t = 0; t < ids.size(); ++t) {
    DecoderInput in;
    in.input_ids = torch::tensor({ids[t]}, torch::kLong).unsqueeze(0);
    auto step = lm->logits(lm->forward_hidden(in, &cache));      // [1, 1, V]
    EXPECT_TRUE(torch::allclose(step[0][0], full[0][t], 1e-5, 1e-5)) << "position " << t;
  }
}

TEST(DecoderLmTest, BadConfigNamesFileAndField) {
  testing::TempDir dir;
  std::ofstream(dir.file("config.json")) << R"({"model_type": "gpt2", "vocab_size": 3})";
  ASSERT_THROWS_WITH(read_decoder_config(dir.path()), "model_type 'gpt2' is not supported");
  std::ofstream(dir.file("config.json")) << R"({"model_type": "llama", "vocab_size": 3})";
  ASSERT_THROWS_WITH(read_decoder_config(dir.path()), "required field 'hidden_size' is missing");
  ASSERT_THROWS_WITH(read_decoder_config(dir.file("nope")), "no such file");
  // Sizes that LibTorch would reject with a backtrace (or allocate without end) are named.
  const std::string base = R"({"model_type": "llama", "vocab_size": 32, "hidden_size": 8, "intermediate_size": 16,
                               "num_hidden_layers": 1, "num_attention_heads": 2)";
  std::ofstream(dir.file("config.json")) << base << R"(, "head_dim": 0})";
  ASSERT_THROWS_WITH(read_decoder_config(dir.path()), "config.json: head_dim must be in [1, 2^31], got 0");
  std::ofstream(dir.file("config.json")) << base << R"(, "head_dim": 3})";
  ASSERT_THROWS_WITH(read_decoder_config(dir.path()), "head_dim must be even (rotary positions rotate pairs), got 3");
  std::ofstream(dir.file("config.json")) << base << R"(, "max_position_embeddings": -1})";
  ASSERT_THROWS_WITH(read_decoder_config(dir.path()), "max_position_embeddings must be in [1, 2^31], got -1");
  std::ofstream(dir.file("config.json")) << base << "}";
  EXPECT_EQ(read_decoder_config(dir.path()).head_dim, 4);
}

/// A token id outside the vocabulary (text tokenized with another tokenizer) is a DataError that
/// says so, not LibTorch's "index out of range" backtrace.
TEST(DecoderLmTest, TokenIdsOutsideTheVocabularyAreRefused) {
  DecoderLm lm(tiny_config("llama", true));
  DecoderInput in;
  const int64_t v = lm->config().vocab_size;
  in.input_ids = torch::tensor({int64_t{1}, v}, torch::kLong).unsqueeze(0);
  ASSERT_THROWS_WITH(lm->forward_hidden(in), "token id " + std::to_string(v) + " is outside the model's vocabulary");
  in.input_ids = torch::tensor({int64_t{-1}, int64_t{2}}, torch::kLong).unsqueeze(0);
  ASSERT_THROWS_WITH(lm->forward_hidden(in), "token id -1 is outside");
  in.input_ids = torch::tensor({int64_t{0}, v - 1}, torch::kLong).unsqueeze(0);
  EXPECT_EQ(lm->forward_hidden(in).size(1), 2);
}

}  // namespace
}  // namespace seqrec::llm
