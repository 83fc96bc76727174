// The training loop.
#include "seqrec/train/trainer.h"

#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <optional>
#include <set>

#include <sys/resource.h>

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
#include "seqrec/models/molar.h"
#include "seqrec/train/losses.h"

namespace seqrec::train {
namespace {

std::string metrics_json(const eval::MetricSet& m, const std::string& split, const std::string& protocol,
                         int64_t users, int64_t epoch) {
  std::string line = eval::to_json_line(m, split, protocol, users);
  // Insert the epoch as the first field of the object.
  return "{\"epoch\":" + std::to_string(epoch) + "," + line.substr(1);
}

// The epoch's mean training loss and its last learning rate (deterministic text: a resumed run
// rewrites the same line).
std::string train_json(int64_t epoch, double loss, double lr) {
  char buf[160];
  std::snprintf(buf, sizeof buf, "{\"epoch\":%ld,\"split\":\"train\",\"loss\":%.9g,\"lr\":%.9g}", long(epoch), loss,
                lr);
  return buf;
}

// Optimiser steps in an epoch of `batches` batches, `accum` per step (the last step may take fewer).
int64_t optimizer_steps(int64_t batches, int64_t accum) { return (batches + accum - 1) / accum; }

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
  bo.num_negatives = t.loss.name == config::LossName::kSoftmax ? 0 : t.loss.num_negatives;
  bo.exclude_history = t.loss.exclude_history;
  bo.length_bucketing = t.length_bucketing;
  bo.chunk_long_sequences = data.chunk_long_sequences;
  bo.holdout = data.holdout;
  bo.seed = static_cast<uint64_t>(t.seed);
  bo.prefetch = data.prefetch_batches;
  return bo;
}

void Trainer::set_train_rows(data::InteractionStore rows) {
  if (rows.num_users() != store_.num_users() || rows.num_items() != store_.num_items())
    throw Error("training rows (" + std::to_string(rows.num_users()) + " users, " + std::to_string(rows.num_items()) +
                " items) do not match the store (" + std::to_string(store_.num_users()) + ", " +
                std::to_string(store_.num_items()) + ")");
  train_rows_ = std::move(rows);
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
  if (setup_.train.precision != config::Precision::kFp32 && setup_.rank == 0)
    log_info("train.precision %s: %ld LLM towers compute in it when training (weights, gradients and optimizer state "
             "float32; evaluation float32)", config::name(setup_.train.precision).c_str(), long(towers));
}

void Trainer::broadcast_model() {
  if (!setup_.group || setup_.world_size == 1) return;
  std::vector<torch::Tensor> tensors;
  for (const auto& p : model_->parameters()) tensors.push_back(p);
  for (const auto& b : model_->buffers()) tensors.push_back(b);
  setup_.group->broadcast(tensors, 0);
}

void Trainer::log_peak_memory() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  const double mb = static_cast<double>(usage.ru_maxrss) / 1024.0;  // Linux: KiB
  if (!setup_.group || setup_.world_size == 1) {
    log_info("peak RSS %.0f MB", mb);
    return;
  }
  auto all = setup_.group->all_gather_rows(torch::tensor({mb}, torch::kFloat64));  // [world]
  if (setup_.rank != 0) return;
  std::string list;
  for (int64_t r = 0; r < all.size(0); ++r) list += (r ? ", " : "") + std::to_string(std::lround(all[r].item<double>()));
  log_info("peak RSS per rank: %s MB", list.c_str());
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
  const int64_t accum = t.grad_accum_steps;
  const int64_t steps_per_epoch = optimizer_steps(batcher.batches_per_epoch(), accum);
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
  if (zero3_) {
    zero3_->shard();  // block parameters live on their owners during the epoch
    if (setup_.rank == 0 && epoch == 0)
      log_info("ZeRO-3: rank 0 holds %ld of %ld bytes of block parameters outside the running block",
               long(zero3_->resident_bytes()), long(zero3_->total_bytes()));
  }
  batcher.start_epoch(epoch);
  ProgressBar bar("epoch " + std::to_string(epoch + 1) + "/" + std::to_string(t.epochs), steps_per_epoch,
                  t.log_every);
  std::vector<data::SequenceBatch> micro;
  double loss_sum = 0;
  int64_t step = 0, empty_steps = 0;
  const auto& params = optimizer.params();
  while (true) {
    // One optimiser step = `accum` consecutive batches of the epoch (fewer at its end).
    micro.clear();
    for (data::SequenceBatch batch; static_cast<int64_t>(micro.size()) < accum && batcher.next(&batch);)
      micro.push_back(std::move(batch));
    if (micro.empty()) break;
    // Every loss is a mean over target positions: weighting each micro-batch's mean by its share of
    // the step's positions makes the summed gradient that of the mean over all of them.
    std::vector<double> weight(micro.size());
    double positions = 0;
    for (size_t i = 0; i < micro.size(); ++i) positions += weight[i] = micro[i].targets.ne(0).sum().item<double>();
    for (double& w : weight) w = positions > 0 ? w / positions : 0;
    // A batch can have no target position (PerSRec's item_dropout can drop every recent input of
    // its rows). Alone, a process skips such a step: there is nothing to learn from it, and AdamW
    // would still move the weights along its moments. Under several ranks the step is taken.
    if (positions == 0 && setup_.world_size == 1) {
      ++empty_steps;
      continue;
    }
    const double lr = scheduled_lr(t.schedule, t.lr, optimizer.step_count(), total_steps, warmup, t.min_lr_ratio,
                                   t.warmup_min_ratio);
    last_lr_ = lr;
    optimizer.zero_grad();
    double l = 0;
    int64_t sequences = 0;
    for (size_t i = 0; i < micro.size(); ++i) {
      if (reducer_) reducer_->set_sync(i + 1 == micro.size());  // communicate once per step
      sequences += micro[i].item_ids.size(0);
      if (weight[i] == 0 && setup_.world_size == 1) continue;  // no target position: adds nothing
      const data::SequenceBatch batch = device_.is_cpu() ? micro[i] : micro[i].to(device_);
      torch::Tensor loss = compute_loss(*model_, batch, t.loss);
      if (weight[i] == 0) {
        // Under several ranks a micro-batch without target positions still runs forward and
        // backward, scaled by 0: ZeRO-3's block gathers and the shared NCE pool are collectives
        // that every rank joins. Its loss, a mean over no position, is NaN; the gradients it sends
        // back are over empty tensors, so the parameters receive zeros.
        (loss * 0.0).backward();
        continue;
      }
      (micro.size() == 1 ? loss : loss * weight[i]).backward();
      l += loss.item<double>() * weight[i];
    }
    if (sync_) sync_(params);  // the one place where gradients of all processes meet
    if (zero3_) zero3_->finish();
    if (t.clip_norm > 0) {
      if (plan_)  // ZeRO: the norm over the owned gradients of all ranks
        clip_grad_norm(owned_params_, t.clip_norm, [this](double sq) { return setup_.group->all_reduce_sum({sq})[0]; });
      else
        clip_grad_norm(params, t.clip_norm);
    }
    optimizer.step(lr);
    if (plan_) broadcast_from_owners(*setup_.group, replicated_plan_, replicated_params_);
    if (!std::isfinite(l)) throw Error("training diverged: loss is " + std::to_string(l) + " at epoch " +
                                       std::to_string(epoch + 1) + " step " + std::to_string(step + 1) +
                                       " (try a lower train.lr or train.clip_norm)");
    loss_sum += l;
    ++step;
    // seq/s of the whole job: every rank's batch has this size, up to one sequence in the last step.
    if (setup_.rank == 0) bar.update(step, l, lr, sequences * setup_.world_size);
  }
  if (empty_steps > 0)
    log_warn("epoch %ld: %ld of %ld steps had no target position (every recent input dropped by item_dropout?) "
             "and were skipped", long(epoch + 1), long(empty_steps), long(step + empty_steps));
  if (zero3_ && setup_.rank == 0 && epoch == 0)
    log_info("ZeRO-3: %ld of %ld block uses gathered on demand in the first epoch (train.zero_prefetch: %s)",
             long(zero3_->on_demand_gathers()), long(zero3_->block_uses()), t.zero_prefetch ? "true" : "false");
  if (zero3_) zero3_->unshard();  // whole blocks for evaluation and checkpoints
  const double mean = step > 0 ? loss_sum / step : 0;
  if (setup_.rank == 0) bar.finish(mean);
  return mean;
}

NamedTensors Trainer::trainable_parameters() const {
  NamedTensors params;
  for (const auto& p : model_->named_parameters())
    if (p.value().requires_grad()) params.emplace_back(p.key(), p.value());
  return params;
}

void Trainer::plan_sharding(const NamedTensors& params) {
  const auto& t = setup_.train;
  if (t.zero_stage > 0 && data_parallel()) {
    plan_ = ShardPlan::balanced(params, setup_.world_size);
    owned_params_.clear();
    for (size_t i = 0; i < params.size(); ++i)
      if (plan_->owner[i] == setup_.rank) owned_params_.push_back(params[i]);
    if (t.zero_stage == 3) {
      const auto blocks = model_->shardable_blocks();
      if (blocks.empty())
        throw ConfigError("train.zero_stage", "3 shards the parameters of a model's block stack, and this model "
                                              "does not run its blocks through ZeRO-3's gate (llama_id does; use 2)");
      zero3_ = std::make_unique<Zero3Gate>(setup_.group, *plan_, params, blocks, t.zero_prefetch);
      model_->set_block_gate(zero3_.get());
    }
  } else if (t.zero_stage > 0 && setup_.rank == 0) {
    log_info("train.zero_stage %ld: one process owns every parameter (ZeRO shards across ranks of `seqrec launch`)",
             long(t.zero_stage));
  }
  replicated_params_.clear();  // parameters every rank holds whole (all but ZeRO-3's block parameters)
  replicated_plan_ = ShardPlan{{}, setup_.world_size};
  for (size_t i = 0; i < params.size(); ++i)
    if (!zero3_ || !zero3_->manages(i)) {
      replicated_params_.push_back(params[i]);
      if (plan_) replicated_plan_.owner.push_back(plan_->owner[i]);
    }
}

Trainer::RunState Trainer::restore(bool resume, const NamedTensors& params, AdamW& optimizer) {
  const auto& t = setup_.train;
  const bool writer = setup_.rank == 0;
  const std::string state_path = out_path("last.state.safetensors"), log_path = out_path("metrics.jsonl");
  RunState s;
  if (resume && path_exists(state_path)) {
    // One file holds weights, counters and the moments or the names of the shards holding them
    // (stamped with the same epoch and step): they always belong to the same epoch.
    const TrainCounters c = load_train_state(state_path, *model_, &s.full_opt_state);
    s.committed_shards = c.optimizer_shards;
    if (!c.optimizer_shards.empty()) {
      // Sharded state, written at any world size: this rank reads what its optimizer owns (all of it
      // without ZeRO), one shard file at a time.
      std::set<std::string> wanted;
      for (const auto& [name, t] : optimizer.state()) wanted.insert(name);  // the owned parameters' moments
      s.full_opt_state = load_optimizer_shards(t.out_dir, state_path, c,
                                               [&](const std::string& n) { return wanted.count(n) > 0; });
      s.own_share_loaded = plan_.has_value();
    }
    optimizer.load_state(s.full_opt_state, c.step);
    s.start_epoch = c.epoch;
    s.best = c.best_metric;
    s.best_epoch = c.best_epoch;
    s.bad_evals = c.bad_evals;
    s.stopped = c.stopped;
    if (writer) {
      // Lines (and last.safetensors) written after the state by the run that died are dropped.
      write_file_atomic(log_path, c.metrics);
      save_checkpoint(out_path("last.safetensors"), *model_, setup_.model_yaml, setup_.context);
      remove_other_optimizer_shards(t.out_dir, s.committed_shards);  // shards of an epoch whose state never committed
    }
    log_info("resuming %s from epoch %ld (best %s %.4f at epoch %ld)", t.out_dir.c_str(), long(s.start_epoch),
             t.metric.c_str(), s.best, long(s.best_epoch));
  } else {
    if (resume && writer) log_warn("--resume: no %s yet; starting from scratch", state_path.c_str());
    if (writer) remove_other_optimizer_shards(t.out_dir, {});  // a killed run's shards that no state names
    // A fresh run's log starts empty (a run killed in its first epoch may have left a line).
    if (writer && path_exists(log_path)) write_file_atomic(log_path, "");
  }
  return s;
}

void Trainer::sync_ranks(RunState& s, AdamW& optimizer, const NamedTensors& params) {
  const auto& t = setup_.train;
  // Rank 0's view wins (out_dir need not be shared between machines): same weights, optimizer
  // state and loop counters everywhere, hence the same number of steps and the same decisions.
  auto counters = torch::tensor({double(s.start_epoch), double(optimizer.step_count()), s.best, double(s.best_epoch),
                                 double(s.bad_evals), double(s.stopped), double(!s.committed_shards.empty())},
                                torch::kFloat64);  // [7]
  setup_.group->broadcast({counters}, 0);
  auto c = counters.data_ptr<double>();
  s.start_epoch = static_cast<int64_t>(c[0]);
  s.best = c[2];
  s.best_epoch = static_cast<int64_t>(c[3]);
  s.bad_evals = static_cast<int64_t>(c[4]);
  s.stopped = c[5] != 0;
  broadcast_model();
  const int64_t step = static_cast<int64_t>(c[1]);
  if (step > 0 && plan_ && c[6] != 0) {
    if (!s.own_share_loaded)  // every rank reads its own share of a sharded state
      throw CheckpointError(out_path("last.state.safetensors") + ": rank " + std::to_string(setup_.rank) +
                            " cannot read the sharded optimizer state rank 0 resumes from (out_dir must be visible "
                            "to every rank)");
  } else if (step > 0 && plan_) {  // a consolidated state: rank 0 hands each rank its share
    distribute_optimizer_state(*setup_.group, *plan_, s.full_opt_state, step, optimizer);
  } else if (step > 0) {
    NamedTensors state = optimizer.state();
    std::vector<torch::Tensor> tensors;
    for (auto& [name, tensor] : state) tensors.push_back(tensor);
    setup_.group->broadcast(tensors, 0);
    optimizer.load_state(state, step);
  }
  const bool writer = setup_.rank == 0;
  if (!sync_) {
    dist::GradientReducerOptions ro;
    if (plan_ && t.zero_stage >= 2) ro.owners = replicated_plan_.owner;
    reducer_ = std::make_shared<dist::GradientReducer>(setup_.group, replicated_params_, ro);
    auto reducer = reducer_;
    sync_ = [reducer](const NamedTensors&) { reducer->finish(); };
    if (writer)
      log_info("data parallel: %ld ranks (%s), %ld gradient buckets, %.2f MB %s per step", long(setup_.world_size),
               setup_.group->backend().c_str(), long(reducer_->num_buckets()), reducer_->bytes_per_step() / 1e6,
               ro.owners.empty() ? "all-reduced" : "reduced to their owners");
  }
  if (plan_ && writer) {
    int64_t total = 0;
    for (const auto& [name, p] : params) total += p.numel();
    log_info("ZeRO-%ld: optimizer state%s sharded by parameter; rank 0 owns %ld of %ld parameters (%.1f%% of "
             "the elements)", long(t.zero_stage),
             t.zero_stage >= 3 ? ", gradients and block parameters" : t.zero_stage >= 2 ? " and gradients" : "",
             long(owned_params_.size()), long(params.size()),
             100.0 * double(plan_->numel_owned_by(0, params)) / double(std::max<int64_t>(total, 1)));
  }
}

data::TrainBatcherOptions Trainer::batcher_options() const {
  const auto& t = setup_.train;
  data::TrainBatcherOptions bo = train_batcher_options(setup_.data, t);
  bo.rank = setup_.rank;
  bo.world_size = setup_.world_size;
  bo.excluded_items = cold_items_;
  const auto& layout = model_->batch_layout();
  bo.recent_item_num = layout.recent_item_num;
  bo.boundary_target = layout.boundary_target;
  bo.recent_item_dropout = layout.recent_item_dropout;
  if (layout.boundary_target > store_.num_items() && t.loss.name == config::LossName::kSoftmax)
    throw ConfigError("train.loss.name", "softmax scores the catalogue only, but this model's boundary target is a "
                                         "user token (model.personalized.boundary_target: use none, or a sampled loss)");
  if (bo.num_negatives > store_.num_items())  // memory grows with it, and no catalogue has that many to give
    throw ConfigError("train.loss.num_negatives", std::to_string(bo.num_negatives) + " negatives per position, but the "
                      "catalogue has " + std::to_string(store_.num_items()) + " items (use at most that many, or "
                      "train.loss.name: softmax to score them all)");
  if (train_rows_) bo.holdout = 0;  // the rows are training parts already
  return bo;
}

void Trainer::log_plan(const data::TrainBatcher& batcher, int64_t total_params) const {
  const auto& t = setup_.train;
  if (batcher.num_samples() == 0 && model_->trainable() && setup_.world_size == 1)
    throw DataError(setup_.data.dir + ": nothing to train on: no user has enough events left after holding out "
                    "data.holdout=" + std::to_string(setup_.data.holdout) + " per user for evaluation");
  if (setup_.rank != 0) return;
  log_info("training %ld sequences, %ld batches/epoch, %ld params", long(batcher.num_samples()),
           long(batcher.batches_per_epoch()), long(total_params));
  if (t.grad_accum_steps > 1) {
    log_info("gradient accumulation: %ld micro-batches of %ld per optimiser step (%ld steps/epoch)",
             long(t.grad_accum_steps), long(t.batch_size),
             long(optimizer_steps(batcher.batches_per_epoch(), t.grad_accum_steps)));
    // Exact for per-position losses; a loss over a pool of the batch sees each micro-batch's pool.
    if ((t.loss.name == config::LossName::kNce && t.loss.shared_pool) ||
        dynamic_cast<models::AuxiliaryLossModel*>(model_.get()))
      log_info("gradient accumulation: the shared negative pool / in-batch alignment loss is formed per "
               "micro-batch of %ld (as DeepSpeed's accumulation does), not over the whole step", long(t.batch_size));
  }
  if (setup_.data.holdout != 2)
    log_info("data.holdout 1: the validation item is trained on; evaluating test every %ld epochs without "
             "model selection or early stopping (the last epoch's model is tested)", long(t.eval_every));
}

bool Trainer::evaluate_epoch(int64_t epoch, RunState& s, std::optional<eval::EvalResult>& final_test) {
  const auto& t = setup_.train;
  const bool writer = setup_.rank == 0;
  // holdout 1 (GR's protocol): no validation split. Evaluations during training are on the test
  // split and only logged; nothing is selected on them and the last epoch's model is tested.
  const bool select_on_valid = setup_.data.holdout == 2;
  const data::Split monitor = select_on_valid ? data::Split::kValid : data::Split::kTest;
  eval::EvalResult r = evaluate_split(monitor);
  const double value = metric_value(r.metrics, t.metric);
  if (writer) {
    append_line(out_path("metrics.jsonl"),
                metrics_json(r.metrics, data::split_name(monitor), config::name(setup_.eval.protocol), r.users,
                             epoch + 1));
    crash_point("train.after_metrics_line");
    if (select_on_valid)
      log_info("[eval] epoch %ld split=valid %s=%.4f (best %.4f) users=%ld (%.1fs)", long(epoch + 1), t.metric.c_str(),
               value, std::max(s.best, value), long(r.users), r.seconds);
    else
      log_info("[eval] epoch %ld split=test %s=%.4f users=%ld (%.1fs)", long(epoch + 1), t.metric.c_str(), value,
               long(r.users), r.seconds);
  }
  if (!select_on_valid) {  // nothing is selected: the summary reports the last evaluation
    s.best = value;
    s.best_epoch = epoch + 1;
    final_test = std::move(r);  // the last epoch always evaluates, so the final one is kept
  } else if (value > s.best) {
    s.best = value;
    s.best_epoch = epoch + 1;
    s.bad_evals = 0;
    if (writer) {
      save_checkpoint(out_path("best.safetensors"), *model_, setup_.model_yaml, setup_.context);
      crash_point("train.after_best");
    }
  } else if (t.patience > 0 && ++s.bad_evals >= t.patience) {
    if (writer) log_info("early stop: no improvement in %ld evaluations", long(s.bad_evals));
    return true;
  }
  return false;
}

void Trainer::commit_epoch(int64_t epoch, const RunState& s, AdamW& optimizer, bool stop) {
  const auto& t = setup_.train;
  const bool writer = setup_.rank == 0;
  TrainCounters counters{epoch + 1, optimizer.step_count(), s.best, s.best_epoch, s.bad_evals, stop, "", {}};
  NamedTensors opt_state;
  if (plan_ && t.zero_state == config::ZeroState::kSharded) {
    // Every rank writes its own moments under a name of this epoch; once all are on disk, the
    // state naming them is the commit point (a kill before it leaves the previous unit whole).
    if (!writer) make_dirs(t.out_dir);
    save_optimizer_shard(out_path(optimizer_shard_name(epoch + 1, setup_.rank, setup_.world_size)), optimizer.state(),
                         epoch + 1, optimizer.step_count());
    for (int64_t r = 0; r < setup_.world_size; ++r)
      counters.optimizer_shards.push_back(optimizer_shard_name(epoch + 1, r, setup_.world_size));
    setup_.group->barrier();
    crash_point("train.after_shards");
  } else if (plan_) {  // consolidated: the owners' moments meet on rank 0, in one file
    opt_state = consolidate_optimizer_state(*setup_.group, *plan_, optimizer);
  } else {
    opt_state = optimizer.state();
  }
  if (!writer) return;
  // The state is the commit point of the epoch; last.safetensors is a copy of its weights for
  // eval and serve (a resume rewrites it when a kill fell between the two).
  const std::string log_path = out_path("metrics.jsonl");
  counters.metrics = path_exists(log_path) ? read_file(log_path) : "";
  save_train_state(out_path("last.state.safetensors"), *model_, opt_state, counters);
  crash_point("train.after_state");
  remove_other_optimizer_shards(t.out_dir, counters.optimizer_shards);  // earlier epochs' (or none kept)
  save_checkpoint(out_path("last.safetensors"), *model_, setup_.model_yaml, setup_.context);
  crash_point("train.after_last");
}

TrainSummary Trainer::fit(bool resume) {
  const auto& t = setup_.train;
  const bool writer = setup_.rank == 0;
  if (writer) make_dirs(t.out_dir);

  const NamedTensors params = trainable_parameters();
  int64_t total_params = 0;
  for (const auto& [name, p] : params) total_params += p.numel();
  struct GateReset {  // ZeRO-3's gate lives in this trainer, the model may outlive it
    models::SequenceRecommenderImpl* model;
    ~GateReset() { model->set_block_gate(nullptr); }
  } gate_reset{model_.get()};
  plan_sharding(params);
  AdamW optimizer(params, {t.lr, t.beta1, t.beta2, t.eps, t.weight_decay},
                  plan_ ? plan_->owned_by(setup_.rank) : std::vector<bool>{});

  RunState s = restore(resume, params, optimizer);
  if (data_parallel()) sync_ranks(s, optimizer, params);
  s.full_opt_state.clear();  // handed to the optimizer (and to the other ranks)

  data::TrainBatcher batcher(train_rows_ ? *train_rows_ : store_, batcher_options());
  log_plan(batcher, total_params);

  TrainSummary summary;
  std::optional<eval::EvalResult> final_test;  // holdout 1: the last epoch's evaluation is the test result
  const auto train_start = std::chrono::steady_clock::now();
  int64_t epoch = s.start_epoch;
  const bool trainable = model_->trainable() && !params.empty();
  for (; epoch < (trainable && !s.stopped ? t.epochs : 0); ++epoch) {
    summary.final_loss = train_epoch(epoch, optimizer, batcher);
    if (writer) append_line(out_path("metrics.jsonl"), train_json(epoch + 1, summary.final_loss, last_lr_));
    const bool stop = ((epoch + 1) % t.eval_every == 0 || epoch + 1 == t.epochs) && evaluate_epoch(epoch, s, final_test);
    commit_epoch(epoch, s, optimizer, stop);
    if (stop) {
      ++epoch;
      break;
    }
  }
  summary.train_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - train_start).count();
  summary.epochs_run = epoch;
  summary.best_metric = s.best;
  summary.best_epoch = s.best_epoch;

  // Final test numbers come from the best-validation checkpoint (holdout 1: the last epoch's).
  const std::string best_path = out_path("best.safetensors");
  if (!trainable || setup_.data.holdout != 2) {
    if (writer) save_checkpoint(best_path, *model_, setup_.model_yaml, setup_.context);
  } else if (writer && path_exists(best_path)) {
    load_state_into(*model_, load_tensors(best_path, nullptr), best_path);
  }
  // holdout 1 tests the weights its last evaluation already scored on test: no second pass.
  if (!final_test) broadcast_model();  // the other ranks test rank 0's best weights
  eval::EvalResult test = final_test ? std::move(*final_test) : evaluate_split(data::Split::kTest);
  summary.test = test.metrics;
  summary.test_users = test.users;
  if (writer)
    append_line(out_path("metrics.jsonl"),
                metrics_json(test.metrics, "test", config::name(setup_.eval.protocol), test.users, summary.best_epoch));
  log_peak_memory();
  return summary;
}

}  // namespace seqrec::train
