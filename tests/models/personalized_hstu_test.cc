// PerSRec's PersonalizedHSTU: the inserted layout (segments, positions), the segment mask against
// PerSRec's own construction, cached == uncached, the tokens as the only path from old items,
// the batch shaping of the loss, parameter names and option errors.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <utility>
#include <vector>

#include "seqrec/config/config_node.h"
#include "seqrec/data/batcher.h"
#include "seqrec/models/personalized_hstu.h"
#include "seqrec/models/registry.h"
#include "support.h"

namespace seqrec::models {
namespace {

using Part = PersonalizedHstuImpl::Part;

// A model with window P + R; insert_method as a flat list ("[2, 1, 4, 1]").
std::shared_ptr<PersonalizedHstuImpl> make(const std::string& variant, int64_t p, int64_t r, int64_t k,
                                           const std::string& insert = "", bool jagged = true) {
  std::string yaml = "name: hstu\nvariant: " + variant + "\nhidden_dim: 8\nnum_blocks: 2\nnum_heads: 2\n" +
                     "jagged_attention: " + (jagged ? "true" : "false") + "\npersonalized:\n  number_of_user_tokens: " +
                     std::to_string(k) + "\n  pretrain_item_num: " + std::to_string(p) + "\n";
  if (!insert.empty()) yaml += "  insert_method: " + insert + "\n";
  config::ConfigNode node = config::ConfigNode::parse(yaml);
  ModelContext ctx{20, p + r, {}, ""};
  auto model = std::dynamic_pointer_cast<PersonalizedHstuImpl>(make_model(node, ctx));
  EXPECT_TRUE(model);
  return model;
}

// Left-padded eval batch (last_only) from histories, with timestamps t * 100 + item when asked.
data::SequenceBatch eval_batch(const std::vector<std::vector<int64_t>>& histories, int64_t window, bool ts) {
  int64_t w = 1;
  for (const auto& h : histories) w = std::max<int64_t>(w, std::min<int64_t>(h.size(), window));
  const int64_t b = static_cast<int64_t>(histories.size());
  data::SequenceBatch batch;
  batch.item_ids = torch::zeros({b, w}, torch::kLong);
  if (ts) {
    batch.timestamps = torch::zeros({b, w}, torch::kLong);
    batch.target_timestamps = torch::zeros({b}, torch::kLong);
  }
  batch.user_ids = torch::arange(b, torch::kLong);
  batch.last_only = true;
  for (int64_t r = 0; r < b; ++r) {
    const auto& h = histories[r];
    const int64_t len = std::min<int64_t>(h.size(), window), skip = h.size() - len;
    for (int64_t t = 0; t < len; ++t) {
      batch.item_ids[r][w - len + t] = h[skip + t];
      if (ts) batch.timestamps[r][w - len + t] = (skip + t) * 1000 + h[skip + t] * 7;
    }
    if (ts) batch.target_timestamps[r] = int64_t(h.size()) * 1000 + 5;
  }
  return batch;
}

std::vector<int64_t> to_vec(const torch::Tensor& t) {
  auto c = t.to(torch::kLong).contiguous();
  return std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
}

TEST(PersonalizedHstuTest, LayoutInsertsTokensWithPerSRecPositionsAndSegments) {
  // P = 4, R = 3, K = 3 as (offset 2, k 1), (offset 4, k 2). Window slots 0..6.
  auto model = make("hllm", 4, 3, 3, "[2, 1, 4, 2]");
  // A full window 1..7, and a short user (items 5, 6: slots 5, 6 only, all recent).
  auto batch = eval_batch({{1, 2, 3, 4, 5, 6, 7}, {5, 6}}, 7, false);
  auto lay = model->layout(batch, Part::kAll);
  // Row 0: items 1,2 (seg 0), token 0, items 3,4 (seg 1), tokens 1,2, items 5,6,7 (seg 2).
  EXPECT_EQ(to_vec(lay.segments.narrow(0, 0, 10)), (std::vector<int64_t>{0, 0, -1, 1, 1, -2, -2, 2, 2, 2}));
  EXPECT_EQ(to_vec(lay.positions.narrow(0, 0, 10)), (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
  EXPECT_EQ(to_vec(lay.token.narrow(0, 0, 10)), (std::vector<int64_t>{0, 0, 0, 0, 0, 1, 2, 0, 0, 0}));
  EXPECT_EQ(to_vec(lay.source.narrow(0, 0, 10)), (std::vector<int64_t>{0, 1, -1, 2, 3, -1, -1, 4, 5, 6}));
  // Row 1: all three tokens (no old items), then items 5, 6 at their slots 5, 6 + 3 tokens.
  EXPECT_EQ(to_vec(lay.segments.narrow(0, 10, 5)), (std::vector<int64_t>{-1, -2, -2, 2, 2}));
  EXPECT_EQ(to_vec(lay.positions.narrow(0, 10, 5)), (std::vector<int64_t>{2, 5, 6, 8, 9}));
  EXPECT_EQ(to_vec(lay.cu_seqlens), (std::vector<int64_t>{0, 10, 15}));
  EXPECT_EQ(to_vec(lay.prefix), (std::vector<int64_t>{7, 3}));
  EXPECT_EQ(lay.width, 10);
  // The prefix and the recent part split the rows.
  auto pre = model->layout(batch, Part::kPrefix), rec = model->layout(batch, Part::kRecent);
  EXPECT_EQ(to_vec(pre.cu_seqlens), (std::vector<int64_t>{0, 7, 10}));
  EXPECT_EQ(to_vec(rec.positions), (std::vector<int64_t>{7, 8, 9, 8, 9}));
}

// PerSRec's get_attention_mask over the inserted sequence of a full window, as its Python builds
// it: causal, then mask[start_{s+1}:, start_s:end_s + 1] = False for consecutive item segments.
std::vector<std::vector<bool>> persrec_mask(const std::vector<std::pair<int64_t, int64_t>>& method, int64_t window) {
  int64_t k_total = 0;
  for (auto [o, k] : method) k_total += k;
  std::vector<std::pair<int64_t, int64_t>> segments;
  int64_t cum_off = 0, cum_k = 0;
  for (auto [o, k] : method) {
    segments.push_back({cum_off + cum_k, cum_k + o - 1});
    cum_off = o;
    cum_k += k;
  }
  segments.push_back({cum_off + cum_k, window + k_total - 1});
  const int64_t n = window + k_total;
  std::vector<std::vector<bool>> m(n, std::vector<bool>(n));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j <= i; ++j) m[i][j] = true;
  for (size_t s = 0; s + 1 < segments.size(); ++s)
    for (int64_t i = segments[s + 1].first; i < n; ++i)
      for (int64_t j = segments[s].first; j <= segments[s].second; ++j) m[i][j] = false;
  return m;
}

TEST(PersonalizedHstuTest, SegmentRuleEqualsPerSRecsMaskForSeveralInsertMethods) {
  const int64_t window = 9;
  const std::vector<std::vector<std::pair<int64_t, int64_t>>> methods = {
      {{5, 2}}, {{2, 1}, {5, 2}}, {{1, 1}, {3, 1}, {5, 1}}, {{5, 4}}};
  for (const auto& method : methods) {
    std::string flat = "[";
    int64_t k = 0;
    for (auto [o, kk] : method) flat += std::to_string(o) + ", " + std::to_string(kk) + ", ", k += kk;
    flat = flat.substr(0, flat.size() - 2) + "]";
    auto model = make("hllm", 5, window - 5, k, flat);
    std::vector<int64_t> full(window);
    for (int64_t i = 0; i < window; ++i) full[i] = i + 1;
    auto lay = model->layout(eval_batch({full}, window, false), Part::kAll);
    auto codes = to_vec(lay.segments);
    const auto want = persrec_mask(method, window);
    ASSERT_EQ(codes.size(), want.size()) << flat;
    for (size_t i = 0; i < codes.size(); ++i)
      for (size_t j = 0; j < codes.size(); ++j) {
        const int64_t own = codes[i] >= 0 ? codes[i] : -codes[i] - 1;
        const bool rule = j <= i && (codes[j] < 0 || codes[j] == own);  // attention.h's documented rule
        EXPECT_EQ(rule, want[i][j]) << flat << " row " << i << " col " << j;
      }
  }
}

// Several users: shorter than R, between R and P + R, longer than the window (cut to its last
// P + R items), with and without timestamps.
std::vector<std::vector<int64_t>> histories() {
  std::vector<std::vector<int64_t>> h;
  for (int64_t len : {2, 5, 9, 14}) {
    std::vector<int64_t> items;
    for (int64_t t = 0; t < len; ++t) items.push_back(1 + (t * 7 + len * 3) % 20);
    h.push_back(items);
  }
  return h;
}

TEST(PersonalizedHstuTest, CachedPredictEqualsTheUncachedSegmentMaskedForward) {
  // jagged: the packed kernels (tokens as leading rows, or the dense predict for several
  // insertions with the position bias); otherwise the dense paths throughout.
  for (const char* variant : {"gr", "hllm"})
    for (const char* insert : {"", "[2, 1, 6, 2]"})
      for (bool ts : {false, true})
        for (bool jagged : {true, false}) {
        torch::manual_seed(1);
        auto model = make(variant, 6, 4, 3, insert, jagged);
        model->eval();
        auto batch = eval_batch(histories(), 10, ts);
        torch::NoGradGuard no_grad;
        auto uncached = model->encode(batch);                                   // [B, 1, D]
        auto cache = model->compress(batch);
        auto cached = model->predict(batch, cache);
        ASSERT_EQ(cached.sizes(), uncached.sizes());
        EXPECT_TRUE(torch::allclose(cached, uncached, 1e-5, 1e-5))
            << variant << " insert=" << insert << " ts=" << ts << " jagged=" << jagged << " max diff "
            << (cached - uncached).abs().max().item<float>();
        // The installed cache is what encode then uses (per user, looked up by id).
        model->set_token_cache(std::make_shared<TokenCache>(cache));
        EXPECT_TRUE(torch::allclose(model->encode(batch), uncached, 1e-5, 1e-5));
        model->set_token_cache(nullptr);
      }
}

TEST(PersonalizedHstuTest, PackedKernelEqualsTheDenseMaskedComputationWithGradients) {
  for (const char* variant : {"gr", "hllm"}) {
    torch::manual_seed(2);
    auto packed = make(variant, 6, 4, 3, "[2, 1, 6, 2]", true);
    torch::manual_seed(2);
    auto dense = make(variant, 6, 4, 3, "[2, 1, 6, 2]", false);
    auto batch = eval_batch(histories(), 10, true);
    batch.last_only = false;
    batch.target_timestamps = batch.timestamps + 3;  // training: one target time per position
    // Eval mode (no dropout draws, which differ between the paths), full outputs with autograd.
    packed->eval(), dense->eval();
    auto hp = packed->encode(batch), hd = dense->encode(batch);                // [B, W, D]
    EXPECT_TRUE(torch::allclose(hp, hd, 1e-5, 1e-6)) << variant;
    auto w = torch::randn(hp.sizes());
    (hp * w).sum().backward();
    (hd * w).sum().backward();
    auto pp = packed->named_parameters(), pd = dense->named_parameters();
    for (const auto& kv : pp)
      EXPECT_TRUE(torch::allclose(kv.value().grad(), pd[kv.key()].grad(), 1e-4, 1e-6)) << variant << " " << kv.key();
  }
}

// Windows longer than the kernels' 64-row tiles: the tiles of later segments start their columns
// at the first token (the blocked old items are skipped, not computed and zeroed); outputs and
// gradients still equal the dense masked computation.
TEST(PersonalizedHstuTest, PackedKernelSkipsBlockedTilesOfLongWindowsExactly) {
  std::vector<std::vector<int64_t>> long_histories;
  for (int64_t len : {40, 100, 150}) {
    std::vector<int64_t> items;
    for (int64_t t = 0; t < len; ++t) items.push_back(1 + (t * 7 + len * 3) % 20);
    long_histories.push_back(items);
  }
  for (const char* insert : {"", "[30, 1, 70, 2]"}) {  // default [(P, K)], and two segments
    torch::manual_seed(2);
    auto packed = make("gr", 70, 60, 3, insert, true);
    torch::manual_seed(2);
    auto dense = make("gr", 70, 60, 3, insert, false);
    auto batch = eval_batch(long_histories, 130, true);
    batch.last_only = false;
    batch.target_timestamps = batch.timestamps + 3;
    packed->eval(), dense->eval();
    auto hp = packed->encode(batch), hd = dense->encode(batch);
    EXPECT_TRUE(torch::allclose(hp, hd, 1e-5, 1e-6)) << insert << " " << (hp - hd).abs().max().item<float>();
    auto w = torch::randn(hp.sizes());
    (hp * w).sum().backward();
    (hd * w).sum().backward();
    auto pp = packed->named_parameters(), pd = dense->named_parameters();
    for (const auto& kv : pp)
      EXPECT_TRUE(torch::allclose(kv.value().grad(), pd[kv.key()].grad(), 1e-4, 1e-5)) << insert << " " << kv.key();
  }
}

TEST(PersonalizedHstuTest, ZeroTokenKeysAndValuesRemoveEveryEffectOfOldItems) {
  torch::manual_seed(4);
  auto model = make("gr", 6, 4, 2);
  model->eval();
  torch::NoGradGuard no_grad;
  for (auto& p : model->parameters()) p.mul_(10);  // at the initial scale (0.02) attention is nearly flat
  // Same recent items (the last 4), different old items.
  auto a = eval_batch({{1, 2, 3, 4, 5, 6, 11, 12, 13, 14}}, 10, false);
  auto b = eval_batch({{9, 8, 7, 20, 19, 18, 11, 12, 13, 14}}, 10, false);
  auto ca = model->compress(a), cb = model->compress(b);
  const float before = (model->predict(a, ca) - model->predict(b, cb)).abs().max().item<float>();
  EXPECT_GT(before, 1e-3);  // old items matter, through the tokens
  for (auto* c : {&ca, &cb})
    for (size_t l = 0; l < c->keys.size(); ++l) c->keys[l].zero_(), c->values[l].zero_();
  EXPECT_TRUE(torch::allclose(model->predict(a, ca), model->predict(b, cb), 0, 0));      // the tokens are the only path
}

TEST(PersonalizedHstuTest, CacheOfOtherOldItemsOrUsersIsRefused) {
  auto model = make("hllm", 6, 4, 2);
  model->eval();
  auto a = eval_batch({{1, 2, 3, 4, 5, 6, 11, 12, 13, 14}}, 10, false);
  auto b = eval_batch({{9, 2, 3, 4, 5, 6, 11, 12, 13, 14}}, 10, false);
  auto cache = model->compress(a);
  ASSERT_THROWS_WITH(model->predict(b, cache), "differ from those it was compressed from");
  b.user_ids = torch::tensor({7}, torch::kLong);
  ASSERT_THROWS_WITH(cache.rows(b.user_ids), "no entry for user 7");
}

TEST(PersonalizedHstuTest, TheLastOldItemTargetsTheFirstTokenAndRecentDropoutRemovesLossPositions) {
  auto model = make("hllm", 6, 4, 3);
  const auto& layout = model->batch_layout();
  EXPECT_EQ(layout.recent_item_num, 4);
  EXPECT_EQ(layout.boundary_target, 21);  // V + 1 = the first user token
  // item_embeddings maps V + 1 .. V + K to the (normalised) tokens.
  auto tokens = model->named_parameters()["user_tokens"][0];
  auto e = model->item_embeddings(torch::tensor({21, 23}, torch::kLong));
  EXPECT_TRUE(torch::allclose(e[0], tokens[0] / tokens[0].norm(), 1e-6, 1e-6));
  EXPECT_TRUE(torch::allclose(e[1], tokens[2] / tokens[2].norm(), 1e-6, 1e-6));
  // The batcher writes it at the slot before the recent ones (window 10: column W - R - 1).
  data::StoreData sd;  // three users of 15, 9 and 3 events over 20 items
  sd.num_items = 20;
  sd.user_offsets.push_back(0);
  for (int64_t n : {15, 9, 3}) {
    for (int64_t i = 0; i < n; ++i) sd.item_ids.push_back(static_cast<int32_t>(1 + (i * 7 + n) % 20));
    sd.user_offsets.push_back(sd.item_ids.size());
  }
  auto store = data::InteractionStore::from_data(std::move(sd));
  data::TrainBatcherOptions bo;
  bo.max_seq_len = 10;
  bo.batch_size = 3;
  bo.recent_item_num = 4;
  bo.boundary_target = 21;
  bo.prefetch = 1;
  data::TrainBatcher batcher(store, bo);
  batcher.start_epoch(0);
  data::SequenceBatch batch;
  ASSERT_TRUE(batcher.next(&batch));
  const int64_t w = batch.item_ids.size(1);
  for (int64_t r = 0; r < batch.item_ids.size(0); ++r) {
    const int64_t len = batch.item_ids[r].ne(0).sum().item<int64_t>();
    if (len > 4) {
      EXPECT_EQ(batch.targets[r][w - 5].item<int64_t>(), 21) << "row " << r;
      EXPECT_NE(batch.targets[r][w - 4].item<int64_t>(), 21);  // the recent slots keep their next items
    }
  }
  // Dropout of recent inputs: dropped slots lose input and loss; old slots never drop.
  bo.boundary_target = -1;
  bo.recent_item_dropout = 0.5;
  data::TrainBatcher dropping(store, bo);
  dropping.start_epoch(0);
  data::SequenceBatch d;
  ASSERT_TRUE(dropping.next(&d));
  const int64_t wd = d.item_ids.size(1);
  auto recent = d.item_ids.narrow(1, wd - 4, 4), old = d.item_ids.narrow(1, 0, wd - 4);
  EXPECT_GT(recent.eq(0).sum().item<int64_t>(), 0);
  EXPECT_TRUE(torch::equal(recent.eq(0), d.targets.narrow(1, wd - 4, 4).eq(0).logical_and(recent.eq(0))));
  auto old_len = old.ne(0).sum(1);
  EXPECT_TRUE(torch::equal(old.ne(0), torch::arange(wd - 4).unsqueeze(0).ge((wd - 4 - old_len).unsqueeze(1))));
}

TEST(PersonalizedHstuTest, ParameterNamesArePinned) {
  auto model = make("gr", 6, 4, 2);
  std::vector<std::string> names;
  for (const auto& p : model->named_parameters()) names.push_back(p.key());
  std::sort(names.begin(), names.end());
  std::vector<std::string> expected = {
      "blocks.0.output.bias", "blocks.0.output.weight", "blocks.0.uvqk.weight", "blocks.1.output.bias",
      "blocks.1.output.weight", "blocks.1.uvqk.weight", "item_embedding.weight", "position_embedding.weight",
      "relative_biases.0.position_weights", "relative_biases.0.time_weights", "relative_biases.1.position_weights",
      "relative_biases.1.time_weights", "user_tokens"};
  EXPECT_EQ(names, expected);
  // The position table covers the inserted sequence: P + K + R + 11 output slots.
  EXPECT_EQ(model->named_parameters()["position_embedding.weight"].size(0), 6 + 2 + 4 + 11);
  EXPECT_EQ(model->named_parameters()["user_tokens"].sizes(), (torch::IntArrayRef{1, 2, 8}));
}

TEST(PersonalizedHstuTest, BadOptionsAreConfigErrors) {
  auto build = [](const std::string& personalized, int64_t window) {
    config::ConfigNode node =
        config::ConfigNode::parse("name: hstu\nhidden_dim: 8\npersonalized:\n" + personalized);
    ModelContext ctx{20, window, {}, ""};
    return make_model(node, ctx);
  };
  ASSERT_THROWS_WITH(build("  pretrain_item_num: 6\n  recent_item_num: 3\n", 10),
                     "pretrain_item_num + recent_item_num = 9 must equal data.max_seq_len = 10");
  ASSERT_THROWS_WITH(build("  pretrain_item_num: 6\n  number_of_user_tokens: 3\n  insert_method: [6, 2]\n", 10),
                     "personalized.insert_method: the k sum to 2, not number_of_user_tokens = 3");
  ASSERT_THROWS_WITH(build("  pretrain_item_num: 6\n  number_of_user_tokens: 2\n  insert_method: [4, 2]\n", 10),
                     "the last offset must be pretrain_item_num = 6");
  ASSERT_THROWS_WITH(build("  pretrain_item_num: 6\n  insert_method: [6, 2, 3, 2]\n", 10),
                     "offsets must be increasing");
  ASSERT_THROWS_WITH(build("  pretrain_item_num: 6\n  boundary_target: next\n", 10),
                     "personalized.boundary_target: 'next' is not one of: token, none");
  ASSERT_THROWS_WITH(build("  pretrain_item_num: 6\n  item_dropout: 1.5\n", 10), "item_dropout: must be in [0, 1)");
}

}  // namespace
}  // namespace seqrec::models
