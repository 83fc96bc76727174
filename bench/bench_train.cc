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
  models::ModelContext ctx{store.num_items(), data_opts.max_seq_len, data::train_item_counts(store)};
  torch::manual_seed(1);
  auto model = models::make_model(root.child("model"), ctx);
  std::vector<std::pair<std::string, torch::Tensor>> params;
  for (auto& p : model->named_parameters()) params.emplace_back(p.key(), p.value());
  train::AdamW opt(params, {train_opts.lr, train_opts.beta1, train_opts.beta2, train_opts.eps, 0});
  data::TrainBatcherOptions bo;
  bo.max_seq_len = data_opts.max_seq_len;
  bo.batch_size = train_opts.batch_size;
  bo.num_negatives = train_opts.loss.name == "softmax" ? 0 : train_opts.loss.num_negatives;
  bo.exclude_history = train_opts.loss.exclude_history;
  bo.length_bucketing = train_opts.length_bucketing;
  data::TrainBatcher batcher(store, bo);
  model->train();
  std::unique_ptr<torch::autograd::profiler::RecordProfile> prof;
  if (std::getenv("SEQREC_PROFILE")) prof = std::make_unique<torch::autograd::profiler::RecordProfile>(std::getenv("SEQREC_PROFILE"));
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
      }
      ++done;
    }
  }
  const double total = t_wait + t_fwd + t_bwd + t_opt;
  std::printf("{\"steps\":%ld,\"seq_per_s\":%.1f,\"positions_per_s\":%.0f,\"padding_share\":%.3f,"
              "\"fwd_s\":%.3f,\"bwd_s\":%.3f,\"opt_s\":%.3f,\"wait_s\":%.3f,\"threads\":%d}\n",
              long(steps), seqs / total, positions / total, 1.0 - double(positions) / padded, t_fwd, t_bwd,
              t_opt, t_wait, torch::get_num_threads());
  return 0;
}
