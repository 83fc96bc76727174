// `seqrec launch` end to end, two worker processes over Gloo on this machine:
//  - one step of 2 ranks x batch b leaves exactly the weights of 1 process x batch 2b (issue 6 (a),
//    through the real trainer: broadcast, gradient reducer, sharded evaluation);
//  - a short HSTU run reaches the single-process validation metrics within noise (issue 6 (b));
//  - killing one worker ends the job with a message naming it and a non-zero status (issue 6 (c)).
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <nlohmann/json.hpp>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "seqrec/dist/process_group.h"
#include "seqrec/train/checkpoint.h"
#include "cli/cli_support.h"
#include "cli/lsvcr_cli_support.h"
#include "llm/tokenizer_fixtures.h"
#include "support.h"

namespace {

using seqrec::testing::TempDir;

using seqrec::testing::cli::last_json;
using seqrec::testing::cli::lines_of;
using seqrec::testing::cli::Result;
using seqrec::testing::cli::slurp;

Result run(const TempDir& dir, const std::string& args) { return seqrec::testing::cli::run_seqrec(args, dir); }

/// Validation lines of metrics.jsonl.
std::vector<nlohmann::json> valid_metrics(const std::string& path) {
  std::vector<nlohmann::json> out;
  std::istringstream in(slurp(path));
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) {
      auto j = nlohmann::json::parse(line);
      if (j["split"] == "valid") out.push_back(j);
    }
  return out;
}

class LaunchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!seqrec::dist::have_gloo()) GTEST_SKIP() << "this build has no Gloo (libgloo-dev missing at configure time)";
    try {
      seqrec::dist::make_local_groups(2);
    } catch (const std::exception& e) {
      GTEST_SKIP() << "Gloo cannot create a loopback device on this host: " << e.what();
    }
  }
  TempDir dir_;
};

// 8 users x 9 items and L = 6: every user gives one training sample of 6 full positions, so the
// per-rank mean losses of 2 x 4 sequences average to the 8-sequence mean exactly.
const char* kHstu = "  name: hstu\n  hidden_dim: 16\n  num_blocks: 2\n  num_heads: 2\n  dropout: 0.0\n  time_bias: false\n";
const char* kLlamaId = "  name: llama_id\n  item_dim: 16\n  hidden_dim: 16\n  num_blocks: 3\n  num_heads: 2\n  dropout: 0.0\n";

std::string exact_step_config(const TempDir& dir, const std::string& out, int64_t batch, int users = 8,
                              const std::string& model = kHstu) {
  std::string seqs;
  for (int u = 0; u < users; ++u) {
    seqs += "u" + std::to_string(u);
    for (int i = 0; i < 9; ++i) seqs += " " + std::to_string(1 + (u * 5 + i * 7) % 30);
    seqs += "\n";
  }
  dir.write("seqs.txt", seqs);
  return dir.write(out + ".yaml",
                   "prepare:\n  input: " + dir.file("seqs.txt") + "\n  format: user_sequences\n  output: " + dir.file("data") +
                       "\ndata:\n  dir: " + dir.file("data") +
                       "\n  max_seq_len: 6\nmodel:\n" + model + "train:\n  out_dir: " + dir.file(out) +
                       "\n  epochs: 1\n  batch_size: " + std::to_string(batch) +
                       "\n  lr: 0.01\n  weight_decay: 0.01\n  length_bucketing: false\n  threads: 1\n  log_every: 1000\n"
                       "  metric: ndcg@10\n  loss:\n    name: softmax\n    temperature: 0.1\n"
                       "eval:\n  protocol: full\n  ks: [1, 5, 10]\n  batch_size: 1\n");
}

TEST_F(LaunchTest, TwoWorkersOneStepEqualsOneProcessWithDoubleBatch) {
  const std::string single = exact_step_config(dir_, "single", 8), pair = exact_step_config(dir_, "pair", 4);
  Result prep = run(dir_, "prepare --config " + single);
  ASSERT_EQ(prep.code, 0) << prep.err;
  Result one = run(dir_, "train --config " + single);
  ASSERT_EQ(one.code, 0) << one.err;
  Result two = run(dir_, "launch --nproc-per-node 2 -- train --config " + pair);
  ASSERT_EQ(two.code, 0) << two.err;
  EXPECT_NE(two.err.find("data parallel: 2 ranks (gloo)"), std::string::npos) << two.err;
  EXPECT_NE(two.err.find("training 8 sequences, 1 batches/epoch"), std::string::npos) << two.err;

  auto a = seqrec::train::load_tensors(dir_.file("single/last.safetensors"), nullptr);
  auto b = seqrec::train::load_tensors(dir_.file("pair/last.safetensors"), nullptr);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(a[i].first, b[i].first);
    EXPECT_LT((a[i].second - b[i].second).abs().max().item<double>(), 1e-5) << a[i].first;
  }
  // The test metrics printed by rank 0 were computed on 2 shards and reduced: same numbers.
  auto ja = last_json(one.out), jb = last_json(two.out);
  ASSERT_FALSE(jb.is_null()) << two.out;
  EXPECT_EQ(ja["users"], jb["users"]);
  for (const char* k : {"hr@1", "hr@5", "hr@10", "ndcg@10", "mrr"})
    EXPECT_NEAR(ja[k].get<double>(), jb[k].get<double>(), 1e-6) << k;
}

void expect_same_file_tensors(const std::string& a_path, const std::string& b_path, double tolerance) {
  auto a = seqrec::train::load_tensors(a_path, nullptr);
  auto b = seqrec::train::load_tensors(b_path, nullptr);
  ASSERT_EQ(a.size(), b.size()) << a_path << " vs " << b_path;
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(a[i].first, b[i].first);
    const double scale = std::max(1.0, a[i].second.abs().max().item<double>());
    EXPECT_LT((a[i].second - b[i].second).abs().max().item<double>(), tolerance * scale)
        << a[i].first << ": " << a_path << " vs " << b_path;
  }
}

// 12 users, one step per epoch of the whole set (12 sequences of 6 positions), 3 epochs. AdamW's
// eps is raised to 1e-6 so that rounding noise on exactly-zero gradient coordinates cannot become
// steps of lr (see the gradient accumulation test in trainer_test.cc).
const char* kThreeSteps = " --set train.epochs=3 --set train.eps=1e-6";

// The AdamW moments of a resume state: its own "optim." tensors, or those of the shards it names.
std::map<std::string, torch::Tensor> moments_of_state(const std::string& dir) {
  std::map<std::string, torch::Tensor> out;
  std::map<std::string, std::string> meta;
  for (auto& [name, t] : seqrec::train::load_tensors(dir + "/last.state.safetensors", &meta))
    if (name.rfind("optim.", 0) == 0) out[name.substr(6)] = t;
  std::istringstream shards(meta["optimizer_shards"]);
  for (std::string shard; std::getline(shards, shard);)
    for (auto& [name, t] : seqrec::train::load_tensors(dir + "/" + shard, nullptr)) out[name] = t;
  return out;
}

// ZeRO-1 (sharded optimizer state) and ZeRO-2 (and gradients reduced to their owner) over 2 Gloo
// processes: after 3 steps the weights are those of plain data parallelism and of one process with
// the combined batch, and the moments (consolidated by rank 0 for ZeRO-1, one shard file per rank
// for ZeRO-2) are DDP's.
TEST_F(LaunchTest, ZeroOneAndTwoGiveTheWeightsOfDataParallelismAndOfOneProcess) {
  const std::string single = exact_step_config(dir_, "single", 12, 12);
  ASSERT_EQ(run(dir_, "prepare --config " + single).code, 0);
  Result one = run(dir_, "train --config " + single + kThreeSteps);
  ASSERT_EQ(one.code, 0) << one.err;
  for (int stage : {0, 1, 2}) {
    const std::string name = "zero" + std::to_string(stage);
    const std::string config = exact_step_config(dir_, name, 6, 12);
    Result two = run(dir_, "launch --nproc-per-node 2 -- train --config " + config + kThreeSteps +
                               " --set train.zero_stage=" + std::to_string(stage) +
                               (stage == 1 ? " --set train.zero_state=consolidated" : ""));
    ASSERT_EQ(two.code, 0) << two.err;
    if (stage > 0) {
      EXPECT_NE(two.err.find("ZeRO-" + std::to_string(stage) + ": optimizer state"), std::string::npos) << two.err;
    }
    if (stage == 2) {
      EXPECT_NE(two.err.find("reduced to their owners"), std::string::npos) << two.err;
    }
    expect_same_file_tensors(dir_.file("single/last.safetensors"), dir_.file(name + "/last.safetensors"), 1e-5);
    if (stage == 1)  // weights and moments of the resume unit, in one file
      expect_same_file_tensors(dir_.file("zero0/last.state.safetensors"), dir_.file(name + "/last.state.safetensors"), 1e-5);
    if (stage == 2) {  // the moments in one shard per rank (only the last epoch's kept)
      EXPECT_TRUE(std::filesystem::exists(dir_.file("zero2/last.state.e3.rank1-of-2.safetensors")));
      EXPECT_FALSE(std::filesystem::exists(dir_.file("zero2/last.state.e2.rank1-of-2.safetensors")));
      auto a = moments_of_state(dir_.file("zero0")), b = moments_of_state(dir_.file("zero2"));
      ASSERT_EQ(a.size(), b.size());
      ASSERT_GT(a.size(), 2u);
      for (auto& [name, t] : a) {
        ASSERT_TRUE(b.count(name)) << name;
        EXPECT_LT((t - b[name]).abs().max().item<double>(), 1e-5 * std::max(1.0, t.abs().max().item<double>())) << name;
      }
    }
  }
}

// ZeRO-3 on LLaMA-ID's blocks (their parameters live on their owners and are gathered per block),
// 2 Gloo processes, 3 steps: the weights and moments of DDP, also with gradient accumulation. A
// model without a gated block stack refuses stage 3 by name.
TEST_F(LaunchTest, ZeroThreeOnLlamaIdGivesTheWeightsOfDataParallelism) {
  const std::string ddp = exact_step_config(dir_, "ddp", 6, 12, kLlamaId);
  ASSERT_EQ(run(dir_, "prepare --config " + ddp).code, 0);
  Result a = run(dir_, "launch --nproc-per-node 2 -- train --config " + ddp + kThreeSteps);
  ASSERT_EQ(a.code, 0) << a.err;
  const std::string z3 = exact_step_config(dir_, "z3", 6, 12, kLlamaId);
  Result b = run(dir_, "launch --nproc-per-node 2 -- train --config " + z3 + kThreeSteps + " --set train.zero_stage=3");
  ASSERT_EQ(b.code, 0) << b.err;
  EXPECT_NE(b.err.find("ZeRO-3: optimizer state, gradients and block parameters sharded"), std::string::npos) << b.err;
  // Between blocks rank 0 holds only the block parameters it owns (about half: the plan balances
  // elements over all parameters, item table included).
  std::smatch held;
  ASSERT_TRUE(std::regex_search(b.err, held, std::regex(R"(rank 0 holds ([0-9]+) of ([0-9]+) bytes of block parameters)")))
      << b.err;
  const double share = std::stod(held[1]) / std::stod(held[2]);
  EXPECT_GT(share, 0.25) << held[0];
  EXPECT_LT(share, 0.75) << held[0];
  expect_same_file_tensors(dir_.file("ddp/last.safetensors"), dir_.file("z3/last.safetensors"), 1e-5);
  auto ma = moments_of_state(dir_.file("ddp")), mb = moments_of_state(dir_.file("z3"));
  ASSERT_EQ(ma.size(), mb.size());
  for (auto& [name, t] : ma)
    EXPECT_LT((t - mb[name]).abs().max().item<double>(), 1e-5 * std::max(1.0, t.abs().max().item<double>())) << name;
  // With gradient accumulation (2 micro-batches of 3 per rank): block gradients are reduced to their
  // owners after each micro-batch and summed there.
  const std::string acc = exact_step_config(dir_, "z3acc", 3, 12, kLlamaId);
  Result c = run(dir_, "launch --nproc-per-node 2 -- train --config " + acc + kThreeSteps +
                           " --set train.zero_stage=3 --set train.grad_accum_steps=2");
  ASSERT_EQ(c.code, 0) << c.err;
  expect_same_file_tensors(dir_.file("ddp/last.safetensors"), dir_.file("z3acc/last.safetensors"), 1e-5);

  const std::string hstu = exact_step_config(dir_, "hstu3", 6, 12);
  Result refused = run(dir_, "launch --nproc-per-node 2 -- train --config " + hstu + " --set train.zero_stage=3");
  EXPECT_NE(refused.code, 0);
  EXPECT_NE(refused.err.find("train.zero_stage: 3 shards the parameters of a model's block stack"), std::string::npos)
      << refused.err;
}

// PerSRec's item_dropout can drop every recent input of a batch, leaving it no target position.
// Alone, a process skips such a step (it used to stop with "loss is nan"); under several ranks a
// micro-batch without positions still runs forward and backward, scaled by 0, because ZeRO-3's
// block gathers are collectives every rank joins (skipping it left the other rank waiting in a
// gather until Gloo's timeout). 16 users x 5 items: each training row is 2 recent inputs, both
// dropped with probability 0.81.
TEST_F(LaunchTest, BatchesWithoutTargetPositionsAreSkippedAloneAndJoinTheCollectivesUnderZeroThree) {
  std::string seqs;
  for (int u = 0; u < 16; ++u) {
    seqs += "u" + std::to_string(u);
    for (int i = 0; i < 5; ++i) seqs += " " + std::to_string(1 + (u * 5 + i * 7) % 30);
    seqs += "\n";
  }
  dir_.write("short.txt", seqs);
  auto config = [&](const std::string& out) {
    return dir_.write(out + ".yaml",
                      "prepare:\n  input: " + dir_.file("short.txt") + "\n  format: user_sequences\n  output: " +
                          dir_.file("short") + "\ndata:\n  dir: " + dir_.file("short") + "\n  max_seq_len: 6\nmodel:\n" +
                          kLlamaId +
                          "  personalized:\n    number_of_user_tokens: 1\n    pretrain_item_num: 3\n"
                          "    recent_item_num: 3\n    item_dropout: 0.9\n    boundary_target: none\ntrain:\n  out_dir: " + dir_.file(out) +
                          "\n  epochs: 2\n  batch_size: 1\n  lr: 0.01\n  threads: 1\n  log_every: 1000\n"
                          "  metric: ndcg@5\n  loss:\n    name: softmax\n    temperature: 0.1\neval:\n  protocol: full\n  ks: [1, 5]\n");
  };
  ASSERT_EQ(run(dir_, "prepare --config " + config("alone")).code, 0);
  Result alone = run(dir_, "train --config " + config("alone"));
  ASSERT_EQ(alone.code, 0) << alone.err;
  std::smatch skipped;
  ASSERT_TRUE(std::regex_search(alone.err, skipped, std::regex(R"(epoch 1: ([0-9]+) of 16 steps had no target position)")))
      << alone.err;
  EXPECT_GT(std::stoi(skipped[1]), 0);
  // A wrong skip would now fail within 30 s instead of Gloo's default 300.
  ::setenv("SEQREC_DIST_TIMEOUT", "30", 1);
  const std::string accumulate = " --set train.grad_accum_steps=2";
  Result ddp = run(dir_, "launch --nproc-per-node 2 -- train --config " + config("ddp") + accumulate);
  Result z3 = run(dir_, "launch --nproc-per-node 2 -- train --config " + config("z3") + accumulate +
                            " --set train.zero_stage=3");
  ::unsetenv("SEQREC_DIST_TIMEOUT");
  ASSERT_EQ(ddp.code, 0) << ddp.err;
  ASSERT_EQ(z3.code, 0) << z3.err;
  // Micro-batches without positions add zero gradients on both paths: the same weights.
  expect_same_file_tensors(dir_.file("ddp/last.safetensors"), dir_.file("z3/last.safetensors"), 1e-5);
}

// ZeRO-3 on HLLM's two towers (one gate over the item LLM's blocks and the user LLM's), 2 Gloo
// processes: the item LLM runs once per chunk of 4 of the step's items, a count that differs between
// the ranks' batches, so the rank with fewer chunks runs filler passes (a missing one would leave
// the other rank waiting in a block's gather). Weights and moments are DDP's, also with gradient
// checkpointing.
TEST_F(LaunchTest, ZeroThreeOnHllmTowersGivesTheWeightsOfDataParallelism) {
  std::filesystem::create_directories(dir_.file("tok"));
  dir_.write("tok/tokenizer.json", seqrec::testing::tiny_byte_level().dump());
  auto config = [&](const std::string& out, const std::string& extra) {
    const std::string arch = "{config: {vocab_size: 263, hidden_size: 16, intermediate_size: 32, num_hidden_layers: 2, "
                             "num_attention_heads: 2}}";
    return dir_.write(out + ".yaml",
        "synth:\n  num_users: 40\n  num_items: 80\n  seed: 7\n  output: " + dir_.file("raw") + "\n"
        "prepare:\n  input: " + dir_.file("raw/interactions.csv") + "\n  format: csv\n  items: " +
        dir_.file("raw/items.csv") + "\n  items_format: table\n  output: " + dir_.file("data") + "\n"
        "  item_text: {tokenizer: " + dir_.file("tok") + ", text_keys: [title], max_text_length: 12, prompt: ''}\n"
        "data:\n  dir: " + dir_.file("data") + "\n  max_seq_len: 6\n"
        "model:\n  name: hllm\n  item_llm: " + arch + "\n  user_llm: " + arch + "\n  item_batch_size: 4\n" + extra +
        "train:\n  out_dir: " + dir_.file(out) + "\n  epochs: 2\n  batch_size: 4\n  lr: 0.01\n  eps: 1.0e-6\n"
        "  weight_decay: 0.01\n  length_bucketing: false\n  threads: 1\n  log_every: 1000\n  metric: ndcg@10\n"
        "  loss: {name: nce}\n"
        "eval:\n  protocol: full\n  ks: [5, 10]\n  batch_size: 8\n");
  };
  const std::string ddp = config("ddp", "");
  ASSERT_EQ(run(dir_, "synth --config " + ddp).code, 0);
  ASSERT_EQ(run(dir_, "prepare --config " + ddp).code, 0);
  Result a = run(dir_, "launch --nproc-per-node 2 -- train --config " + ddp);
  ASSERT_EQ(a.code, 0) << a.err;
  for (const std::string name : {"z3", "z3ckpt"}) {
    const std::string z3 = config(name, name == "z3ckpt" ? "  gradient_checkpointing: true\n" : "");
    Result b = run(dir_, "launch --nproc-per-node 2 -- train --config " + z3 + " --set train.zero_stage=3");
    ASSERT_EQ(b.code, 0) << b.err;
    EXPECT_NE(b.err.find("ZeRO-3: optimizer state, gradients and block parameters sharded"), std::string::npos) << b.err;
    expect_same_file_tensors(dir_.file("ddp/last.safetensors"), dir_.file(name + "/last.safetensors"), 1e-5);
    auto ma = moments_of_state(dir_.file("ddp")), mb = moments_of_state(dir_.file(name));
    ASSERT_EQ(ma.size(), mb.size());
    for (auto& [key, t] : ma)
      EXPECT_LT((t - mb[key]).abs().max().item<double>(), 1e-5 * std::max(1.0, t.abs().max().item<double>())) << key;
  }
}

// The sharded state a ZeRO-2 job of 2 ranks writes after epoch 1 resumes at 1 and at 3 ranks:
// after the next two steps the weights are those of the uninterrupted 2-rank run.
TEST_F(LaunchTest, ZeroStateWrittenAtTwoRanksResumesAtOneAndThreeRanks) {
  const std::string two = exact_step_config(dir_, "two", 6, 12);
  ASSERT_EQ(run(dir_, "prepare --config " + two).code, 0);
  Result full = run(dir_, "launch --nproc-per-node 2 -- train --config " + two + kThreeSteps + " --set train.zero_stage=2");
  ASSERT_EQ(full.code, 0) << full.err;
  const std::string cut = exact_step_config(dir_, "cut", 6, 12);
  Result first = run(dir_, "launch --nproc-per-node 2 -- train --config " + cut +
                               " --set train.epochs=1 --set train.eps=1e-6 --set train.zero_stage=2");
  ASSERT_EQ(first.code, 0) << first.err;
  EXPECT_EQ(moments_of_state(dir_.file("cut")).size(), moments_of_state(dir_.file("two")).size());
  for (int world : {1, 3}) {
    const std::string name = "resumed" + std::to_string(world);
    std::filesystem::copy(dir_.file("cut"), dir_.file(name), std::filesystem::copy_options::recursive);
    const std::string config = exact_step_config(dir_, name, 12 / world, 12);
    const std::string cmd = "train --config " + config + kThreeSteps + " --set train.zero_stage=2 --resume";
    Result r = run(dir_, world == 1 ? cmd : "launch --nproc-per-node 3 -- " + cmd);
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_NE(r.err.find("resuming"), std::string::npos) << r.err;
    expect_same_file_tensors(dir_.file("two/last.safetensors"), dir_.file(name + "/last.safetensors"), 1e-5);
    // The resumed run's own shards (world 3 writes three), the epoch-1 ones of 2 ranks removed.
    EXPECT_EQ(std::filesystem::exists(dir_.file(name + "/last.state.e3.rank2-of-3.safetensors")), world == 3);
    EXPECT_FALSE(std::filesystem::exists(dir_.file(name + "/last.state.e1.rank0-of-2.safetensors")));
  }
}

TEST_F(LaunchTest, HstuWithTwoWorkersMatchesSingleProcessValidationWithinNoise) {
  std::string common = "--config " + std::string(SEQREC_SOURCE_DIR) + "/configs/demo_hstu.yaml";
  for (const std::string& kv : std::vector<std::string>{"data.dir=" + dir_.file("data"), "data.max_seq_len=20", "model.hidden_dim=16", "model.num_blocks=1",
        "model.dropout=0.1", "train.epochs=8", "train.eval_every=4", "train.patience=0", "train.lr=0.005",
        "train.loss.num_negatives=16", "train.threads=1", "train.log_every=1000", "'eval.ks=[10]'"})
    common += " --set " + kv;
  const std::string synth = "--config " + std::string(SEQREC_SOURCE_DIR) + "/configs/demo.yaml --set synth.num_users=400 "
                            "--set synth.num_items=100 --set synth.output=" + dir_.file("raw") +
                            " --set prepare.input=" + dir_.file("raw/interactions.csv") + " --set prepare.items=" +
                            dir_.file("raw/items.csv") + " --set prepare.output=" + dir_.file("data");
  ASSERT_EQ(run(dir_, "synth " + synth).code, 0);
  ASSERT_EQ(run(dir_, "prepare " + synth).code, 0);
  // Same global batch (32) and learning rate: 1 x 32 against 2 x 16.
  Result one = run(dir_, "train " + common + " --set train.batch_size=32 --set train.out_dir=" + dir_.file("one"));
  ASSERT_EQ(one.code, 0) << one.err;
  Result two = run(dir_, "launch --nproc-per-node 2 -- train " + common +
                             " --set train.batch_size=16 --set train.out_dir=" + dir_.file("two"));
  ASSERT_EQ(two.code, 0) << two.err;
  auto va = valid_metrics(dir_.file("one/metrics.jsonl")), vb = valid_metrics(dir_.file("two/metrics.jsonl"));
  ASSERT_EQ(va.size(), 2u);
  ASSERT_EQ(vb.size(), 2u);
  EXPECT_EQ(va.back()["users"], vb.back()["users"]);  // every validation user counted once across the shards
  const double a = va.back()["ndcg@10"], b = vb.back()["ndcg@10"];
  // Noise: the runs differ in data order, negatives and dropout. Measured on this setup (valid
  // ndcg@10 after 8 epochs, seeds 42/43/44): one process 0.431/0.417/0.446 (spread 0.029), two
  // processes 0.436/0.413/0.411. Both must also have learnt (a random ranking of 100 items gives
  // ndcg@10 ~ 0.04).
  EXPECT_NEAR(a, b, 0.05) << "single " << a << " vs two workers " << b;
  EXPECT_GT(a, 0.1);
  EXPECT_GT(b, 0.1);
}

// LSVCR stage 1 under `seqrec launch`: 2 workers x 4 samples per task and step, negatives gathered
// across them, leave the weights of one process with 8 (two steps, no dropout); stage 2 refuses.
TEST_F(LaunchTest, LsvcrAlignTwoWorkersEqualOneProcessWithDoubleBatch) {
  const std::string stories = SEQREC_SOURCE_DIR "/../shared/models/stories260K/hf";
  if (!std::filesystem::exists(stories + "/config.json")) GTEST_SKIP() << "no " << stories;
  seqrec::testing::cli::make_small_lsvcr_data(dir_);
  if (HasFatalFailure()) return;
  const std::string common =
      "--config " + std::string(SEQREC_SOURCE_DIR) + "/configs/lsvcr/align.yaml --set data.dir=" + dir_.file("data") +
      " --set lsvcr.video_title_emb=" + dir_.file("v.safetensors") + " --set lsvcr.comment_emb=" + dir_.file("c.safetensors") +
      " --set lsvcr.align.llm=" + stories + " --set lsvcr.align.lora_dropout=0 --set lsvcr.align.max_steps=2"
      " --set lsvcr.align.max_prompt_tokens=64 --set model.dropout=0 --set model.max_history=6 --set model.max_position=12"
      " --set model.hidden_dim=16 --set model.ffn_dim=32 --set model.text_hidden_dim=16 --set model.text_dim=16"
      " --set train.threads=1 --set train.lr=0.003 --set train.eps=1e-6 --set train.log_every=1";
  Result one = run(dir_, "train " + common + " --set train.batch_size=8 --set train.out_dir=" + dir_.file("one"));
  ASSERT_EQ(one.code, 0) << one.err;
  Result two = run(dir_, "launch --nproc-per-node 2 -- train " + common + " --set train.batch_size=4 --set train.out_dir=" +
                             dir_.file("two"));
  ASSERT_EQ(two.code, 0) << two.err;
  EXPECT_NE(two.err.find("align: data parallel over 2 ranks (gloo), 4 video + 4 comment samples per rank and step"),
            std::string::npos) << two.err;
  // Both runs log the same whole-step losses (the ranks' shares averaged).
  const std::regex loss_line(R"(\[align\] epoch 1/1 step 2/\d+ loss ([0-9.]+) )");
  std::smatch ma, mb;
  ASSERT_TRUE(std::regex_search(one.err, ma, loss_line)) << one.err;
  ASSERT_TRUE(std::regex_search(two.err, mb, loss_line)) << two.err;
  EXPECT_NEAR(std::stod(ma[1]), std::stod(mb[1]), 2e-4);
  for (const char* f : {"sr_model.safetensors", "lora.safetensors", "contrast_adapter.safetensors"})
    expect_same_file_tensors(dir_.file(std::string("one/") + f), dir_.file(std::string("two/") + f), 1e-4);
  EXPECT_EQ(lines_of(two.out).size(), 1u) << two.out;  // rank 0's summary line only

  Result stage2 = run(dir_, "launch --nproc-per-node 2 -- train --config " + std::string(SEQREC_SOURCE_DIR) +
                                "/configs/lsvcr/synthetic.yaml --set data.dir=" + dir_.file("data") +
                                " --set lsvcr.video_title_emb=" + dir_.file("v.safetensors") + " --set lsvcr.comment_emb=" +
                                dir_.file("c.safetensors") + " --set train.out_dir=" + dir_.file("s2"));
  EXPECT_NE(stage2.code, 0);
  EXPECT_NE(stage2.err.find("lsvcr.stage: 'finetune' runs in one process; under `seqrec launch` only stage 1"),
            std::string::npos) << stage2.err;
  EXPECT_FALSE(std::filesystem::exists(dir_.file("s2")));
}

// Only train and finetune divide their work among ranks: launch refuses any other command before
// starting workers, and a command started as a rank of a job (WORLD_SIZE > 1) refuses to run, data
// commands (the launcher binary) and LibTorch ones (seqrec-torch) alike.
TEST(LaunchRefusal, CommandsThatDoNotDivideTheirWorkRefuseToRunAsRanks) {
  TempDir dir;
  Result r = run(dir, "launch --nproc-per-node 2 -- eval --config " + dir.file("none.yaml") + " --checkpoint x");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("launch: 'eval' runs in one process; only train and finetune run data-parallel"),
            std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("started rank"), std::string::npos) << r.err;
  ::setenv("WORLD_SIZE", "2", 1);
  Result data = run(dir, "synth --set synth.num_users=5 --out " + dir.file("raw"));
  Result lm = run(dir, "lm score --model " + dir.file("none") + " --text hi");
  ::unsetenv("WORLD_SIZE");
  for (const Result* x : {&data, &lm}) {
    EXPECT_EQ(x->code, 2);
    EXPECT_NE(x->err.find("WORLD_SIZE: this command runs in one process; only train and finetune run data-parallel"),
              std::string::npos) << x->err;
  }
  EXPECT_FALSE(std::filesystem::exists(dir.file("raw")));
}

// seqrec finetune under launch: 2 workers x 1 micro-batch per step leave the weights, the logged
// step losses and the validation loss of one process with 2 (full fine-tuning of stories260K,
// examples of different lengths, two epochs with validation); a resume at another world size is
// refused.
TEST_F(LaunchTest, FinetuneTwoWorkersEqualOneProcessWithDoubleAccumulation) {
  const std::string stories = SEQREC_SOURCE_DIR "/../shared/models/stories260K/hf";
  if (!std::filesystem::exists(stories + "/config.json")) GTEST_SKIP() << "no " << stories;
  std::string jsonl;
  for (int i = 0; i < 6; ++i)
    jsonl += "{\"prompt\": \"Once upon a time there was a " + std::string(i % 2 ? "big " : "") + "dog number " +
             std::to_string(i) + "\", \"response\": \"" + std::string(i % 3 ? "and it ran far away" : "it sat") + "\"}\n";
  dir_.write("train.jsonl", jsonl);
  const std::string config = dir_.write("ft.yaml", "finetune:\n  model: " + stories + "\n  train_file: " +
                                                       dir_.file("train.jsonl") + "\n  valid_file: " + dir_.file("train.jsonl") +
                                                       "\n  epochs: 2\n  batch_size: 1\n  lr: 5.0e-3\n  warmup_ratio: 0.2\n"
                                                       "  threads: 1\n  log_every: 1\n");
  Result one = run(dir_, "finetune --config " + config + " --set finetune.grad_accum_steps=2 --set finetune.out_dir=" + dir_.file("one"));
  ASSERT_EQ(one.code, 0) << one.err;
  Result two = run(dir_, "launch --nproc-per-node 2 -- finetune --config " + config +
                             " --set finetune.grad_accum_steps=1 --set finetune.out_dir=" + dir_.file("two"));
  ASSERT_EQ(two.code, 0) << two.err;
  EXPECT_NE(two.err.find("finetune: data parallel over 2 ranks (gloo): 1 micro-batches per rank and step, 2 in all"),
            std::string::npos) << two.err;
  // Both log 6 steps with the same whole-step losses.
  const std::regex step_line(R"(\[finetune\] epoch (\d)/2 step (\d)/6 loss ([0-9.]+) )");
  auto losses = [&](const std::string& err) {
    std::vector<double> out;
    for (std::sregex_iterator it(err.begin(), err.end(), step_line), end; it != end; ++it) out.push_back(std::stod((*it)[3]));
    return out;
  };
  const auto la = losses(one.err), lb = losses(two.err);
  ASSERT_EQ(la.size(), 6u) << one.err;
  ASSERT_EQ(lb.size(), 6u) << two.err;  // rank 0's progress lines only
  for (size_t i = 0; i < 6; ++i) EXPECT_NEAR(la[i], lb[i], 1e-4 * la[i]) << "step " << i + 1;
  expect_same_file_tensors(dir_.file("one/model.safetensors"), dir_.file("two/model.safetensors"), 1e-4);
  ASSERT_EQ(lines_of(two.out).size(), 1u) << two.out;  // rank 0's summary line only
  const auto ja = last_json(one.out), jb = last_json(two.out);
  EXPECT_EQ(jb["steps"], 6);
  EXPECT_NEAR(ja["best_valid_loss"].get<double>(), jb["best_valid_loss"].get<double>(), 1e-4);
  EXPECT_NEAR(ja["train_loss"].get<double>(), jb["train_loss"].get<double>(), 1e-4);
  EXPECT_EQ(lines_of(slurp(dir_.file("two/metrics.jsonl"))).size(), 2u);  // one validation per epoch

  // ZeRO-2 (consolidated state), and ZeRO-3 with checkpointing (sharded state, the default): the same
  // weights and moments as plain data parallelism.
  for (const std::string stage : {"2", "3"}) {
    const std::string out = "zero" + stage;
    Result zero = run(dir_, "launch --nproc-per-node 2 -- finetune --config " + config +
                                " --set finetune.grad_accum_steps=1 --set finetune.zero_stage=" + stage +
                                (stage == "3" ? " --set finetune.gradient_checkpointing=true"
                                              : " --set finetune.zero_state=consolidated") +
                                " --set finetune.out_dir=" + dir_.file(out));
    ASSERT_EQ(zero.code, 0) << zero.err;
    EXPECT_NE(zero.err.find(stage == "2" ? "finetune: ZeRO-2, AdamW moments and gradients sharded by parameter"
                                         : "finetune: ZeRO-3: rank 0 holds"),
              std::string::npos) << zero.err;
    expect_same_file_tensors(dir_.file("two/model.safetensors"), dir_.file(out + "/model.safetensors"), 1e-5);
    if (stage == "2") {
      expect_same_file_tensors(dir_.file("two.resume.safetensors"), dir_.file(out + ".resume.safetensors"), 1e-5);
      continue;
    }
    // The state's weights and the two ranks' shards of the last epoch together: DDP's state.
    auto got = seqrec::train::load_tensors(dir_.file(out + ".resume.safetensors"), nullptr);
    for (int r = 0; r < 2; ++r) {
      auto part = seqrec::train::load_tensors(dir_.file(out + ".resume.e2.rank" + std::to_string(r) + "-of-2.safetensors"), nullptr);
      got.insert(got.end(), part.begin(), part.end());
    }
    std::map<std::string, torch::Tensor> merged(got.begin(), got.end());
    const auto want = seqrec::train::load_tensors(dir_.file("two.resume.safetensors"), nullptr);
    ASSERT_EQ(merged.size(), want.size());
    for (const auto& [name, t] : want) {
      ASSERT_TRUE(merged.count(name)) << name;
      EXPECT_LT((merged[name] - t).abs().max().item<double>(), 1e-5 * std::max(1.0, t.abs().max().item<double>())) << name;
    }
  }

  Result other = run(dir_, "launch --nproc-per-node 2 -- finetune --config " + config +
                               " --set finetune.grad_accum_steps=2 --set finetune.out_dir=" +
                               dir_.file("one") + " --resume");
  EXPECT_NE(other.code, 0);
  EXPECT_NE(other.err.find("written by a run with other options or another number of ranks"), std::string::npos) << other.err;
}

TEST_F(LaunchTest, KillingOneWorkerFailsTheJobNamingIt) {
  const std::string config = exact_step_config(dir_, "long", 4);
  ASSERT_EQ(run(dir_, "prepare --config " + config).code, 0);
  const std::string err_path = dir_.file("launch.stderr");
  const pid_t launcher = ::fork();
  ASSERT_GE(launcher, 0);
  if (launcher == 0) {
    ::freopen(err_path.c_str(), "w", stderr);
    ::freopen("/dev/null", "w", stdout);
    ::setenv("OMP_NUM_THREADS", "1", 1);
    const std::string cfg = config;
    ::execl(SEQREC_BINARY, SEQREC_BINARY, "launch", "--nproc-per-node", "2", "--", "train", "--config", cfg.c_str(),
            "--set", "train.epochs=100000", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  // Wait (bounded) until both workers have joined the job, then kill rank 1.
  const std::regex started("started rank 1 \\(local rank 1, pid ([0-9]+)\\)");
  pid_t victim = -1;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (std::chrono::steady_clock::now() < deadline) {
    const std::string err = slurp(err_path);
    std::smatch m;
    if (victim < 0 && std::regex_search(err, m, started)) victim = std::stoi(m[1]);
    if (victim > 0 && err.find("data parallel: 2 ranks") != std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  int status = 0;
  if (victim <= 0 || slurp(err_path).find("data parallel: 2 ranks") == std::string::npos) {
    ::kill(launcher, SIGKILL);
    ::waitpid(launcher, &status, 0);
    FAIL() << "the workers did not start:\n" << slurp(err_path);
  }
  ASSERT_EQ(::kill(victim, SIGKILL), 0);
  pid_t done = 0;
  while (std::chrono::steady_clock::now() < deadline && (done = ::waitpid(launcher, &status, WNOHANG)) == 0)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  if (done == 0) {
    ::kill(launcher, SIGKILL);
    ::waitpid(launcher, &status, 0);
    FAIL() << "launch did not end after a worker was killed:\n" << slurp(err_path);
  }
  const std::string err = slurp(err_path);
  ASSERT_TRUE(WIFEXITED(status)) << err;
  EXPECT_NE(WEXITSTATUS(status), 0) << err;
  EXPECT_NE(err.find("rank 1 (local rank 1, pid " + std::to_string(victim) + ") was killed by signal 9"), std::string::npos)
      << err;
  EXPECT_NE(err.find("launch: job failed (exit status"), std::string::npos) << err;
  // Rank 0 did not outlive the job.
  std::smatch m;
  ASSERT_TRUE(std::regex_search(err, m, std::regex("started rank 0 \\(local rank 0, pid ([0-9]+)\\)")));
  EXPECT_EQ(::kill(std::stoi(m[1]), 0), -1) << "rank 0 still running";
}

TEST(LaunchCliTest, BadArgumentsAreNamed) {
  TempDir dir;
  Result r = run(dir, "launch --nproc-per-node 0 -- train");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("--nproc-per-node: must be >= 1, got 0"), std::string::npos) << r.err;
  r = run(dir, "launch --nproc-per-node 2 --nnodes 2 --node-rank 2 -- train");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("--node-rank: 2 must be in [0, 2)"), std::string::npos) << r.err;
  // A worker that fails on its own fails the job with its status.
  r = run(dir, "launch --nproc-per-node 2 -- train --config " + dir.file("missing.yaml"));
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("exited with status " + std::to_string(r.code) + "; stopping the other"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("launch: job failed (exit status " + std::to_string(r.code) + ")"), std::string::npos) << r.err;
}

}  // namespace
