// RQ-VAE: pinned parameter names (upstream's), forward / loss / gradients against a hand computation,
// Sinkhorn in the training forward, k-means initialisation, the schedule, a short training that
// learns, and the checkpoint round trip.
#include "seqrec/semantic_id/rqvae.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include "seqrec/common/fs.h"
#include "seqrec/common/random.h"
#include "seqrec/semantic_id/item_index.h"
#include "seqrec/semantic_id/kmeans.h"
#include "seqrec/semantic_id/rqvae_train.h"
#include "seqrec/train/checkpoint.h"
#include "support.h"

namespace seqrec::semantic_id {
namespace {

using seqrec::testing::TempDir;

// Identity encoder/decoder (no hidden layer), two levels of two codes set by hand.
RqVae hand_model() {
  RqVaeOptions o;
  o.input_dim = 2;
  o.hidden_dims = {};
  o.code_dim = 2;
  o.num_levels = 2;
  o.num_codes = 2;
  o.kmeans_init = false;
  o.sk_epsilons = {0.0, 0.0};
  RqVae m(o);
  torch::NoGradGuard no_grad;
  for (MlpLayers mlp : {m->encoder, m->decoder}) {
    auto& linear = *mlp->mlp_layers->ptr<torch::nn::LinearImpl>(1);
    linear.weight.copy_(torch::eye(2));
    linear.bias.zero_();
  }
  m->rq->vq_layers->ptr<VectorQuantizerImpl>(0)->embedding->weight.copy_(torch::tensor({{1.0, 0.0}, {0.0, 1.0}}));
  m->rq->vq_layers->ptr<VectorQuantizerImpl>(1)->embedding->weight.copy_(torch::tensor({{0.1, 0.0}, {0.0, -0.1}}));
  return m;
}

TEST(RqVaeTest, ParameterNamesAreUpstreamStateDictNames) {
  RqVaeOptions o;
  o.input_dim = 6;
  o.hidden_dims = {4};
  o.code_dim = 2;
  o.num_levels = 2;
  o.num_codes = 3;
  o.sk_epsilons = {0.0, 0.0};
  RqVae m(o);
  std::vector<std::string> names;
  for (const auto& p : m->named_parameters()) names.push_back(p.key());
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{
                       "decoder.mlp_layers.1.bias", "decoder.mlp_layers.1.weight", "decoder.mlp_layers.4.bias",
                       "decoder.mlp_layers.4.weight", "encoder.mlp_layers.1.bias", "encoder.mlp_layers.1.weight",
                       "encoder.mlp_layers.4.bias", "encoder.mlp_layers.4.weight", "rq.vq_layers.0.embedding.weight",
                       "rq.vq_layers.1.embedding.weight"}));
  EXPECT_EQ(m->encoder->named_parameters()["mlp_layers.1.weight"].sizes(), (std::vector<int64_t>{4, 6}));
  EXPECT_EQ(m->decoder->named_parameters()["mlp_layers.4.weight"].sizes(), (std::vector<int64_t>{6, 4}));
  // batch_norm puts BatchNorm1d between the linear layer and the ReLU, as upstream (indices shift).
  o.batch_norm = true;
  RqVae bn(o);
  EXPECT_TRUE(bn->named_parameters().contains("encoder.mlp_layers.2.weight"));
  EXPECT_TRUE(bn->named_parameters().contains("encoder.mlp_layers.5.weight"));
  EXPECT_TRUE(bn->named_buffers().contains("encoder.mlp_layers.2.running_mean"));
}

TEST(RqVaeTest, InitialisationIsXavierNormalWithZeroBiasAndZeroCodebooksBeforeKMeans) {
  torch::manual_seed(0);
  RqVaeOptions o;
  o.input_dim = 512;
  o.hidden_dims = {512};
  o.code_dim = 8;
  o.num_levels = 1;
  o.num_codes = 4;
  o.sk_epsilons = {0.0};
  RqVae m(o);
  auto w = m->encoder->named_parameters()["mlp_layers.1.weight"];
  EXPECT_NEAR(w.std().item<double>(), std::sqrt(2.0 / 1024.0), 0.002);
  EXPECT_EQ(m->encoder->named_parameters()["mlp_layers.1.bias"].abs().sum().item<double>(), 0.0);
  EXPECT_EQ(m->rq->vq_layers->ptr<VectorQuantizerImpl>(0)->embedding->weight.abs().sum().item<double>(), 0.0);
  // Without kmeans_init: U(-1/C, 1/C).
  o.kmeans_init = false;
  RqVae u(o);
  auto cb = u->rq->vq_layers->ptr<VectorQuantizerImpl>(0)->embedding->weight;
  EXPECT_LE(cb.abs().max().item<double>(), 0.25);
  EXPECT_GT(cb.abs().max().item<double>(), 0.0);
}

TEST(RqVaeTest, ForwardLossAndGradientsMatchHandComputation) {
  RqVae m = hand_model();
  auto x = torch::tensor({{1.2, 0.1}, {0.2, 0.9}});
  RqVaeOutput out = m->forward(x);
  // Level 0: nearest codes 0 and 1; residuals (0.2, 0.1), (0.2, -0.1); level 1: code 0 for both.
  EXPECT_TRUE(torch::equal(out.codes, torch::tensor({{0, 0}, {1, 0}}, torch::kLong)));
  // z_q = (1.1, 0), (0.1, 1.0); identity decoder.
  EXPECT_TRUE(torch::allclose(out.reconstruction, torch::tensor({{1.1, 0.0}, {0.1, 1.0}}), 1e-6));
  // Level losses: mse 0.025 * (1 + 0.25) and 0.01 * 1.25; mean 0.021875.
  EXPECT_NEAR(out.quant_loss.item<double>(), 0.021875, 1e-7);
  RqVaeLoss loss = m->compute_loss(out, x);
  EXPECT_NEAR(loss.recon.item<double>(), 0.01, 1e-7);
  EXPECT_NEAR(loss.total.item<double>(), 0.031875, 1e-7);
  loss.total.backward();
  // Codebook rows get only their codebook term: 0.5 (level mean) * 2 (q - r) / 4 (elements).
  auto g0 = m->rq->vq_layers->ptr<VectorQuantizerImpl>(0)->embedding->weight.grad();
  EXPECT_TRUE(torch::allclose(g0, torch::tensor({{-0.05, -0.025}, {-0.05, 0.025}}), 1e-6));
  auto g1 = m->rq->vq_layers->ptr<VectorQuantizerImpl>(1)->embedding->weight.grad();
  // Level 1: both items on code 0, q - r = (-0.1, -0.1) and (-0.1, 0.1).
  EXPECT_TRUE(torch::allclose(g1, torch::tensor({{-0.05, 0.0}, {0.0, 0.0}}), 1e-6));
  // Encoder bias: d recon/dz through the straight-through level 0 (2 (out - x) / 4), plus level 0's
  // commitment 0.5 * 0.25 * 2 (z - q0) / 4; level 1's commitment does not reach z (as upstream:
  // the next residual is built from the straight-through value). Per column, summed over items.
  const double recon_b0 = 2 * ((1.1 - 1.2) + (0.1 - 0.2)) / 4, recon_b1 = 2 * ((0.0 - 0.1) + (1.0 - 0.9)) / 4;
  const double commit_b0 = 0.125 * 2 * ((1.2 - 1.0) + (0.2 - 0.0)) / 4, commit_b1 = 0.125 * 2 * ((0.1 - 0.0) + (0.9 - 1.0)) / 4;
  // The identity decoder passes d recon/d out straight back; d out/d z = I.
  auto gb = m->encoder->mlp_layers->ptr<torch::nn::LinearImpl>(0 + 1)->bias.grad();
  EXPECT_NEAR(gb[0].item<double>(), recon_b0 + commit_b0, 1e-6);
  EXPECT_NEAR(gb[1].item<double>(), recon_b1 + commit_b1, 1e-6);
}

TEST(RqVaeTest, TrainingForwardUsesSinkhornOnLevelsWithEpsilon) {
  RqVaeOptions o;
  o.input_dim = 2;
  o.hidden_dims = {};
  o.code_dim = 2;
  o.num_levels = 1;
  o.num_codes = 2;
  o.kmeans_init = false;
  o.sk_epsilons = {0.003};
  RqVae m(o);
  torch::NoGradGuard no_grad;
  m->encoder->mlp_layers->ptr<torch::nn::LinearImpl>(1)->weight.copy_(torch::eye(2));
  m->encoder->mlp_layers->ptr<torch::nn::LinearImpl>(1)->bias.zero_();
  m->rq->vq_layers->ptr<VectorQuantizerImpl>(0)->embedding->weight.copy_(torch::tensor({{0.0, 0.0}, {5.0, 5.0}}));
  // All four items are nearest to code 0; the farther two are less so.
  auto x = torch::tensor({{0.1, 0.0}, {0.0, 0.1}, {1.0, 1.0}, {1.2, 1.1}});
  EXPECT_TRUE(torch::equal(m->forward(x, /*use_sinkhorn=*/false).codes.squeeze(1), torch::tensor({0, 0, 0, 0}, torch::kLong)));
  EXPECT_TRUE(torch::equal(m->forward(x).codes.squeeze(1), torch::tensor({0, 0, 1, 1}, torch::kLong)));
  EXPECT_TRUE(torch::equal(m->codes(x, {0.0}).squeeze(1), torch::tensor({0, 0, 0, 0}, torch::kLong)));
}

TEST(RqVaeTest, KMeansInitialisesEachLevelOnTheFirstTrainingBatchOnly) {
  torch::manual_seed(1);
  RqVaeOptions o;
  o.input_dim = 4;
  o.hidden_dims = {};
  o.code_dim = 3;
  o.num_levels = 2;
  o.num_codes = 4;
  o.sk_epsilons = {0.0, 0.0};
  o.kmeans_iters = 50;
  RqVae m(o);
  auto x = torch::randn({32, 4});
  auto vq0 = m->rq->vq_layers->ptr<VectorQuantizerImpl>(0);
  m->eval();
  m->forward(x);
  EXPECT_FALSE(vq0->initialised());  // eval mode never initialises
  EXPECT_EQ(vq0->embedding->weight.abs().sum().item<double>(), 0.0);
  m->train();
  m->forward(x);
  ASSERT_TRUE(vq0->initialised());
  // Level 0's codebook is k-means of the encoder output with the level's seed.
  KMeansOptions km;
  km.num_clusters = 4;
  km.max_iters = 50;
  km.seed = derive_seed({2024, 0});
  auto expected = kmeans(m->encoder(x).detach(), km).centers;
  EXPECT_TRUE(torch::allclose(vq0->embedding->weight, expected, 1e-5, 1e-6));
  auto level1 = m->rq->vq_layers->ptr<VectorQuantizerImpl>(1)->embedding->weight.clone();
  EXPECT_GT(level1.abs().sum().item<double>(), 0.0);
  m->forward(torch::randn({32, 4}));  // a second batch changes nothing
  EXPECT_TRUE(torch::equal(m->rq->vq_layers->ptr<VectorQuantizerImpl>(1)->embedding->weight, level1));
}

TEST(RqVaeTest, LearningRateFactorIsTransformersLinearAndConstantWithWarmup) {
  EXPECT_DOUBLE_EQ(rqvae_lr_factor("linear", 0, 14, 4), 0.0);
  EXPECT_DOUBLE_EQ(rqvae_lr_factor("linear", 2, 14, 4), 0.5);
  EXPECT_DOUBLE_EQ(rqvae_lr_factor("linear", 4, 14, 4), 1.0);
  EXPECT_DOUBLE_EQ(rqvae_lr_factor("linear", 9, 14, 4), 0.5);
  EXPECT_DOUBLE_EQ(rqvae_lr_factor("linear", 14, 14, 4), 0.0);
  EXPECT_DOUBLE_EQ(rqvae_lr_factor("linear", 0, 10, 0), 1.0);
  EXPECT_DOUBLE_EQ(rqvae_lr_factor("constant", 1, 14, 4), 0.25);
  EXPECT_DOUBLE_EQ(rqvae_lr_factor("constant", 13, 14, 4), 1.0);
}

// Hierarchical clusters as text embeddings have them: 8 groups x 6 subgroups x 8 items in 32
// dimensions, spreads 2.0 / 0.7 / 0.25.
torch::Tensor clustered_embeddings() {
  torch::manual_seed(11);
  auto top = (torch::randn({8, 32}) * 2.0).repeat_interleave(48, 0);                     // [384, 32]
  auto sub = (torch::randn({48, 32}) * 0.7).repeat_interleave(8, 0);                     // [384, 32]
  return top + sub + 0.25 * torch::randn({384, 32});
}

RqVaeOptions small_options(int64_t num_codes = 16) {
  RqVaeOptions o;
  o.input_dim = 32;
  o.hidden_dims = {32, 16};
  o.code_dim = 8;
  o.num_levels = 3;
  o.num_codes = num_codes;
  o.sk_epsilons = {0.0, 0.0, 0.003};
  return o;
}

TEST(RqVaeTest, ShortTrainingLowersLossAndCollisionRate) {
  const auto x = clustered_embeddings();
  torch::manual_seed(2);
  RqVae m(small_options(64));
  TempDir dir;
  RqVaeTrainOptions t;
  t.lr = 3e-3;
  t.batch_size = 128;
  t.epochs = 200;
  t.warmup_epochs = 2;
  t.eval_every = 25;
  t.checkpoint_path = dir.file("rqvae.safetensors");
  t.metrics_path = dir.file("metrics.jsonl");
  const RqVaeTrainSummary s = train_rqvae(*m, x, t);
  ASSERT_EQ(s.evals.size(), 8u);
  const auto& first = s.evals.front();
  const auto& last = s.evals.back();
  EXPECT_LT(last.loss, 0.6 * first.loss);
  EXPECT_LT(last.recon, first.recon);
  EXPECT_LT(s.best_collision_rate, first.collision_rate - 0.15);
  EXPECT_EQ(last.used_codes.size(), 3u);
  EXPECT_GT(last.used_codes[2], 32);  // the Sinkhorn level spreads over its codes
  EXPECT_EQ(last.lr, 3e-3 * rqvae_lr_factor("linear", 200 * 3 - 1, 200 * 3, 2 * 3));
  // metrics.jsonl: one line per evaluation with the logged fields.
  const std::string metrics = read_file(t.metrics_path);
  EXPECT_EQ(std::count(metrics.begin(), metrics.end(), '\n'), 8);
  const auto j = nlohmann::json::parse(metrics.substr(0, metrics.find('\n')));
  EXPECT_EQ(j["epoch"], 25);
  EXPECT_DOUBLE_EQ(j["collision_rate"].get<double>(), first.collision_rate);
  // The kept checkpoint is the best evaluation's: its argmin codes give that collision rate.
  std::map<std::string, std::string> meta;
  RqVae best = load_rqvae(t.checkpoint_path, &meta);
  EXPECT_EQ(meta.at("epoch"), std::to_string(s.best_epoch));
  auto codes = all_codes(*best, x, 100).contiguous();
  std::vector<int64_t> flat(codes.data_ptr<int64_t>(), codes.data_ptr<int64_t>() + codes.numel());
  EXPECT_DOUBLE_EQ(collision_stats(flat, 3).rate(), s.best_collision_rate);
}

TEST(RqVaeTest, TrainingIsDeterministicForASeed) {
  const auto x = clustered_embeddings();
  RqVaeTrainOptions t;
  t.batch_size = 100;
  t.epochs = 3;
  t.eval_every = 3;
  std::vector<double> losses;
  for (int run = 0; run < 2; ++run) {
    torch::manual_seed(9);
    RqVae m(small_options());
    losses.push_back(train_rqvae(*m, x, t).evals.back().loss);
  }
  EXPECT_EQ(losses[0], losses[1]);
}

TEST(RqVaeTest, CheckpointRoundTripAndForeignFiles) {
  TempDir dir;
  torch::manual_seed(3);
  RqVaeOptions o = small_options();
  o.kmeans_init = false;
  RqVae m(o);
  m->eval();
  save_rqvae(dir.file("m.safetensors"), *m, {{"epoch", "7"}});
  std::map<std::string, std::string> meta;
  RqVae back = load_rqvae(dir.file("m.safetensors"), &meta);
  EXPECT_EQ(meta.at("epoch"), "7");
  EXPECT_EQ(meta.at("format"), kRqVaeFormat);
  EXPECT_EQ(back->options().hidden_dims, o.hidden_dims);
  EXPECT_EQ(back->options().sk_epsilons, o.sk_epsilons);
  auto x = torch::randn({10, 32});
  EXPECT_TRUE(torch::equal(m->forward(x, false).reconstruction, back->forward(x, false).reconstruction));
  train::save_tensors(dir.file("other.safetensors"), {{"w", torch::zeros({2})}}, {{"format", "something"}});
  ASSERT_THROWS_WITH(load_rqvae(dir.file("other.safetensors")), "not an RQ-VAE checkpoint (format 'something'");
  ASSERT_THROWS_WITH(load_rqvae(dir.file("none.safetensors")), dir.file("none.safetensors") + ": no such file");
}

}  // namespace
}  // namespace seqrec::semantic_id
