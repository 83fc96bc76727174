// The training loop.
#include "seqrec/train/trainer.h"

#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <optional>

#include "seqrec/common/crash_point.h"
#include "seqrec/common/error.h"
#include "seqrec/common/fs.h"
#include "seqrec/common/log.h"
#include "seqrec/common/progress.h"
#include "seqrec/common/random.h"
#include "seqrec/dist/grad_reducer.h"
#include "seqrec/dist/process_group.h"
#include "seqrec/eval/evaluator.h"
#include "seqrec/llm/precision.h"
#include "seqrec/train/losses.h"

namespace seqrec::train {
namespace {

std::string metrics_json(const eval::MetricSet& m, const std::string& split, const std::string& protocol,
                         int64_t users, int64_t epoch) {
  std::string line = eval::to_json_line(m, split, protocol, users);
  // Insert the epoch as the first field of the object.
  return "{\"epoch\":" + std::to_string(epoch) + "," + line.substr(1);
}

double metric_value(const eval::MetricSet& m, const std::string& name) {
  auto it = m.find(name);
  if (it == m.end()) throw ConfigError("train.metric", "'" + name + "' is not computed (check eval.ks)");
  return it->second;
}

}  // namespace

torch::Device resolve_device(const std::string& spec, int64_t local_rank) {
  if (spec == "cpu") return torch::kCPU;
  if (!torch::cuda::is_available())
    throw ConfigError("train.device", "'" + spec + "' asked for, but this LibTorch has no CUDA or no GPU is visible "
                                      "(use cpu)");
  const int64_t index = spec == "cuda" ? local_rank : std::stoll(spec.substr(5));
  const int64_t count = static_cast<int64_t>(torch::cuda::device_count());
  if (index >= count)
    throw ConfigError("train.device", "cuda:" + std::to_string(index) + " does not exist (" + std::to_string(count) +
                                      " GPUs visible" + (spec == "cuda" ? ", picked by LOCAL_RANK" : "") + ")");
  return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(index));
}

data::TrainBatcherOptions train_batcher_options(const config::DataOptions& data, const config::TrainOptions& t) {
  data::TrainBatcherOptions bo;
  bo.max_seq_len = data.max_seq_len;
  bo.batch_size = t.batch_size;
  bo.num_negatives = t.loss.name == "softmax" ? 0 : t.loss.num_negatives;
  bo.exclude_history = t.loss.exclude_history;
  bo.length_bucketing = t.length_bucketing;
  bo.chunk_long_sequences = data.chunk_long_sequences;
  bo.holdout = data.holdout;
  bo.seed = static_cast<uint64_t>(t.seed);
  bo.prefetch = data.prefetch_batches;
  return bo;
}

Trainer::Trainer(models::SequenceRecommender model, data::InteractionStore store, TrainerSetup setup)
    : model_(std::move(model)), store_(std::move(store)), setup_(std::move(setup)) {
  cold_items_ = data::cold_items(store_.num_items(), setup_.data.cold_item_share,
                                 static_cast<uint64_t>(setup_.data.cold_item_seed));
  if (setup_.group) {
    setup_.rank = setup_.group->rank();
    setup_.world_size = setup_.group->world_size();
  }
  device_ = resolve_device(setup_.train.device, setup_.local_rank);
  if (!device_.is_cpu()) model_->to(device_);
  const int64_t towers = llm::set_training_precision(*model_, setup_.train.precision, device_, "train.precision");
  if (setup_.train.precision != "fp32" && setup_.rank == 0)
    log_info("train.precision %s: %ld LLM towers compute in it when training (weights, gradients and optimizer state "
             "float32; evaluation float32)", setup_.train.precision.c_str(), long(towers));
}

void Trainer::broadcast_model() {
  if (!setup_.group || setup_.world_size == 1) return;
  std::vector<torch::Tensor> tensors;
  for (const auto& p : model_->parameters()) tensors.push_back(p);
  for (const auto& b : model_->buffers()) tensors.push_back(b);
  setup_.group->broadcast(tensors, 0);
}

eval::EvalResult Trainer::evaluate_split(data::Split split) {
  eval::EvalShard shard;
  if (setup_.group && setup_.world_size > 1) {
    shard.rank = setup_.rank;
    shard.world_size = setup_.world_size;
    auto group = setup_.group;
    shard.sum = [group](const std::vector<double>& v) { return group->all_reduce_sum(v); };
  }
  return eval::evaluate(*model_, store_, split, setup_.eval, setup_.data.max_seq_len, cold_items_, shard);
}

double Trainer::train_epoch(int64_t epoch, AdamW& optimizer, data::TrainBatcher& batcher) {
  const auto& t = setup_.train;
  const int64_t steps_per_epoch = batcher.batches_per_epoch();
  const int64_t total_steps = steps_per_epoch * t.epochs;
  const int64_t warmup = t.warmup_steps > 0 ? t.warmup_steps
                                            : static_cast<int64_t>(std::floor(t.warmup_ratio * total_steps));
  // Dropout randomness is a function of (seed, epoch): resume reproduces the same run.
  // With several ranks the rank joins the seed, so that ranks draw different dropout masks.
  torch::manual_seed(setup_.world_size > 1
                         ? derive_seed({static_cast<uint64_t>(t.seed), 0xd20bULL, static_cast<uint64_t>(epoch),
                                        static_cast<uint64_t>(setup_.rank)})
                         : derive_seed({static_cast<uint64_t>(t.seed), 0xd20bULL, static_cast<uint64_t>(epoch)}));
  model_->train();
  batcher.start_epoch(epoch);
  ProgressBar bar("epoch " + std::to_string(epoch + 1) + "/" + std::to_string(t.epochs), steps_per_epoch,
                  t.log_every);
  data::SequenceBatch batch;
  double loss_sum = 0;
  int64_t step = 0;
  const auto& params = optimizer.params();
  while (batcher.next(&batch)) {
    if (!device_.is_cpu()) batch = batch.to(device_);
    const double lr = scheduled_lr(t.schedule, t.lr, optimizer.step_count(), total_steps, warmup, t.min_lr_ratio);
    optimizer.zero_grad();
    torch::Tensor loss = compute_loss(*model_, batch, t.loss);
    loss.backward();
    if (sync_) sync_(params);  // the one place where gradients of all processes meet
    if (t.clip_norm > 0) clip_grad_norm(params, t.clip_norm);
    optimizer.step(lr);
    const double l = loss.item<double>();
    if (!std::isfinite(l)) throw Error("training diverged: loss is " + std::to_string(l) + " at epoch " +
                                       std::to_string(epoch + 1) + " step " + std::to_string(step + 1) +
                                       " (try a lower train.lr or train.clip_norm)");
    loss_sum += l;
    ++step;
    // seq/s of the whole job: every rank's batch has this size, up to one sequence in the last step.
    if (setup_.rank == 0) bar.update(step, l, lr, batch.item_ids.size(0) * setup_.world_size);
  }
  const double mean = step > 0 ? loss_sum / step : 0;
  if (setup_.rank == 0) bar.finish(mean);
  return mean;
}

TrainSummary Trainer::fit(bool resume) {
  const auto& t = setup_.train;
  const bool writer = setup_.rank == 0;
  const std::string dir = t.out_dir;
  if (writer) make_dirs(dir);
  const std::string last_path = dir + "/last.safetensors", state_path = dir + "/last.state.safetensors",
                    best_path = dir + "/best.safetensors", log_path = dir + "/metrics.jsonl";
  TrainSummary summary;
  int64_t start_epoch = 0, bad_evals = 0;
  double best = -std::numeric_limits<double>::infinity();

  NamedTensors params;
  for (const auto& p : model_->named_parameters())
    if (p.value().requires_grad()) params.emplace_back(p.key(), p.value());
  AdamW optimizer(params, {t.lr, t.beta1, t.beta2, t.eps, t.weight_decay});

  bool stopped = false;  // early stopping ended the run (a resumed one trains no further)
  if (resume && path_exists(state_path)) {
    // One file holds weights, moments and counters: they always belong to the same epoch.
    NamedTensors opt_state;
    const TrainCounters c = load_train_state(state_path, *model_, &opt_state);
    optimizer.load_state(opt_state, c.step);
    start_epoch = c.epoch;
    best = c.best_metric;
    summary.best_epoch = c.best_epoch;
    bad_evals = c.bad_evals;
    stopped = c.stopped;
    if (writer) {
      // Lines (and last.safetensors) written after the state by the run that died are dropped.
      write_file_atomic(log_path, c.metrics);
      save_checkpoint(last_path, *model_, setup_.model_yaml, setup_.context);
    }
    log_info("resuming %s from epoch %ld (best %s %.4f at epoch %ld)", dir.c_str(), long(start_epoch),
             t.metric.c_str(), best, long(summary.best_epoch));
  } else {
    if (resume && writer) log_warn("--resume: no %s yet; starting from scratch", state_path.c_str());
    // A fresh run's log starts empty (a run killed in its first epoch may have left a line).
    if (writer && path_exists(log_path)) write_file_atomic(log_path, "");
  }
  if (setup_.group && setup_.world_size > 1) {
    // Rank 0's view wins (out_dir need not be shared between machines): same weights, optimizer
    // state and loop counters everywhere, hence the same number of steps and the same decisions.
    auto counters = torch::tensor({double(start_epoch), double(optimizer.step_count()), best,
                                   double(summary.best_epoch), double(bad_evals), double(stopped)},
                                  torch::kFloat64);  // [6]
    setup_.group->broadcast({counters}, 0);
    auto c = counters.data_ptr<double>();
    start_epoch = static_cast<int64_t>(c[0]);
    best = c[2];
    summary.best_epoch = static_cast<int64_t>(c[3]);
    bad_evals = static_cast<int64_t>(c[4]);
    stopped = c[5] != 0;
    broadcast_model();
    if (c[1] > 0) {
      NamedTensors state = optimizer.state();
      std::vector<torch::Tensor> tensors;
      for (auto& [name, tensor] : state) tensors.push_back(tensor);
      setup_.group->broadcast(tensors, 0);
      optimizer.load_state(state, static_cast<int64_t>(c[1]));
    }
    if (!sync_) {
      reducer_ = std::make_shared<dist::GradientReducer>(setup_.group, params);
      auto reducer = reducer_;
      sync_ = [reducer](const NamedTensors&) { reducer->finish(); };
      if (writer)
        log_info("data parallel: %ld ranks (%s), %ld gradient buckets, %.2f MB all-reduced per step",
                 long(setup_.world_size), setup_.group->backend().c_str(), long(reducer_->num_buckets()),
                 reducer_->bytes_per_step() / 1e6);
    }
  }
  summary.best_metric = best;

  data::TrainBatcherOptions bo = train_batcher_options(setup_.data, t);
  bo.rank = setup_.rank;
  bo.world_size = setup_.world_size;
  bo.excluded_items = cold_items_;
  const auto& layout = model_->batch_layout();
  bo.recent_item_num = layout.recent_item_num;
  bo.boundary_target = layout.boundary_target;
  bo.recent_item_dropout = layout.recent_item_dropout;
  if (layout.boundary_target > store_.num_items() && t.loss.name == "softmax")
    throw ConfigError("train.loss.name", "softmax scores the catalogue only, but this model's boundary target is a "
                                         "user token (model.personalized.boundary_target: use none, or a sampled loss)");
  if (bo.num_negatives > store_.num_items())  // memory grows with it, and no catalogue has that many to give
    throw ConfigError("train.loss.num_negatives", std::to_string(bo.num_negatives) + " negatives per position, but the "
                      "catalogue has " + std::to_string(store_.num_items()) + " items (use at most that many, or "
                      "train.loss.name: softmax to score them all)");
  data::TrainBatcher batcher(store_, bo);
  if (batcher.num_samples() == 0 && model_->trainable() && setup_.world_size == 1)
    throw DataError(setup_.data.dir + ": nothing to train on: no user has enough events left after holding out "
                    "data.holdout=" + std::to_string(setup_.data.holdout) + " per user for evaluation");
  if (writer)
    log_info("training %ld sequences, %ld batches/epoch, %ld params", long(batcher.num_samples()),
             long(batcher.batches_per_epoch()), long([&] {
               int64_t n = 0;
               for (auto& [k, p] : params) n += p.numel();
               return n;
             }()));

  // holdout 1 (GR's protocol): no validation split. Evaluations during training are on the test
  // split and only logged; nothing is selected on them and the last epoch's model is tested.
  const bool select_on_valid = setup_.data.holdout == 2;
  if (writer && !select_on_valid)
    log_info("data.holdout 1: the validation item is trained on; evaluating test every %ld epochs without "
             "model selection or early stopping (the last epoch's model is tested)", long(t.eval_every));
  const data::Split monitor = select_on_valid ? data::Split::kValid : data::Split::kTest;
  std::optional<eval::EvalResult> final_test;  // holdout 1: the last epoch's evaluation is the test result

  const auto train_start = std::chrono::steady_clock::now();
  int64_t epoch = start_epoch;
  const bool trainable = model_->trainable() && !params.empty();
  for (; epoch < (trainable && !stopped ? t.epochs : 0); ++epoch) {
    summary.final_loss = train_epoch(epoch, optimizer, batcher);
    const bool last_epoch = epoch + 1 == t.epochs;
    bool stop = false;
    if ((epoch + 1) % t.eval_every == 0 || last_epoch) {
      eval::EvalResult r = evaluate_split(monitor);
      const double value = metric_value(r.metrics, t.metric);
      if (writer) {
        append_line(log_path, metrics_json(r.metrics, data::split_name(monitor), setup_.eval.protocol, r.users, epoch + 1));
        crash_point("train.after_metrics_line");
        if (select_on_valid)
          log_info("[eval] epoch %ld split=valid %s=%.4f (best %.4f) users=%ld (%.1fs)", long(epoch + 1),
                   t.metric.c_str(), value, std::max(best, value), long(r.users), r.seconds);
        else
          log_info("[eval] epoch %ld split=test %s=%.4f users=%ld (%.1fs)", long(epoch + 1), t.metric.c_str(), value,
                   long(r.users), r.seconds);
      }
      if (!select_on_valid) {  // nothing is selected: the summary reports the last evaluation
        best = value;
        summary.best_epoch = epoch + 1;
        final_test = std::move(r);  // the last epoch always evaluates, so the final one is kept
      } else if (value > best) {
        best = value;
        summary.best_epoch = epoch + 1;
        bad_evals = 0;
        if (writer) {
          save_checkpoint(best_path, *model_, setup_.model_yaml, setup_.context);
          crash_point("train.after_best");
        }
      } else if (t.patience > 0 && ++bad_evals >= t.patience) {
        stop = true;
        if (writer) log_info("early stop: no improvement in %ld evaluations", long(bad_evals));
      }
    }
    if (writer) {
      // The state is the commit point of the epoch; last.safetensors is a copy of its weights for
      // eval and serve (a resume rewrites it when a kill fell between the two).
      save_train_state(state_path, *model_, optimizer.state(),
                       {epoch + 1, optimizer.step_count(), best, summary.best_epoch, bad_evals, stop,
                        path_exists(log_path) ? read_file(log_path) : ""});
      crash_point("train.after_state");
      save_checkpoint(last_path, *model_, setup_.model_yaml, setup_.context);
      crash_point("train.after_last");
    }
    if (stop) {
      ++epoch;
      break;
    }
  }
  summary.train_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - train_start).count();
  summary.epochs_run = epoch;
  summary.best_metric = best;

  // Final test numbers come from the best-validation checkpoint (holdout 1: the last epoch's).
  if (!trainable || !select_on_valid) {
    if (writer) save_checkpoint(best_path, *model_, setup_.model_yaml, setup_.context);
  } else if (writer && path_exists(best_path)) {
    load_state_into(*model_, load_tensors(best_path, nullptr), best_path);
  }
  // holdout 1 tests the weights its last evaluation already scored on test: no second pass.
  if (!final_test) broadcast_model();  // the other ranks test rank 0's best weights
  eval::EvalResult test = final_test ? std::move(*final_test) : evaluate_split(data::Split::kTest);
  summary.test = test.metrics;
  summary.test_users = test.users;
  if (writer) append_line(log_path, metrics_json(test.metrics, "test", setup_.eval.protocol, test.users, summary.best_epoch));
  return summary;
}

}  // namespace seqrec::train
