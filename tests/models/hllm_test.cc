// HLLM: item texts, packed item-LLM execution, the nce loss, gradients and the evaluation cache.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>

#include "llm/tokenizer_fixtures.h"
#include "seqrec/common/error.h"
#include "seqrec/common/hash.h"
#include "seqrec/config/config_node.h"
#include "seqrec/data/item_catalog.h"
#include "seqrec/data/item_text.h"
#include "seqrec/llm/precision.h"
#include "seqrec/llm/tokenizer.h"
#include "seqrec/models/hllm.h"
#include "seqrec/models/registry.h"
#include "seqrec/nn/llama_block.h"
#include "seqrec/train/losses.h"
#include "seqrec/train/optim.h"
#include "support.h"

namespace seqrec::models {
namespace {

using seqrec::testing::TempDir;

// A prepared-directory stand-in: items.tsv with titles and tags, and a byte-level tokenizer whose ids
// are the UTF-8 bytes (no merges apply to the texts below), so token ids can be written by hand.
struct TextFixture {
  TempDir dir;
  data::ItemTextOptions options;
  TextFixture() {
    dir.write("items.tsv",
              "item_id\traw_id\ttitle\ttag\n"
              "1\ta\tRed lipstick\tmakeup\n"
              "2\tb\tBlue nail polish\tnails\n"
              "3\tc\t\tnails\n"
              "4\td\tDry shampoo for curly manes\thair\n"
              "5\te\tRose soap\tbath\n");
    dir.write("tokenizer.json", seqrec::testing::tiny_byte_level().dump());
    options.tokenizer = dir.path();
    options.text_keys = {"title", "tag"};
    options.prompt = "Item: ";
    options.max_text_length = 24;
  }
  data::ItemTokens tokens() const {
    return data::ItemTokens::build(data::ItemCatalog::load(dir.path()), *llm::load_tokenizer(dir.path()), options);
  }
};

std::vector<int64_t> bytes_of(const std::string& s) { return std::vector<int64_t>(s.begin(), s.end()); }

TEST(ItemText, TextTokensAndPositionsOfAKnownItem) {
  TextFixture f;
  auto catalog = data::ItemCatalog::load(f.dir.path());
  // No separator between fields, exactly as HLLM codes it; empty fields are left out.
  EXPECT_EQ(data::item_text(catalog, 1, f.options), "Item: title: Red lipsticktag: makeup");
  EXPECT_EQ(data::item_text(catalog, 3, f.options), "Item: tag: nails");
  auto t = f.tokens();
  ASSERT_EQ(t.num_items(), 5);
  auto span = t.tokens(3);
  EXPECT_EQ(std::vector<int64_t>(span.begin(), span.end()), bytes_of("Item: tag: nails"));
  auto one = t.tokens(1);  // 36 bytes, truncated to max_text_length 24
  EXPECT_EQ(std::vector<int64_t>(one.begin(), one.end()), bytes_of(std::string("Item: title: Red lipsticktag: makeup").substr(0, 24)));
  // Right-aligned positions: m tokens + [ITEM] -> (L - m) .. L, the [ITEM] slot always at L.
  EXPECT_EQ(data::item_positions(16, 24), (std::vector<int64_t>{8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21,
                                                                22, 23, 24}));
  EXPECT_EQ(data::item_positions(24, 24).front(), 0);
  EXPECT_EQ(data::item_positions(24, 24).back(), 24);
  // M-RoPE (Qwen2-VL's get_rope_index): 2 text tokens, 1 word before, a 2 x 3 image, 1 word after,
  // [ITEM]; E = 1 + max(2, 3) + 1 = 5, so the [ITEM] slot sits at L + 5 = 15 and the text starts at
  // 15 - 2 - 5 = 8; the image starts at s = 11 and the word after it at s + 3 = 14.
  const auto m = data::item_positions_mrope(2, 1, 2, 3, 1, 10);
  EXPECT_EQ(m[0], (std::vector<int64_t>{8, 9, 10, 11, 11, 11, 11, 11, 11, 14, 15}));  // t
  EXPECT_EQ(m[1], (std::vector<int64_t>{8, 9, 10, 11, 11, 11, 12, 12, 12, 14, 15}));  // rows
  EXPECT_EQ(m[2], (std::vector<int64_t>{8, 9, 10, 11, 12, 13, 11, 12, 13, 14, 15}));  // columns
}

TEST(ItemText, FileRoundTripAndCorruption) {
  TextFixture f;
  auto t = f.tokens();
  const std::string path = f.dir.file("item_tokens.bin");
  t.save(path);
  auto back = data::ItemTokens::load(path);
  ASSERT_EQ(back.num_items(), t.num_items());
  EXPECT_EQ(back.max_text_length(), 24);
  EXPECT_EQ(back.vocab_size(), t.vocab_size());
  for (int64_t i = 1; i <= t.num_items(); ++i) {
    auto a = t.tokens(i), b = back.tokens(i);
    EXPECT_EQ(std::vector<int32_t>(a.begin(), a.end()), std::vector<int32_t>(b.begin(), b.end()));
  }
  ASSERT_THROWS_WITH(back.tokens(6), "item 6 has no text tokens");
  std::ifstream in(path, std::ios::binary);
  std::string content((std::istreambuf_iterator<char>(in)), {});
  f.dir.write("short.bin", content.substr(0, content.size() - 9));
  ASSERT_THROWS_WITH(data::ItemTokens::load(f.dir.file("short.bin")), "short.bin");
  std::string flipped = content;
  flipped[flipped.size() - 20] ^= 1;
  f.dir.write("flipped.bin", flipped);
  ASSERT_THROWS_WITH(data::ItemTokens::load(f.dir.file("flipped.bin")), "checksum mismatch");
  ASSERT_THROWS_WITH(data::ItemTokens::load(f.dir.file("missing.bin")), "prepare.item_text");
  f.options.text_keys = {"title", "brand"};
  ASSERT_THROWS_WITH(f.tokens(), "'brand' is not a column of the item table (columns: title, tag)");
}

// Molar's words around the image soft tokens: each tokenised alone (no BOS), stored once in the file.
TEST(ItemText, ImageWordsAreTokenisedAloneRoundTripAndVersionOneFilesStillLoad) {
  TextFixture f;
  const std::string plain_path = f.dir.file("plain.bin");
  f.tokens().save(plain_path);
  f.options.image_before = ". Item Image: ";
  f.options.image_after = ". ";
  auto t = f.tokens();
  auto as64 = [](const std::vector<int32_t>& v) { return std::vector<int64_t>(v.begin(), v.end()); };
  EXPECT_EQ(as64(t.image_before()), bytes_of(". Item Image: "));
  EXPECT_EQ(as64(t.image_after()), bytes_of(". "));
  auto span = t.tokens(3);  // the item texts themselves do not change
  EXPECT_EQ(std::vector<int64_t>(span.begin(), span.end()), bytes_of("Item: tag: nails"));
  const std::string path = f.dir.file("words.bin");
  t.save(path);
  auto back = data::ItemTokens::load(path);
  EXPECT_EQ(back.image_before(), t.image_before());
  EXPECT_EQ(back.image_after(), t.image_after());
  EXPECT_NE(back.description().find("image_words=[. Item Image: ][. ]"), std::string::npos) << back.description();
  // A version 1 file (written before the image words: no counts after the description) loads without them.
  std::ifstream in(plain_path, std::ios::binary);
  std::string v2((std::istreambuf_iterator<char>(in)), {});
  int64_t desc = 0;
  std::memcpy(&desc, v2.data() + 48, sizeof desc);                       // after magic, 2 x u32, 5 x i64
  std::string v1 = v2.substr(0, 56 + desc) + v2.substr(56 + desc + 16, v2.size() - (56 + desc + 16) - 8);
  v1[8] = 1;                                                             // the version
  const uint64_t sum = fnv1a(kFnvOffset, v1.data(), v1.size());
  v1.append(reinterpret_cast<const char*>(&sum), sizeof sum);
  f.dir.write("v1.bin", v1);
  auto old = data::ItemTokens::load(f.dir.file("v1.bin"));
  EXPECT_TRUE(old.image_before().empty());
  auto a = old.tokens(4), b = t.tokens(4);
  EXPECT_EQ(std::vector<int32_t>(a.begin(), a.end()), std::vector<int32_t>(b.begin(), b.end()));
  // A count whose byte size wraps around 2^64 is refused, not allocated.
  std::string huge = v2.substr(0, v2.size() - 8);
  const int64_t wraps = int64_t{1} << 61;
  std::memcpy(huge.data() + 16, &wraps, sizeof wraps);                    // num_items
  const uint64_t huge_sum = fnv1a(kFnvOffset, huge.data(), huge.size());
  huge.append(reinterpret_cast<const char*>(&huge_sum), sizeof huge_sum);
  f.dir.write("huge.bin", huge);
  ASSERT_THROWS_WITH(data::ItemTokens::load(f.dir.file("huge.bin")), "huge.bin: corrupt header (counts larger than the file)");
  v1[8] = 3;
  f.dir.write("v3.bin", v1);
  ASSERT_THROWS_WITH(data::ItemTokens::load(f.dir.file("v3.bin")), "item token file version 3, expected 2");
}

HllmOptions tiny_hllm(int64_t vocab) {
  HllmOptions o;
  o.num_items = 5;
  o.max_seq_len = 6;
  llm::DecoderConfig c;
  c.vocab_size = vocab;
  c.hidden_size = 16;
  c.intermediate_size = 24;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 4;
  c.rms_norm_eps = 1e-5;
  c.tie_word_embeddings = true;
  o.item_llm.config = c;
  o.user_llm.config = c;
  o.item_token_std = 0.5;
  return o;
}

std::shared_ptr<HllmImpl> make_tiny(const TextFixture& f, bool packed = true, int64_t item_batch_size = 0) {
  auto tokens = std::make_shared<const data::ItemTokens>(f.tokens());
  auto o = tiny_hllm(tokens->vocab_size());
  o.packed_items = packed;
  if (item_batch_size > 0) o.item_batch_size = item_batch_size;
  torch::manual_seed(3);
  return std::make_shared<HllmImpl>(o, tokens);
}

TEST(Hllm, PackedItemsEqualEachItemAloneAndThePaddedBatch) {
  TextFixture f;
  auto packed = make_tiny(f, true);
  auto padded = make_tiny(f, false);  // same seed: same weights
  packed->eval();
  padded->eval();
  torch::NoGradGuard no_grad;
  std::vector<int64_t> ids{4, 1, 3, 5, 2};
  auto together = packed->embed_items(ids);                       // one packed row
  ASSERT_EQ(together.sizes(), (std::vector<int64_t>{5, 16}));
  for (size_t i = 0; i < ids.size(); ++i) {
    auto alone = packed->embed_items({ids[i]});                   // one item: no other segment
    EXPECT_TRUE(torch::allclose(together[i], alone[0], 1e-5, 1e-5)) << "item " << ids[i];
  }
  auto batch = padded->embed_items(ids);                          // left-padded batch with a key mask
  EXPECT_TRUE(torch::allclose(together, batch, 1e-5, 1e-5)) << (together - batch).abs().max();
  // The embedding really depends on the text: two different items differ.
  EXPECT_GT((together[0] - together[1]).abs().max().item<float>(), 1e-3);
}

TEST(Hllm, PackedBlockGradientsMatchPerSegmentGradients) {
  nn::LlamaBlockOptions o;
  o.hidden_dim = 8;
  o.num_heads = 2;
  o.num_kv_heads = 1;
  o.head_dim = 4;
  o.ffn_dim = 12;
  torch::manual_seed(1);
  nn::LlamaBlock block(o);
  auto inv = nn::rope_inverse_frequencies(4, 10000.0);
  auto x = torch::randn({1, 7, 8}, torch::requires_grad());
  auto pos = torch::tensor({5, 6, 7, 3, 4, 5, 6}, torch::kLong);  // segments of 3 and 4 tokens
  auto packed = nn::pack_segments({3, 4});
  auto y = block->forward(x, nn::rotary_for_positions(pos.unsqueeze(0), inv), torch::Tensor(), nullptr, &packed);
  auto w = torch::randn({1, 7, 8});
  (y * w).sum().backward();
  auto gx = x.grad().clone();
  // Reference: each segment through the ordinary causal path.
  auto xs = x.detach().clone().requires_grad_(true);
  std::vector<torch::Tensor> outs;
  for (auto [start, len] : std::vector<std::pair<int64_t, int64_t>>{{0, 3}, {3, 4}}) {
    auto seg = xs.narrow(1, start, len);
    auto p = pos.narrow(0, start, len).unsqueeze(0);
    outs.push_back(block->forward(seg, nn::rotary_for_positions(p, inv), nn::causal_bias(len, 0, {}, seg.options())));
  }
  auto ref = torch::cat(outs, 1);
  EXPECT_TRUE(torch::allclose(y, ref, 1e-5, 1e-6)) << (y - ref).abs().max();
  (ref * w).sum().backward();
  EXPECT_TRUE(torch::allclose(gx, xs.grad(), 1e-5, 1e-6)) << (gx - xs.grad()).abs().max();
}

TEST(Hllm, NceLossMatchesAHandComputation) {
  // Two positions, 2-D unit vectors; a shared pool of three negatives.
  auto q = torch::tensor({{1.f, 0.f}, {0.f, 1.f}});
  auto p = torch::tensor({{0.6f, 0.8f}, {0.f, 1.f}});
  auto n = torch::tensor({{0.8f, 0.6f}, {0.6f, 0.8f}, {-1.f, 0.f}});  // n_1 duplicates position 0's positive
  const double s = 5.0;
  auto loss = train::nce_loss(q, p, n, torch::tensor(s), 0.99).item<double>();
  // Position 0: pos 0.6; negatives 0.8, (dropped: p.n_1 = 1 > 0.99), -1.
  const double l0 = -std::log(std::exp(s * 0.6) / (std::exp(s * 0.6) + std::exp(s * 0.8) + std::exp(-s)));
  // Position 1: pos 1; negatives 0.6, 0.8, 0 (p.n = 0.6, 0.8, 0: none dropped).
  const double l1 = -std::log(std::exp(s) / (std::exp(s) + std::exp(s * 0.6) + std::exp(s * 0.8) + 1.0));
  EXPECT_NEAR(loss, (l0 + l1) / 2, 1e-5);
  // Per-position negatives [N, R, D] give the same numbers when every row holds the whole pool.
  auto per = train::nce_loss(q, p, n.unsqueeze(0).expand({2, 3, 2}), torch::tensor(s), 0.99).item<double>();
  EXPECT_NEAR(per, loss, 1e-6);
  // The learnable scale: exp(clamp(log_scale, 0, ln 100)).
  EXPECT_NEAR(train::clamped_scale(torch::tensor(std::log(1 / 0.07)), 100).item<double>(), 1 / 0.07, 1e-4);
  EXPECT_NEAR(train::clamped_scale(torch::tensor(std::log(500.0)), 100).item<double>(), 100.0, 1e-3);
  EXPECT_NEAR(train::clamped_scale(torch::tensor(-2.0), 100).item<double>(), 1.0, 1e-6);
  // Clamped from above: no gradient flows into the scale.
  auto big = torch::tensor(std::log(500.0), torch::requires_grad());
  train::nce_loss(q, p, n, train::clamped_scale(big, 100), 0.99).backward();
  EXPECT_EQ(big.grad().item<double>(), 0.0);
  // Inside the range the scale's gradient is finite despite the masked (-inf) negative.
  auto mid = torch::tensor(std::log(5.0), torch::requires_grad());
  train::nce_loss(q, p, n, train::clamped_scale(mid, 100), 0.99).backward();
  EXPECT_TRUE(std::isfinite(mid.grad().item<double>()));
  EXPECT_NE(mid.grad().item<double>(), 0.0);
}

data::SequenceBatch tiny_batch() {
  data::SequenceBatch b;
  b.item_ids = torch::tensor({{0, 1, 2, 3}, {4, 5, 1, 2}}, torch::kLong);
  b.targets = torch::tensor({{0, 2, 3, 4}, {5, 1, 2, 3}}, torch::kLong);
  b.negatives = torch::tensor({{{0}, {5}, {1}, {2}}, {{3}, {4}, {5}, {4}}}, torch::kLong);
  b.user_ids = torch::tensor({0, 1}, torch::kLong);
  b.position_offset = 2;
  return b;
}

TEST(Hllm, NceGradientsReachBothTowersTheItemTokenAndTheScale) {
  TextFixture f;
  auto model = make_tiny(f);
  model->train();
  config::LossOptions lo;
  lo.name = config::LossName::kNce;
  auto loss = train::compute_loss(*model, tiny_batch(), lo);
  ASSERT_TRUE(std::isfinite(loss.item<double>()));
  loss.backward();
  auto params = model->named_parameters();
  for (const char* name : {"item_llm.model.layers.0.self_attn.q_proj.weight", "item_llm.model.embed_tokens.weight",
                           "item_llm.model.layers.1.mlp.down_proj.weight", "user_llm.model.layers.0.self_attn.q_proj.weight",
                           "user_llm.model.layers.1.mlp.up_proj.weight", "item_token", "logit_scale"}) {
    const auto& g = params[name].grad();
    ASSERT_TRUE(g.defined()) << name;
    EXPECT_GT(g.abs().sum().item<double>(), 0.0) << name;
  }
  // The user tower's token table is unused (one frozen row).
  EXPECT_EQ(params["user_llm.model.embed_tokens.weight"].size(0), 1);
  EXPECT_FALSE(params["user_llm.model.embed_tokens.weight"].requires_grad());
}

// Records the blocks run through it and claims that another rank runs `extra` more passes.
struct RecordingGate : nn::BlockGate {
  int64_t extra = 0;
  std::vector<size_t> runs;
  torch::Tensor run(size_t index, const torch::Tensor& x,
                    const std::function<torch::Tensor(const torch::Tensor&)>& body) override {
    runs.push_back(index);
    return body(x);
  }
  int64_t most_passes(int64_t local) override { return local + extra; }
};

// ZeRO-3's gate over both towers: the item LLM's blocks are blocks 0..1 of the gate, the user LLM's
// 2..3; when another rank runs more item-LLM passes, the filler passes run first and change neither
// the loss nor any gradient.
TEST(Hllm, GatedTowersRunAtTheirOffsetsAndFillerPassesChangeNoGradient) {
  TextFixture f;
  // Same seed: same weights. Two items per pass: the 5 items of tiny_batch take 3 passes.
  auto plain = make_tiny(f, true, 2), gated = make_tiny(f, true, 2);
  plain->train();
  gated->train();
  ASSERT_EQ(gated->shardable_blocks().size(), 4u);
  RecordingGate gate;
  gate.extra = 2;
  gated->set_block_gate(&gate);
  config::LossOptions lo;
  lo.name = config::LossName::kNce;
  auto a = train::compute_loss(*plain, tiny_batch(), lo);
  auto b = train::compute_loss(*gated, tiny_batch(), lo);
  EXPECT_NEAR(a.item<double>(), b.item<double>(), 1e-6);
  EXPECT_EQ(gated->filler_passes(), 2);
  std::vector<size_t> expected;
  for (int pass = 0; pass < 5; ++pass) expected.insert(expected.end(), {0, 1});
  expected.insert(expected.end(), {2, 3});
  EXPECT_EQ(gate.runs, expected);
  a.backward();
  b.backward();
  auto pa = plain->named_parameters(), pb = gated->named_parameters();
  for (const auto& p : pa) {
    if (!p.value().requires_grad()) continue;
    const auto& ga = p.value().grad();
    const auto& gb = pb[p.key()].grad();
    ASSERT_TRUE(ga.defined() && gb.defined()) << p.key();
    EXPECT_TRUE(torch::allclose(ga, gb, 1e-5, 1e-7)) << p.key() << ": " << (ga - gb).abs().max();
  }
  // Evaluation and no-grad passes never ask for fillers; removing the gate reaches both towers.
  gated->eval();
  gate.runs.clear();
  {
    torch::NoGradGuard no_grad;
    gated->embed_items({1, 2, 3});
  }
  EXPECT_EQ(gated->filler_passes(), 2);
  EXPECT_EQ(gate.runs, (std::vector<size_t>{0, 1, 0, 1}));
  gated->set_block_gate(nullptr);
  gate.runs.clear();
  {
    torch::NoGradGuard no_grad;
    gated->encode(tiny_batch());
  }
  EXPECT_TRUE(gate.runs.empty());
}

TEST(Hllm, Bf16TrainingIsCloseToFp32LearnsAndKeepsFloat32State) {
  TextFixture f;
  auto fp32 = make_tiny(f), bf16 = make_tiny(f);  // same seed: same weights
  EXPECT_EQ(llm::set_training_precision(*bf16, config::Precision::kBf16, torch::kCPU, "train.precision"), 2);  // item and user LLM
  fp32->train();
  bf16->train();
  config::LossOptions lo;
  lo.name = config::LossName::kNce;
  // The user states (cosine space) of a training forward: within 0.05 of float32's, yet not equal.
  auto a = fp32->encode(tiny_batch()), b = bf16->encode(tiny_batch());               // [B, W, D]
  EXPECT_EQ(b.scalar_type(), torch::kFloat);
  const double diff = (a - b).abs().max().item<double>();
  EXPECT_LT(diff, 0.05);
  EXPECT_GT(diff, 1e-5);
  EXPECT_NEAR(train::compute_loss(*fp32, tiny_batch(), lo).item<double>(),
              train::compute_loss(*bf16, tiny_batch(), lo).item<double>(), 0.05);

  std::vector<std::pair<std::string, torch::Tensor>> params;
  for (const auto& p : bf16->named_parameters())
    if (p.value().requires_grad()) params.emplace_back(p.key(), p.value());
  train::AdamW optimizer(params, {1e-2, 0.9, 0.98, 1e-8, 0.0});
  double first = 0, last = 0;
  for (int step = 0; step < 30; ++step) {
    optimizer.zero_grad();
    auto loss = train::compute_loss(*bf16, tiny_batch(), lo);
    loss.backward();
    optimizer.step(1e-2);
    (step == 0 ? first : last) = loss.item<double>();
  }
  EXPECT_LT(last, 0.5 * first) << first << " -> " << last;
  for (const auto& [name, p] : params) {
    EXPECT_EQ(p.scalar_type(), torch::kFloat) << name;
    EXPECT_EQ(p.grad().scalar_type(), torch::kFloat) << name;
  }
  for (const auto& [name, t] : optimizer.state()) EXPECT_EQ(t.scalar_type(), torch::kFloat) << name;
}

TEST(Hllm, EvalCacheIsReusedAndInvalidatedWhenTheItemTowerChanges) {
  TextFixture f;
  auto model = make_tiny(f);
  model->eval();
  auto a = model->all_item_embeddings().clone();
  ASSERT_EQ(a.sizes(), (std::vector<int64_t>{6, 16}));
  EXPECT_EQ(a[0].abs().sum().item<float>(), 0.f);
  EXPECT_TRUE(torch::allclose(a.narrow(0, 1, 5).norm(2, -1), torch::ones({5}), 1e-5, 1e-5));
  model->all_item_embeddings();
  model->encode(tiny_batch());
  EXPECT_EQ(model->catalogue_passes(), 1);  // reused by the second call and by encode
  {
    torch::NoGradGuard no_grad;
    model->named_parameters()["user_llm.model.layers.0.mlp.up_proj.weight"].add_(0.1);  // user tower only
  }
  model->all_item_embeddings();
  EXPECT_EQ(model->catalogue_passes(), 1);
  {
    torch::NoGradGuard no_grad;
    model->named_parameters()["item_llm.model.layers.0.mlp.up_proj.weight"].add_(0.1);
  }
  auto b = model->all_item_embeddings();
  EXPECT_EQ(model->catalogue_passes(), 2);
  EXPECT_GT((a - b).abs().max().item<float>(), 1e-4);
  // The cached table is what a fresh computation gives.
  torch::NoGradGuard no_grad;
  auto fresh = torch::nn::functional::normalize(model->embed_items({1, 2, 3, 4, 5}),
                                                torch::nn::functional::NormalizeFuncOptions().dim(-1).eps(1e-6));
  EXPECT_TRUE(torch::allclose(b.narrow(0, 1, 5), fresh, 1e-5, 1e-5));
}

TEST(Hllm, ConfigErrorsNameTheField) {
  TextFixture f;
  ModelContext ctx;
  ctx.num_items = 5;
  ctx.max_seq_len = 6;
  ctx.data_dir = f.dir.path();
  auto node = config::ConfigNode::parse("model:\n  name: hllm\n  item_llm: {}\n  user_llm: {pretrained: x}\n");
  ASSERT_THROWS_WITH(make_model(node.child("model"), ctx), "item_tokens.bin: no such file");
  f.tokens().save(f.dir.file(data::kItemTokensFile));
  ASSERT_THROWS_WITH(make_model(node.child("model"), ctx), "model.item_llm: needs pretrained");
  auto small = config::ConfigNode::parse(
      "model:\n  name: hllm\n  item_llm: {config: {vocab_size: 100, hidden_size: 16, num_attention_heads: 4}}\n"
      "  user_llm: {config: {vocab_size: 100, hidden_size: 16, num_attention_heads: 4}}\n");
  ASSERT_THROWS_WITH(make_model(small.child("model"), ctx), "is smaller than the item texts' tokenizer's");
  // A scratch Qwen2-VL language model: q/k/v biases and M-RoPE sections, checked against head_dim.
  auto qwen = [&](const std::string& extra) {
    return config::ConfigNode::parse("model:\n  name: hllm\n  item_llm: {config: {vocab_size: 300, hidden_size: 16, "
                                     "num_attention_heads: 2, model_type: qwen2_vl" + extra + "}}\n"
                                     "  user_llm: {config: {vocab_size: 300, hidden_size: 16, num_attention_heads: 2}}\n");
  };
  auto ok = qwen(", rope_scaling: {type: mrope, mrope_section: [1, 1, 2]}");
  auto model = std::dynamic_pointer_cast<HllmImpl>(make_model(ok.child("model"), ctx));
  ASSERT_TRUE(model);
  EXPECT_EQ(model->item_llm->config().mrope_section, (std::vector<int64_t>{1, 1, 2}));
  EXPECT_TRUE(model->item_llm->config().attention_bias);
  auto bad = qwen(", rope_scaling: {mrope_section: [2, 3, 2]}");
  ASSERT_THROWS_WITH(make_model(bad.child("model"), ctx),
                     "model.item_llm.config.rope_scaling.mrope_section: M-RoPE needs model_type qwen2_vl and 3 "
                     "non-negative counts summing to head_dim / 2 = 4");
  auto unknown = config::ConfigNode::parse("model:\n  name: hllm\n  item_llm: {config: {model_type: gpt2}}\n"
                                           "  user_llm: {config: {}}\n");
  ASSERT_THROWS_WITH(make_model(unknown.child("model"), ctx), "model.item_llm.config.model_type: expected llama, qwen2 or qwen2_vl");
}


// PerSRec's user tokens in the user LLM: window 6 = P 4 old + R 2 recent, K 2 tokens.
std::shared_ptr<HllmImpl> make_personalized(const TextFixture& f, const std::vector<int64_t>& insert = {4, 2}) {
  auto tokens = std::make_shared<const data::ItemTokens>(f.tokens());
  auto o = tiny_hllm(tokens->vocab_size());
  o.personalized = true;
  o.user_tokens.number_of_user_tokens = 2;
  o.user_tokens.pretrain_item_num = 4;
  o.user_tokens.recent_item_num = 2;
  o.user_tokens.insert_method = insert;
  torch::manual_seed(5);
  return std::make_shared<HllmImpl>(o, tokens);
}

data::SequenceBatch histories_batch() {
  data::SequenceBatch b;  // shorter than R, between R and P + R, a full window
  b.item_ids = torch::tensor({0, 0, 0, 0, 0, 3, 0, 0, 2, 5, 1, 4, 1, 2, 3, 4, 5, 1}, torch::kLong).view({3, 6});
  b.user_ids = torch::tensor({0, 1, 2}, torch::kLong);
  b.last_only = true;
  return b;
}

TEST(Hllm, UserTokensCachedPredictEqualsTheUncachedSegmentMaskedForward) {
  TextFixture f;
  for (const auto& insert : {std::vector<int64_t>{4, 2}, std::vector<int64_t>{2, 1, 4, 1}}) {
    auto model = make_personalized(f, insert);
    model->eval();
    torch::NoGradGuard no_grad;
    auto batch = histories_batch();
    auto uncached = model->encode(batch);                                 // [B, 1, D]
    auto cache = model->compress(batch);
    ASSERT_EQ(cache.keys.size(), 2u);
    EXPECT_EQ(cache.keys[0].sizes(), (std::vector<int64_t>{3, 2, 2, 4}));  // [B, Hkv, K, hd]
    auto cached = model->predict(batch, cache);
    EXPECT_TRUE(torch::allclose(cached, uncached, 1e-5, 1e-5)) << (cached - uncached).abs().max().item<float>();
    model->set_token_cache(std::make_shared<TokenCache>(cache));
    EXPECT_TRUE(torch::allclose(model->encode(batch), uncached, 1e-5, 1e-5));
    // The tokens are the only path from old items: with their keys and values zeroed, other old
    // items (same recent ones) give the same output.
    auto other = batch;
    other.item_ids = batch.item_ids.clone();
    other.item_ids[2][0] = 5;
    other.item_ids[2][1] = 5;
    auto zeroed = model->compress(other);
    for (auto* c : {&cache, &zeroed})
      for (size_t l = 0; l < c->keys.size(); ++l) c->keys[l].zero_(), c->values[l].zero_();
    EXPECT_TRUE(torch::allclose(model->predict(batch, cache).narrow(0, 2, 1), model->predict(other, zeroed).narrow(0, 2, 1), 0, 0));
  }
}

TEST(Hllm, UserTokensAreTheBoundaryTargetAndAPinnedParameter) {
  TextFixture f;
  auto model = make_personalized(f);
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
  // Training: a loss over a batch whose last old item targets the first token backpropagates
  // into the tokens.
  model->train();
  data::SequenceBatch b;
  b.item_ids = torch::tensor({1, 2, 3, 4, 5, 1}, torch::kLong).view({1, 6});
  b.targets = torch::tensor({2, 3, 4, 6, 1, 2}, torch::kLong).view({1, 6});
  b.negatives = torch::tensor({5, 5, 5, 5, 4, 4}, torch::kLong).view({1, 6, 1});
  b.user_ids = torch::tensor({0}, torch::kLong);
  config::LossOptions loss;
  loss.name = config::LossName::kNce;
  loss.num_negatives = 1;
  train::compute_loss(*model, b, loss).backward();
  EXPECT_GT(model->named_parameters()["user_tokens"].grad().abs().sum().item<float>(), 0.f);
}

}  // namespace
}  // namespace seqrec::models
