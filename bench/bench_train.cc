// Training-throughput benchmark: times forward+loss, backward and optimizer steps of a model built
// from a config on a prepared store, and reports sequences/s, non-padding positions/s and the
// phase split. Usage: bench_train --config FILE [--set k=v ...] [--steps N] [--warmup N]
#include <torch/torch.h>

#include <torch/csrc/autograd/profiler_legacy.h>

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "seqrec/common/allocator.h"
#include "seqrec/config/config_node.h"
#include "seqrec/config/options.h"
#include "seqrec/data/batcher.h"
#include "seqrec/data/split.h"
#include "seqrec/models/registry.h"
#include "seqrec/train/losses.h"
#include "seqrec/train/optim.h"
#include "seqrec/train/trainer.h"

using namespace seqrec;
using Clock = std::chrono::steady_clock;

static double secs(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

int main(int argc, char** argv) {
  ensure_passive_openmp(argv);
  if (!std::getenv("SEQREC_NO_MALLOC_TUNING")) tune_allocator();
  std::string config_file;
  std::vector<std::string> overrides;
  int64_t steps = 30, warmup = 3;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--config") config_file = argv[++i];
    else if (a == "--set") overrides.push_back(argv[++i]);
    else if (a == "--steps") steps = std::stoll(argv[++i]);
    else if (a == "--warmup") warmup = std::stoll(argv[++i]);
  }
  config::ConfigNode root = config::load_config(config_file, overrides);
  auto data_opts = config::read_data_options(root.child("data"));
  auto train_opts = config::read_train_options(root.child("train"));
  auto store = data::InteractionStore::open(data_opts.dir + "/interactions.bin");
  torch::set_num_threads(train_opts.threads > 0 ? train_opts.threads : 2);
  models::ModelContext ctx{store.num_items(), data_opts.max_seq_len, data::train_item_counts(store), data_opts.dir};
  torch::manual_seed(1);
  auto model = models::make_model(root.child("model"), ctx);
  std::vector<std::pair<std::string, torch::Tensor>> params;
  for (auto& p : model->named_parameters()) params.emplace_back(p.key(), p.value());
  train::AdamW opt(params, {train_opts.lr, train_opts.beta1, train_opts.beta2, train_opts.eps, 0});
  data::TrainBatcher batcher(store, train::train_batcher_options(data_opts, train_opts));
  model->train();
  std::unique_ptr<torch::autograd::profiler::RecordProfile> prof;
  if (std::getenv("SEQREC_PROFILE")) prof = std::make_unique<torch::autograd::profiler::RecordProfile>(std::getenv("SEQREC_PROFILE"));
  // Useful FLOPs (real positions only; backward counted as twice the forward): every weight matrix
  // outside the embedding tables is applied to each real position, attention covers the causal
  // triangle of each sequence in each block, and the loss scores each position's candidates.
  config::ConfigNode mnode = root.child("model");
  const std::string mname = mnode.get<std::string>("name", "");
  const int64_t hidden = mnode.get<int64_t>("hidden_dim", 50), blocks = mnode.get<int64_t>("num_blocks", 2),
                heads = mnode.get<int64_t>("num_heads", 1);
  const int64_t attn_qk = mname == "hstu" ? heads * mnode.get<int64_t>("attn_dim", hidden / heads) : hidden;
  const int64_t attn_v = mname == "hstu" ? heads * mnode.get<int64_t>("linear_dim", hidden / heads) : hidden;
  const bool count_flops = mname == "sasrec" || mname == "hstu" || mname == "llama_id";
  double linear_macs = 0;  // per position
  for (const auto& p : model->named_parameters())
    if (p.value().dim() == 2 && p.key().find("embed") == std::string::npos) linear_macs += double(p.value().numel());
  const int64_t candidates = train_opts.loss.name == config::LossName::kBce ? 2 : train_opts.loss.num_negatives + 1;
  double flops = 0;
  double t_fwd = 0, t_bwd = 0, t_opt = 0, t_wait = 0;
  int64_t seqs = 0, positions = 0, padded = 0, done = 0;
  for (int64_t epoch = 0; done < steps + warmup; ++epoch) {
    batcher.start_epoch(epoch);
    data::SequenceBatch b;
    while (done < steps + warmup) {
      auto t0 = Clock::now();
      if (!batcher.next(&b)) break;
      auto t1 = Clock::now();
      opt.zero_grad();
      auto loss = train::compute_loss(*model, b, train_opts.loss);
      loss.item<float>();
      auto t2 = Clock::now();
      loss.backward();
      auto t3 = Clock::now();
      opt.step(train_opts.lr);
      auto t4 = Clock::now();
      if (done >= warmup) {
        t_wait += secs(t0, t1), t_fwd += secs(t1, t2), t_bwd += secs(t2, t3), t_opt += secs(t3, t4);
        seqs += b.item_ids.size(0);
        positions += b.targets.ne(0).sum().item<int64_t>();
        padded += b.item_ids.numel();
        if (count_flops) {
          auto lens = b.item_ids.ne(0).sum(1);                                   // [B]
          const int64_t* lp = lens.data_ptr<int64_t>();
          const int64_t real = b.item_ids.ne(0).sum().item<int64_t>(), targets = b.targets.ne(0).sum().item<int64_t>();
          double tri = 0;
          for (int64_t i = 0; i < lens.size(0); ++i) tri += double(lp[i]) * double(lp[i] + 1) / 2;
          const double fwd = 2 * linear_macs * real + blocks * 2 * tri * double(attn_qk + attn_v) +
                             2.0 * targets * candidates * hidden;
          flops += 3 * fwd;
        }
      }
      ++done;
    }
  }
  const double total = t_wait + t_fwd + t_bwd + t_opt;
  std::printf("{\"steps\":%ld,\"seq_per_s\":%.1f,\"positions_per_s\":%.0f,\"padding_share\":%.3f,"
              "\"fwd_s\":%.3f,\"bwd_s\":%.3f,\"opt_s\":%.3f,\"wait_s\":%.3f,\"gflops\":%.1f,\"threads\":%d}\n",
              long(steps), seqs / total, positions / total, 1.0 - double(positions) / padded, t_fwd, t_bwd,
              t_opt, t_wait, flops / total / 1e9, torch::get_num_threads());
  return 0;
}
