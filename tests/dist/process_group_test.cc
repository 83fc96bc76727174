// Data-parallel pieces over real Gloo process groups, one thread per rank inside this process:
// rendezvous (and its errors), broadcast, bucketed gradient averaging (one step of 2 ranks x b equals
// one step of 1 rank x 2b), all-gather with gradient (HLLM's shared negative pool), sharded
// evaluation. Skipped when this build has no Gloo.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <torch/torch.h>

#include <exception>
#include <functional>
#include <thread>
#include <vector>

#include "seqrec/config/config_node.h"
#include "seqrec/config/options.h"
#include "seqrec/data/interaction_store.h"
#include "seqrec/dist/all_gather.h"
#include "seqrec/dist/grad_reducer.h"
#include "seqrec/dist/process_group.h"
#include "seqrec/eval/evaluator.h"
#include "seqrec/models/registry.h"
#include "seqrec/train/losses.h"
#include "seqrec/train/optim.h"
#include "seqrec/train/zero.h"
#include "dist/dist_support.h"
#include "support.h"

namespace seqrec::dist {
namespace {

using Groups = std::vector<std::shared_ptr<ProcessGroup>>;

int64_t free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

using seqrec::testing::on_each_rank;

class DistTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string skip;
    groups_ = seqrec::testing::local_groups(2, &skip);
    if (groups_.empty()) GTEST_SKIP() << skip;
  }
  Groups groups_;
};

// Rank r of a two-process job on this machine, rendezvous at 127.0.0.1:port.
DistEnv loopback_env(int64_t r, int64_t port) {
  DistEnv env;
  env.world_size = 2;
  env.rank = r;
  env.local_rank = r;
  env.local_world_size = 2;
  env.master_addr = "127.0.0.1";
  env.master_port = port;
  return env;
}

TEST_F(DistTest, RendezvousOverTcpStoreJoinsAllRanks) {
  const int64_t port = free_port();
  std::vector<double> sums(2);
  on_each_rank(2, [&](int64_t r) {
    DistEnv env = loopback_env(r, port);
    InitOptions options;
    options.backend = "gloo";
    options.timeout = std::chrono::seconds(20);
    auto group = init_process_group(env, options);
    EXPECT_EQ(group->rank(), r);
    EXPECT_EQ(group->world_size(), 2);
    EXPECT_EQ(group->backend(), "gloo");
    sums[r] = group->all_reduce_sum(std::vector<double>{1.5 + r})[0];
  });
  EXPECT_EQ(sums[0], 4.0);
  EXPECT_EQ(sums[1], 4.0);
}

TEST_F(DistTest, RendezvousTimeoutNamesTheMissingPeers) {
  DistEnv env = loopback_env(0, free_port());
  InitOptions options;
  options.backend = "gloo";
  options.timeout = std::chrono::milliseconds(300);
  // Rank 0 alone: serves the store, nobody else checks in.
  ASSERT_THROWS_WITH(init_process_group(env, options), "only 1 of 2 processes arrived within 0.3 s (rank 0 waiting");
  // Rank 1 alone: no store to reach.
  env.rank = 1;
  env.local_rank = 1;
  ASSERT_THROWS_WITH(init_process_group(env, options), "rank 1 cannot reach the rendezvous store at 127.0.0.1:");
  options.backend = "mpi";
  ASSERT_THROWS_WITH(init_process_group(env, options), "backend: 'mpi' is not one of: auto, gloo, nccl");
}

// NCCL: LOCAL_RANK picks the GPU; CPU tensors are staged through it. Needs 2 GPUs (NCCL does not
// put two ranks on one device) and a CUDA LibTorch with NCCL; skipped otherwise.
TEST(DistGpuTest, NcclGroupUsesTheLocalRanksGpu) {
  if (!have_nccl()) GTEST_SKIP() << "this build has no NCCL (CPU LibTorch)";
  if (!torch::cuda::is_available() || torch::cuda::device_count() < 2) GTEST_SKIP() << "needs 2 CUDA devices";
  const int64_t port = free_port();
  std::vector<torch::Tensor> sums(2);
  std::vector<std::string> devices(2);
  on_each_rank(2, [&](int64_t r) {
    DistEnv env = loopback_env(r, port);
    InitOptions options;
    options.backend = "nccl";
    options.timeout = std::chrono::seconds(60);
    auto group = init_process_group(env, options);
    devices[r] = group->device().str();
    sums[r] = torch::full({4}, float(r + 1));
    group->all_reduce_sum(sums[r]);
  });
  for (int64_t r = 0; r < 2; ++r) {
    EXPECT_EQ(devices[r], "cuda:" + std::to_string(r));
    EXPECT_TRUE(sums[r].equal(torch::full({4}, 3.f)));
  }
}

// The NCCL path with one process (what one GPU allows): the group is built on LOCAL_RANK's GPU and
// collectives of CPU tensors are staged through it.
TEST(DistGpuTest, NcclSingleProcessGroupRunsCollectivesOnTheGpu) {
  if (!have_nccl()) GTEST_SKIP() << "this build has no NCCL (CPU LibTorch)";
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  DistEnv env;
  env.world_size = 1;
  env.local_world_size = 1;
  env.master_addr = "127.0.0.1";
  env.master_port = free_port();
  InitOptions options;
  options.backend = "nccl";
  options.timeout = std::chrono::seconds(60);
  auto group = init_process_group(env, options);
  EXPECT_EQ(group->device().str(), "cuda:0");
  auto t = torch::full({4}, 2.f);
  group->all_reduce_sum(t);
  EXPECT_TRUE(t.equal(torch::full({4}, 2.f)));
  EXPECT_EQ(group->all_reduce_sum(std::vector<double>{1.5})[0], 1.5);
  auto g = group->all_gather_rows(torch::arange(6, torch::kFloat).view({3, 2}));
  EXPECT_TRUE(g.equal(torch::arange(6, torch::kFloat).view({3, 2})));
}

TEST_F(DistTest, BroadcastGivesEveryRankRankZerosTensors) {
  std::vector<std::vector<torch::Tensor>> tensors(2);
  for (int64_t r = 0; r < 2; ++r)
    tensors[r] = {torch::full({3, 2}, float(r + 1)), torch::arange(5, torch::kInt64) * (r + 1),
                  torch::full({4}, double(r) - 7.0, torch::kFloat64)};
  auto expected = tensors[0];
  for (auto& t : expected) t = t.clone();
  on_each_rank(2, [&](int64_t r) { groups_[r]->broadcast(tensors[r], 0); });
  for (int64_t r = 0; r < 2; ++r)
    for (size_t i = 0; i < expected.size(); ++i) EXPECT_TRUE(tensors[r][i].equal(expected[i])) << "rank " << r << " tensor " << i;
}

// Started collectives change nothing until wait(); then a broadcast leaves the root's values
// everywhere and a reduce the sums on its root only (one flat collective per dtype).
TEST_F(DistTest, StartedBroadcastAndReduceLandOnWait) {
  std::vector<std::vector<torch::Tensor>> b(2), s(2), before(2);
  on_each_rank(2, [&](int64_t r) {
    b[r] = {torch::full({2, 2}, float(r + 1)), torch::arange(3, torch::kInt64) + 10 * r};
    s[r] = {torch::full({3}, float(r + 1)), torch::full({2}, double(r) + 0.5, torch::kFloat64),
            torch::full({1, 2}, float(10 * (r + 1)))};
    auto cast = groups_[r]->broadcast_async(b[r], 1);
    auto sum = groups_[r]->reduce_sum_to_async(s[r], 0);
    EXPECT_TRUE(cast.active());
    for (const auto& t : b[r]) before[r].push_back(t.clone());
    sum.wait();
    cast.wait();
    EXPECT_FALSE(cast.active());
    cast.wait();  // a second wait does nothing
  });
  EXPECT_TRUE(before[0][0].equal(torch::full({2, 2}, 1.f)));  // rank 0 saw its own values before wait()
  for (int64_t r = 0; r < 2; ++r) {
    EXPECT_TRUE(b[r][0].equal(torch::full({2, 2}, 2.f))) << "rank " << r;
    EXPECT_TRUE(b[r][1].equal(torch::arange(3, torch::kInt64) + 10)) << "rank " << r;
  }
  EXPECT_TRUE(s[0][0].equal(torch::full({3}, 3.f)));
  EXPECT_TRUE(s[0][1].equal(torch::full({2}, 2.0, torch::kFloat64)));
  EXPECT_TRUE(s[0][2].equal(torch::full({1, 2}, 30.f)));
  EXPECT_TRUE(s[1][0].equal(torch::full({3}, 2.f)));  // not the root: as it was
}

TEST_F(DistTest, AllGatherRowsConcatenatesUnevenBlocksInRankOrder) {
  std::vector<torch::Tensor> out(2);
  on_each_rank(2, [&](int64_t r) {
    auto x = torch::arange(r == 0 ? 6 : 2, torch::kFloat).view({-1, 2}) + 100 * r;  // [3, 2] / [1, 2]
    out[r] = groups_[r]->all_gather_rows(x);
  });
  auto expected = torch::cat({torch::arange(6, torch::kFloat).view({3, 2}), torch::arange(2, torch::kFloat).view({1, 2}) + 100});
  EXPECT_TRUE(out[0].equal(expected));
  EXPECT_TRUE(out[1].equal(expected));
}

// Issue 6 (a): one optimizer step with world size 2 and per-rank batch b gives the weights of world
// size 1 with batch 2b on the same samples.
TEST_F(DistTest, OneStepOfTwoRanksEqualsOneStepOfDoubleBatch) {
  torch::set_num_threads(1);
  models::ModelContext ctx;
  ctx.num_items = 40;
  ctx.max_seq_len = 6;
  const std::string yaml = "name: hstu\nhidden_dim: 16\nnum_blocks: 2\nnum_heads: 2\ndropout: 0.0\ntime_bias: false\n";
  std::vector<models::SequenceRecommender> models;
  for (int i = 0; i < 3; ++i) {  // reference, rank 0, rank 1: identical initial weights
    torch::manual_seed(5);
    auto node = config::ConfigNode::parse(yaml);
    models.push_back(models::make_model(node, ctx));
  }
  const int64_t b = 4, w = 6;
  torch::manual_seed(9);
  data::SequenceBatch full;
  full.item_ids = torch::randint(1, 41, {2 * b, w}, torch::kInt64);  // no padding: equal positions per rank
  full.targets = torch::randint(1, 41, {2 * b, w}, torch::kInt64);
  full.user_ids = torch::arange(2 * b, torch::kInt64);
  full.position_offset = 0;
  auto half = [&](int64_t r) {
    data::SequenceBatch h = full;
    h.item_ids = full.item_ids.narrow(0, r * b, b);
    h.targets = full.targets.narrow(0, r * b, b);
    h.user_ids = full.user_ids.narrow(0, r * b, b);
    return h;
  };
  config::LossOptions loss;
  loss.name = config::LossName::kSoftmax;
  loss.temperature = 0.1;
  auto trainable = [](models::SequenceRecommenderImpl& m) {
    std::vector<std::pair<std::string, torch::Tensor>> ps;
    for (const auto& p : m.named_parameters())
      if (p.value().requires_grad()) ps.emplace_back(p.key(), p.value());
    return ps;
  };
  train::AdamWOptions adam{0.01, 0.9, 0.98, 1e-8, 0.01};
  {
    train::AdamW opt(trainable(*models[0]), adam);
    train::compute_loss(*models[0], full, loss).backward();
    opt.step(0.01);
  }
  std::vector<int64_t> buckets(2), overlapped(2);
  on_each_rank(2, [&](int64_t r) {
    auto& m = *models[1 + r];
    GradientReducerOptions ro;
    ro.bucket_bytes = 4096;  // several buckets, so that some are sent while backward runs
    GradientReducer reducer(groups_[r], trainable(m), ro);
    train::AdamW opt(trainable(m), adam);
    train::compute_loss(m, half(r), loss).backward();
    reducer.finish();
    opt.step(0.01);
    buckets[r] = reducer.num_buckets();
    overlapped[r] = reducer.buckets_sent_during_backward();
  });
  EXPECT_GT(buckets[0], 2);
  EXPECT_GE(overlapped[0], 1) << "no bucket was all-reduced during backward";
  auto ref = models[0]->named_parameters();
  for (int64_t r = 0; r < 2; ++r) {
    auto got = models[1 + r]->named_parameters();
    for (const auto& p : ref) {
      const auto& q = got[p.key()];
      const double diff = (q - p.value()).abs().max().item<double>();
      EXPECT_LT(diff, 1e-6) << p.key() << " on rank " << r;
    }
  }
  // And the step did move the weights (the comparison is not vacuous).
  torch::manual_seed(5);
  auto node = config::ConfigNode::parse(yaml);
  auto initial = models::make_model(node, ctx);
  double moved = 0;
  for (const auto& p : initial->named_parameters())
    moved = std::max(moved, (p.value() - ref[p.key()]).abs().max().item<double>());
  EXPECT_GT(moved, 1e-3);
}

TEST_F(DistTest, ParameterWithoutGradientOnOneRankGetsTheMeanOfTheOthers) {
  std::vector<torch::Tensor> a(2), c(2);
  on_each_rank(2, [&](int64_t r) {
    auto pa = torch::ones({3}, torch::requires_grad());
    auto pc = torch::ones({2}, torch::requires_grad());
    GradientReducer reducer(groups_[r], {{"a", pa}, {"c", pc}});
    auto x = torch::full({3}, float(r + 1));
    auto loss = (pa * x).sum();
    if (r == 1) loss = loss + (pc * 4.0).sum();  // rank 0 never touches c
    loss.backward();
    reducer.finish();
    a[r] = pa.grad().clone();
    c[r] = pc.grad().clone();
  });
  for (int64_t r = 0; r < 2; ++r) {
    EXPECT_TRUE(a[r].allclose(torch::full({3}, 1.5f))) << a[r];
    EXPECT_TRUE(c[r].allclose(torch::full({2}, 2.0f))) << c[r];
  }
}

// Gradient accumulation (no_sync): two backward passes without communication, then one with;
// every rank gets the mean over ranks of its summed gradients. A parameter that only got gradients
// in the silent passes contributes what .grad holds.
TEST_F(DistTest, SilentBackwardPassesAccumulateAndTheSyncedOneSendsTheirSum) {
  std::vector<torch::Tensor> a(2), c(2);
  on_each_rank(2, [&](int64_t r) {
    auto pa = torch::ones({3}, torch::requires_grad());
    auto pc = torch::ones({2}, torch::requires_grad());
    GradientReducer reducer(groups_[r], {{"a", pa}, {"c", pc}});
    reducer.set_sync(false);
    ((pa * float(r + 1)).sum() + (pc * 3.0f).sum()).backward();  // a: r+1, c: 3
    (pa * 10.0f).sum().backward();                               // a: +10
    reducer.set_sync(true);
    (pa * float(100 * (r + 1))).sum().backward();                // a: +100 (r+1); c untouched
    reducer.finish();
    a[r] = pa.grad().clone();
    c[r] = pc.grad().clone();
  });
  // a: rank 0 sums 1 + 10 + 100 = 111, rank 1 2 + 10 + 200 = 212: mean 161.5. c: 3 on both.
  for (int64_t r = 0; r < 2; ++r) {
    EXPECT_TRUE(a[r].allclose(torch::full({3}, 161.5f))) << a[r];
    EXPECT_TRUE(c[r].allclose(torch::full({2}, 3.0f))) << c[r];
  }
}

// ZeRO-2: each bucket is reduced to its owner only; the other rank keeps no gradient for it.
TEST_F(DistTest, OwnedBucketsAreReducedToTheirOwnerAndReleasedElsewhere) {
  std::vector<std::vector<torch::Tensor>> grads(2);
  std::vector<int64_t> sent(2);
  on_each_rank(2, [&](int64_t r) {
    std::vector<torch::Tensor> ps;
    std::vector<std::pair<std::string, torch::Tensor>> named;
    for (int i = 0; i < 4; ++i) {
      ps.push_back(torch::ones({64}, torch::requires_grad()));
      named.emplace_back("p" + std::to_string(i), ps.back());
    }
    GradientReducerOptions ro;
    ro.owners = {0, 0, 1, 1};
    ro.bucket_bytes = 256;  // one parameter per bucket
    GradientReducer reducer(groups_[r], named, ro);
    for (int step = 0; step < 2; ++step) {  // the second step starts from released gradients
      for (auto& p : ps)
        if (p.grad().defined()) p.mutable_grad().zero_();
      torch::Tensor loss = torch::zeros({});
      for (int i = 0; i < 4; ++i) loss = loss + (ps[i] * float((i + 1) * (r + 1))).sum();
      loss.backward();
      reducer.finish();
    }
    for (auto& p : ps) grads[r].push_back(p.grad().defined() ? p.grad().clone() : torch::Tensor());
    sent[r] = reducer.bytes_per_step();
  });
  for (int64_t r = 0; r < 2; ++r)
    for (int i = 0; i < 4; ++i) {
      const bool owned = (i < 2) == (r == 0);
      ASSERT_EQ(grads[r][i].defined(), owned) << "rank " << r << " p" << i;
      // mean over ranks of (i+1)(r+1): (i+1) * 1.5
      if (owned) {
        EXPECT_TRUE(grads[r][i].allclose(torch::full({64}, 1.5f * float(i + 1)))) << grads[r][i];
      }
    }
  EXPECT_EQ(sent[0], 4 * 64 * 4);
}

// Issue 6 (d): the gathered pool has world x batch x (S+1) rows and the gradients of every rank's
// loss flow back to each rank's own item embeddings.
TEST_F(DistTest, GatheredNegativePoolHasAllRanksRowsAndGradientsReachEachRank) {
  const int64_t batch = 3, s = 4, rows = batch * (s + 1), dim = 8, items = 50;
  torch::manual_seed(3);
  auto table = torch::randn({items + 1, dim});
  std::vector<torch::Tensor> ids = {torch::randint(1, items + 1, {rows}, torch::kInt64),
                                    torch::randint(1, items + 1, {rows}, torch::kInt64)};
  std::vector<torch::Tensor> upstream = {torch::randn({2 * rows, dim}), torch::randn({2 * rows, dim})};  // d loss_r / d pool
  std::vector<torch::Tensor> pools(2), grads(2);
  on_each_rank(2, [&](int64_t r) {
    auto emb = table.clone().requires_grad_(true);              // this rank's copy of the item table
    auto mine = emb.index_select(0, ids[r]);                   // [b (S+1), D]
    auto pool = all_gather_with_grad(mine, groups_[r]);        // [W b (S+1), D]
    (pool * upstream[r]).sum().backward();
    pools[r] = pool.detach();
    grads[r] = emb.grad().clone();
  });
  auto expected_pool = torch::cat({table.index_select(0, ids[0]), table.index_select(0, ids[1])});
  auto total = upstream[0] + upstream[1];  // both ranks' losses see the whole pool
  for (int64_t r = 0; r < 2; ++r) {
    ASSERT_EQ(pools[r].size(0), 2 * batch * (s + 1));
    EXPECT_TRUE(pools[r].equal(expected_pool)) << "rank " << r;
    auto expected_grad = torch::zeros_like(table).index_add_(0, ids[r], total.narrow(0, r * rows, rows));
    EXPECT_TRUE(grads[r].allclose(expected_grad, 1e-5, 1e-6)) << "rank " << r;
  }
  // Without a default group the accessor is the identity (single process).
  set_default_group(nullptr);
  auto x = torch::randn({2, 3});
  EXPECT_TRUE(gather_across_ranks(x).is_same(x));
}

data::InteractionStore eval_store() {
  data::StoreData d;
  d.num_items = 30;
  d.user_offsets.push_back(0);
  for (int64_t u = 0; u < 23; ++u) {
    for (int64_t i = 0; i < 4 + u % 5; ++i) d.item_ids.push_back(static_cast<int32_t>(1 + (u * 7 + i * 3) % 30));
    d.user_offsets.push_back(d.item_ids.size());
  }
  return data::InteractionStore::from_data(std::move(d));
}

TEST_F(DistTest, ShardedEvaluationEqualsSingleProcessEvaluation) {
  torch::set_num_threads(1);
  auto store = eval_store();
  models::ModelContext ctx;
  ctx.num_items = 30;
  ctx.max_seq_len = 8;
  torch::manual_seed(1);
  auto node = config::ConfigNode::parse("name: sasrec\nhidden_dim: 8\nnum_blocks: 1\nnum_heads: 1\ndropout: 0.0\n");
  auto model = models::make_model(node, ctx);
  for (const config::Protocol protocol : {config::Protocol::kFull, config::Protocol::kSampled}) {
    config::EvalOptions eo;
    eo.protocol = protocol;
    eo.num_negatives = 10;
    eo.ks = {1, 5, 10};
    eo.batch_size = 1;  // one query per forward pass: every rank computes exactly the single-process scores
    auto single = eval::evaluate(*model, store, data::Split::kTest, eo, 8);
    std::vector<eval::EvalResult> parts(2);
    on_each_rank(2, [&](int64_t r) {
      eval::EvalShard shard;
      shard.rank = r;
      shard.world_size = 2;
      shard.sum = [&, r](const std::vector<double>& v) { return groups_[r]->all_reduce_sum(v); };
      parts[r] = eval::evaluate(*model, store, data::Split::kTest, eo, 8, {}, shard);
    });
    for (int64_t r = 0; r < 2; ++r) {
      EXPECT_EQ(parts[r].users, single.users) << config::name(protocol);
      for (const auto& [name, value] : single.metrics)
        EXPECT_NEAR(parts[r].metrics.at(name), value, 1e-12) << config::name(protocol) << " " << name << " rank " << r;
    }
    EXPECT_GT(single.metrics.at("hr@10"), 0.0);
  }
}

// ZeRO-3's gate on 2 ranks over 4 linear blocks, run as HLLM runs its towers: two passes of
// blocks 0-1 (one per chunk of items), then blocks 2-3 over their sum; two micro-batches per step,
// two steps. With and without prefetch, the owners end each step with the gradients of the
// unsharded model (mean over ranks of the summed micro-batch gradients), the other ranks with none,
// and no block is left whole. On the second step, per micro-batch 6 forward runs (0 1 0 1 2 3)
// and 6 backward arrivals (3 2 1 0 1 0) need a block whole. Without prefetch 21 of those 24 gather
// on demand (block 0, whose input has no gradient hook, stays whole from its first backward arrival
// to the end of the step); with prefetch only the step's first use does (block 0 of the first
// forward): blocks 0 and 1 stay whole between the two passes, block 3 from forward into backward,
// and the next block is gathered while one computes.
TEST_F(DistTest, ZeroThreeGateWithAndWithoutPrefetchGivesTheUnshardedGradients) {
  torch::manual_seed(3);
  std::vector<torch::nn::Linear> reference;
  for (int i = 0; i < 4; ++i) reference.emplace_back(torch::nn::Linear(4, 4));
  std::vector<std::vector<torch::Tensor>> xs(2);  // [rank][step * 2 + micro]
  for (int64_t r = 0; r < 2; ++r)
    for (int k = 0; k < 4; ++k) xs[r].push_back(torch::randn({3, 4}));
  auto loss_of = [](std::vector<torch::nn::Linear>& blocks, nn::BlockGate* gate, const torch::Tensor& x) {
    auto run = [&](size_t i, const torch::Tensor& h) {
      auto body = [&](const torch::Tensor& in) { return torch::tanh(blocks[i]->forward(in)); };
      return gate ? gate->run(i, h, body) : body(h);
    };
    torch::Tensor sum = run(1, run(0, x)) + run(1, run(0, x * 2));
    return run(3, run(2, sum)).pow(2).mean();
  };
  auto named = [](std::vector<torch::nn::Linear>& blocks) {
    train::NamedTensors ps;
    for (size_t i = 0; i < blocks.size(); ++i) {
      ps.emplace_back(std::to_string(i) + ".weight", blocks[i]->weight);
      ps.emplace_back(std::to_string(i) + ".bias", blocks[i]->bias);
    }
    return ps;
  };
  // The unsharded model's gradients of each step.
  std::vector<std::vector<torch::Tensor>> expected(2);
  for (int step = 0; step < 2; ++step) {
    for (auto& [name, p] : named(reference)) p.mutable_grad() = torch::Tensor();
    for (int64_t r = 0; r < 2; ++r)
      for (int m = 0; m < 2; ++m) loss_of(reference, nullptr, xs[r][step * 2 + m]).backward();
    for (auto& [name, p] : named(reference)) expected[step].push_back(p.grad() / 2);
  }
  for (const bool prefetch : {false, true}) {
    std::vector<int64_t> uses(2), on_demand(2), uses_first(2), on_demand_first(2);
    on_each_rank(2, [&](int64_t r) {
      std::vector<torch::nn::Linear> blocks;
      std::vector<std::shared_ptr<torch::nn::Module>> modules;
      for (auto& ref : reference) {
        blocks.emplace_back(torch::nn::Linear(4, 4));
        torch::NoGradGuard no_grad;
        blocks.back()->weight.copy_(ref->weight);
        blocks.back()->bias.copy_(ref->bias);
        modules.push_back(blocks.back().ptr());
      }
      const auto params = named(blocks);
      const auto plan = train::ShardPlan::balanced(params, 2);
      train::Zero3Gate gate(groups_[r], plan, params, modules, prefetch);
      gate.shard();
      const int64_t owned = gate.resident_bytes();
      EXPECT_LT(owned, gate.total_bytes());
      for (int step = 0; step < 2; ++step) {
        for (const auto& [name, p] : params) p.mutable_grad() = torch::Tensor();
        for (int m = 0; m < 2; ++m) loss_of(blocks, &gate, xs[r][step * 2 + m]).backward();
        gate.finish();
        EXPECT_EQ(gate.resident_bytes(), owned) << "rank " << r << " step " << step << ": a block is left whole";
        for (size_t i = 0; i < params.size(); ++i) {
          const auto& g = params[i].second.grad();
          if (plan.owner[i] != r) {
            EXPECT_FALSE(g.defined()) << params[i].first << " on rank " << r;
            continue;
          }
          ASSERT_TRUE(g.defined()) << params[i].first;
          EXPECT_TRUE(g.allclose(expected[step][i], 1e-5, 1e-6))
              << params[i].first << " step " << step << " prefetch " << prefetch << "\n" << g << "\n" << expected[step][i];
        }
        if (step == 0) uses_first[r] = gate.block_uses(), on_demand_first[r] = gate.on_demand_gathers();
      }
      uses[r] = gate.block_uses() - uses_first[r];
      on_demand[r] = gate.on_demand_gathers() - on_demand_first[r];
    });
    for (int64_t r = 0; r < 2; ++r) {
      EXPECT_EQ(uses[r], 2 * 12) << "rank " << r;
      // Without prefetch: the first micro-batch's 6 forward runs and 5 of its backward arrivals
      // (block 0 of the second backward pass is still whole); the second's 5 + 5 (block 0 whole
      // from the first's backward at its first run). With prefetch: block 0's first run only.
      EXPECT_EQ(on_demand[r], prefetch ? 1 : 6 + 5 + 5 + 5) << "rank " << r << " prefetch " << prefetch;
    }
  }
}

}  // namespace
}  // namespace seqrec::dist
