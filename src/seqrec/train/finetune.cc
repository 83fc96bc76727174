// Supervised fine-tuning loop.
#include "seqrec/train/finetune.h"

#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <map>
#include <optional>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>

#include "seqrec/common/error.h"
#include "seqrec/common/fs.h"
#include "seqrec/common/log.h"
#include "seqrec/common/progress.h"
#include "seqrec/common/random.h"
#include "seqrec/common/safetensors.h"
#include "seqrec/config/config_node.h"
#include "seqrec/llm/decoder_lm.h"
#include "seqrec/llm/precision.h"
#include "seqrec/llm/sft_data.h"
#include "seqrec/llm/tokenizer.h"
#include "seqrec/train/hf_export.h"
#include "seqrec/train/optim.h"
#include "seqrec/train/sft_batch.h"
#include "seqrec/config/validate.h"
#include "seqrec/dist/grad_reducer.h"
#include "seqrec/dist/process_group.h"
#include "seqrec/train/trainer.h"
#include "seqrec/train/zero.h"

namespace seqrec::train {
namespace {

using Clock = std::chrono::steady_clock;
using ExampleIds = std::vector<int64_t>;  // indices into a corpus

using config::key;
using config::require_positive;

FinetuneLoraOptions read_lora(config::ConfigNode node) {
  FinetuneLoraOptions o;
  o.enabled = node.get<bool>("enabled", o.enabled);
  o.adapter.rank = node.get<int64_t>("rank", o.adapter.rank);
  o.adapter.alpha = node.get<double>("alpha", o.adapter.alpha);
  o.adapter.dropout = node.get<double>("dropout", o.adapter.dropout);
  o.adapter.target_modules = node.get<std::vector<std::string>>("target_modules", o.adapter.target_modules);
  o.modules_to_save = node.get<std::vector<std::string>>("modules_to_save", o.modules_to_save);
  require_positive(o.adapter.rank, key(node, "rank"));
  if (!(o.adapter.alpha > 0)) throw ConfigError(key(node, "alpha"), "must be > 0");
  if (!(o.adapter.dropout >= 0 && o.adapter.dropout < 1)) throw ConfigError(key(node, "dropout"), "must be in [0, 1)");
  if (o.adapter.target_modules.empty()) throw ConfigError(key(node, "target_modules"), "must name at least one module");
  return o;
}

// ---------------------------------------------------------------- data

// Tokenises a JSONL file; examples too short to predict anything (one token) are dropped.
std::vector<llm::TokenizedExample> tokenize_file(const llm::Tokenizer& tokenizer, const std::string& path,
                                                 const llm::SftTokenizeOptions& options) {
  std::vector<llm::TokenizedExample> out;
  int64_t tokens = 0, truncated = 0, untrained = 0, dropped = 0;
  for (const auto& e : llm::read_sft_examples(path)) {
    llm::TokenizedExample t = llm::tokenize_example(tokenizer, e, options);
    if (t.input_ids.size() < 2) {
      ++dropped;
      continue;
    }
    truncated += static_cast<int64_t>(t.input_ids.size()) == options.max_length;
    untrained += t.num_targets() == 0;
    tokens += static_cast<int64_t>(t.input_ids.size());
    out.push_back(std::move(t));
  }
  if (out.empty()) throw DataError(path + ": no example has two or more tokens");
  log_info("%s: %zu examples, %ld tokens (%ld at max_length %ld, %ld without a trained token, %ld dropped: one token)",
           path.c_str(), out.size(), long(tokens), long(truncated), long(options.max_length), long(untrained),
           long(dropped));
  return out;
}

std::vector<std::string> tokens_to_add(const FinetuneOptions& o) {
  std::vector<std::string> tokens = o.added_tokens;
  if (!o.added_tokens_file.empty())
    for (auto& t : llm::read_token_list(o.added_tokens_file)) tokens.push_back(std::move(t));
  if (!o.index_file.empty())
    for (auto& t : llm::read_index_tokens(o.index_file)) tokens.push_back(std::move(t));
  return tokens;
}

// Micro-batches of `order`: batch_size examples each, or (batch_tokens > 0) as many consecutive
// examples as fit in batch_tokens tokens (at least one).
std::vector<ExampleIds> micro_batches(const ExampleIds& order, const std::vector<llm::TokenizedExample>& corpus,
                                      const FinetuneOptions& o) {
  std::vector<ExampleIds> out;
  int64_t tokens = 0;
  for (int64_t i : order) {
    const auto n = static_cast<int64_t>(corpus[i].input_ids.size());
    const bool full = o.batch_tokens > 0 ? tokens + n > o.batch_tokens
                                         : !out.empty() && static_cast<int64_t>(out.back().size()) >= o.batch_size;
    if (out.empty() || (full && !out.back().empty())) {
      out.emplace_back();
      tokens = 0;
    }
    out.back().push_back(i);
    tokens += n;
  }
  return out;
}

// One epoch: a seeded shuffle cut into micro-batches, grouped `per_step` per optimiser step
// (grad_accum_steps x ranks; the last step of an epoch may hold fewer).
std::vector<std::vector<ExampleIds>> plan_epoch(const std::vector<llm::TokenizedExample>& corpus,
                                                const FinetuneOptions& o, int64_t epoch, int64_t per_step) {
  ExampleIds order(corpus.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int64_t>(i);
  Rng rng(derive_seed({static_cast<uint64_t>(o.seed), static_cast<uint64_t>(epoch)}));
  shuffle(order.begin(), order.end(), rng);
  std::vector<std::vector<ExampleIds>> steps;
  for (auto& mb : micro_batches(order, corpus, o)) {
    if (steps.empty() || static_cast<int64_t>(steps.back().size()) >= per_step) steps.emplace_back();
    steps.back().push_back(std::move(mb));
  }
  return steps;
}

SftBatch collate(const std::vector<llm::TokenizedExample>& corpus, const ExampleIds& ids, bool packed) {
  std::vector<const llm::TokenizedExample*> examples;
  for (int64_t i : ids) examples.push_back(&corpus[i]);
  return collate_sft(examples, packed ? SftLayout::kPacked : SftLayout::kPadded);
}

// ---------------------------------------------------------------- model

// Full fine-tuning trains every weight; LoRA trains the adapters and the modules_to_save.
void set_trainable(llm::DecoderLmImpl& lm, const FinetuneLoraOptions& lora) {
  if (!lora.enabled) {
    for (auto& p : lm.parameters()) p.set_requires_grad(true);
    return;
  }
  const int64_t adapted = nn::apply_lora(lm, lora.adapter);
  for (const auto& m : lora.modules_to_save) {
    bool found = false;
    for (auto& p : lm.named_parameters())
      if (is_module_weight(p.key(), {m})) {
        p.value().set_requires_grad(true);
        found = true;
      }
    // A tied model has no lm_head of its own: the embeddings serve as both.
    if (!found && !(m == "lm_head" && lm.config().tie_word_embeddings))
      throw ConfigError("finetune.lora.modules_to_save", "no module named '" + m + "' (embed_tokens, lm_head)");
  }
  log_info("LoRA: %ld layers adapted (r %ld, alpha %g), trained whole: %zu module(s)", long(adapted),
           long(lora.adapter.rank), lora.adapter.alpha, lora.modules_to_save.size());
}

// Trainable parameters split as transformers' Trainer does: no weight decay on biases and norm weights.
void trainable_groups(llm::DecoderLmImpl& lm, NamedTensors& decay, NamedTensors& no_decay) {
  std::set<std::string> norms;
  for (const auto& m : lm.named_modules("", /*include_self=*/false))
    if (dynamic_cast<const nn::RmsNormImpl*>(m.value().get())) norms.insert(m.key() + ".weight");
  for (auto& p : lm.named_parameters()) {
    if (!p.value().requires_grad()) continue;
    const bool bias = p.key().size() >= 4 && p.key().compare(p.key().size() - 4, 4, "bias") == 0;
    (bias || norms.count(p.key()) ? no_decay : decay).emplace_back(p.key(), p.value());
  }
}

// Token-mean loss over a corpus, in micro-batches of its file order, without gradients. With a
// group, rank r computes micro-batches r, r + W, ... and the sums are added up.
double corpus_loss(llm::DecoderLmImpl& lm, const std::vector<llm::TokenizedExample>& corpus, const FinetuneOptions& o,
                   dist::ProcessGroup* group) {
  torch::NoGradGuard no_grad;
  const bool was_training = lm.is_training();
  lm.eval();
  ExampleIds order(corpus.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int64_t>(i);
  const int64_t rank = group ? group->rank() : 0, world = group ? group->world_size() : 1;
  double total = 0, targets = 0;
  const std::vector<ExampleIds> batches = micro_batches(order, corpus, o);
  for (size_t i = static_cast<size_t>(rank); i < batches.size(); i += static_cast<size_t>(world)) {
    SftBatch b = collate(corpus, batches[i], o.packed);
    total += sft_loss_sum(lm, b).item<double>();
    targets += static_cast<double>(b.target_ids.numel());
  }
  lm.train(was_training);
  if (group) {
    const auto sums = group->all_reduce_sum(std::vector<double>{total, targets});
    total = sums[0];
    targets = sums[1];
  }
  return targets > 0 ? total / targets : 0.0;
}

// ---------------------------------------------------------------- resume state

constexpr const char* kResumeFormat = "seqrec-finetune-resume-1";

// The options a run's trajectory depends on (not threads, logging or the device): a resumed run
// must have the same.
std::string trajectory_key(const FinetuneOptions& o, int64_t world) {
  const auto& a = o.lora.adapter;
  nlohmann::json j = {{"model", o.model_dir}, {"train_file", o.train_file}, {"valid_file", o.valid_file},
                      {"epoch_train_files", o.epoch_train_files},
                      {"added_tokens", tokens_to_add(o)}, {"only_train_response", o.only_train_response},
                      {"max_length", o.max_length}, {"epochs", o.epochs}, {"batch_size", o.batch_size},
                      {"batch_tokens", o.batch_tokens}, {"grad_accum_steps", o.grad_accum_steps},
                      {"packed", o.packed}, {"lr", o.lr}, {"weight_decay", o.weight_decay}, {"beta1", o.beta1},
                      {"beta2", o.beta2}, {"eps", o.eps}, {"schedule", config::name(o.schedule)},
                      {"warmup_ratio", o.warmup_ratio}, {"grad_clip", o.grad_clip}, {"eval_steps", o.eval_steps},
                      {"seed", o.seed}, {"lora", o.lora.enabled}, {"lora_rank", a.rank}, {"lora_alpha", a.alpha},
                      {"lora_dropout", a.dropout}, {"lora_target_modules", a.target_modules},
                      {"lora_modules_to_save", o.lora.modules_to_save}};
  if (o.precision != config::Precision::kFp32) j["precision"] = config::name(o.precision);  // absent for fp32: older states still resume
  if (o.warmup_min_ratio != 0) j["warmup_min_ratio"] = o.warmup_min_ratio;  // likewise
  if (world > 1) j["world_size"] = world;                    // ranks x grad_accum_steps micro-batches per step
  return j.dump();
}

// Refuses to start a run whose resume state would overwrite a file seqrec did not write.
void check_state_path(const std::string& path) {
  if (!path_exists(path)) return;
  bool ours = false;
  try {
    const SafetensorsFile file = SafetensorsFile::open(path);
    const auto it = file.metadata().find("format");
    ours = it != file.metadata().end() && it->second == kResumeFormat;
  } catch (const std::exception&) {
  }
  if (!ours) throw Error(path + ": exists and is not a resume state seqrec wrote; not replacing it");
}

std::string number_text(double x) { return nlohmann::json(x).dump(); }  // NaN -> "null"

double text_number(const std::string& s) {
  const auto j = nlohmann::json::parse(s);
  return j.is_null() ? std::numeric_limits<double>::quiet_NaN() : j.get<double>();
}

// ---------------------------------------------------------------- the loop

class FinetuneLoop {
 public:
  FinetuneLoop(const FinetuneOptions& o, const std::string& config_yaml) : o_(o), config_yaml_(config_yaml) {}
  FinetuneSummary run(const FinetuneInvocation& invocation);

 private:
  void prepare();
  void load_model();
  void set_up_training();
  void train_step(const std::vector<ExampleIds>& step, int64_t epoch, int64_t total_steps, int64_t warmup);
  void validate(int64_t epoch);
  void export_model();
  void log_progress(int64_t epoch, int64_t total_steps, double loss, double lr);
  void save_state(int64_t epoch);
  int64_t load_state();  // epochs done, 0 without a state file

  std::string state_path() const { return o_.out_dir + ".resume.safetensors"; }
  // ZeRO's sharded state: the moments' files beside the state, named after it.
  std::string shard_dir() const {
    const std::string d = std::filesystem::path(state_path()).parent_path().string();
    return d.empty() ? "." : d;
  }
  std::string shard_prefix() const {
    const std::string f = std::filesystem::path(state_path()).filename().string();
    return f.substr(0, f.size() - std::string(".safetensors").size());
  }
  bool writes_shards() const { return sharded() && o_.zero_state == config::ZeroState::kSharded; }
  std::vector<std::string> load_own_moments(const std::string& path, const std::map<std::string, std::string>& meta);
  void read_own_share();  // a rank other than 0, on resume: its moments when the state is sharded
  bool writer() const { return rank_ == 0; }  // rank 0 writes out_dir, the state and the log
  bool sharded() const { return zero_.has_value(); }  // ZeRO-1/2/3 across the ranks of a launch
  // ZeRO-3: block parameters live on their owners while training steps run; validation, the export
  // and the resume state see every block whole.
  void shard_blocks() {
    if (!sharded() || !zero_->gate || blocks_sharded_) return;
    zero_->gate->shard();
    blocks_sharded_ = true;
    if (writer() && !logged_resident_)
      log_info("finetune: ZeRO-3: rank 0 holds %ld of %ld bytes of block parameters outside a block's passes",
               long(zero_->gate->resident_bytes()), long(zero_->gate->total_bytes()));
    logged_resident_ = true;
  }
  void unshard_blocks() {
    if (blocks_sharded_) zero_->gate->unshard();
    blocks_sharded_ = false;
  }
  bool blocks_sharded_ = false, logged_resident_ = false;
  int64_t share_rank0_state(int64_t done);

  const FinetuneOptions& o_;
  std::string config_yaml_;
  std::shared_ptr<dist::ProcessGroup> group_;  // null in one process
  int64_t rank_ = 0, world_ = 1, local_rank_ = 0;
  std::unique_ptr<dist::GradientReducer> reducer_;
  std::unique_ptr<llm::Tokenizer> tokenizer_;
  llm::DecoderLm lm_{nullptr};
  HfExportSpec export_spec_;
  // The training corpus of `epoch` (1-based): train_file, or its epoch file.
  const std::vector<llm::TokenizedExample>& corpus(int64_t epoch) const {
    if (epoch <= 1 || epoch_train_.empty()) return train_;
    return epoch_train_[static_cast<size_t>(epoch - 2) % epoch_train_.size()];
  }

  std::vector<llm::TokenizedExample> train_, valid_;
  std::vector<std::vector<llm::TokenizedExample>> epoch_train_;  // finetune.epoch_train_files
  std::unique_ptr<AdamW> decay_opt_, no_decay_opt_;
  NamedTensors trainable_;  // the decay group's parameters, then the no-decay group's
  // ZeRO: which rank owns each parameter, per AdamW group and over trainable_ (the two joined), the
  // parameters this rank owns, and (rank 0, on resume) both groups' whole moments as read.
  struct Zero {
    ShardPlan decay, no_decay, all;
    NamedTensors owned;
    NamedTensors resumed_decay, resumed_no_decay;
    std::unique_ptr<Zero3Gate> gate;  // stage 3: the decoder blocks' parameters live on their owners
    ShardPlan replicated;             // the parameters every rank holds whole (all but the gate's) ...
    NamedTensors replicated_params;   // ... which go through the gradient reducer and the owners' broadcast
  };
  std::optional<Zero> zero_;
  bool own_share_loaded_ = false;  // resume: this rank read its moments from a sharded state
  FinetuneSummary summary_;
  std::string metrics_;           // metrics.jsonl so far
  int64_t step_ = 0;              // optimiser steps done
  int64_t last_validated_ = -1;   // step of the last validation
  double epoch_loss_sum_ = 0;     // sum of token losses this epoch
  int64_t epoch_targets_ = 0;
  int64_t window_tokens_ = 0;     // tokens since the last progress line
  Clock::time_point window_start_, start_;
};

void FinetuneLoop::prepare() {
  load_model();
  const llm::SftTokenizeOptions tokenize{o_.max_length, o_.only_train_response};
  train_ = tokenize_file(*tokenizer_, o_.train_file, tokenize);
  for (const std::string& file : o_.epoch_train_files) {
    epoch_train_.push_back(tokenize_file(*tokenizer_, file, tokenize));
    if (epoch_train_.back().size() != train_.size())
      log_warn("finetune: %s has %zu examples, %s %zu (epoch files normally hold the same samples)", file.c_str(),
               epoch_train_.back().size(), o_.train_file.c_str(), train_.size());
  }
  if (!o_.valid_file.empty()) valid_ = tokenize_file(*tokenizer_, o_.valid_file, tokenize);
  summary_.train_examples = static_cast<int64_t>(train_.size());
  summary_.valid_examples = static_cast<int64_t>(valid_.size());
  set_up_training();
}

// The tokenizer with the added tokens and the model with their rows.
void FinetuneLoop::load_model() {
  tokenizer_ = llm::load_tokenizer(o_.model_dir);
  const int64_t known = tokenizer_->vocab_size();
  const int64_t added = tokenizer_->add_tokens(tokens_to_add(o_));
  for (int64_t id = known; id < known + added; ++id) export_spec_.added_tokens.emplace_back(id, tokenizer_->id_to_piece(id));
  summary_.added_tokens = added;

  torch::manual_seed(static_cast<uint64_t>(o_.seed));
  lm_ = llm::load_decoder_lm(o_.model_dir);
  if (known > lm_->config().vocab_size)
    throw DataError(o_.model_dir + ": the tokenizer has " + std::to_string(known) +
                    " tokens but config.json vocab_size is " + std::to_string(lm_->config().vocab_size));
  init_added_token_rows(*lm_, known, known + added);
  log_info("%s: %ld tokens added (ids %ld..%ld), vocabulary %ld, model rows %ld", o_.model_dir.c_str(), long(added),
           long(known), long(known + added - 1), long(tokenizer_->vocab_size()), long(lm_->config().vocab_size));
}

// Trainable parameters, the two AdamW groups and what the export needs to know.
void FinetuneLoop::set_up_training() {
  set_trainable(*lm_, o_.lora);
  const torch::Device device = resolve_device(o_.device, local_rank_);
  lm_->to(device);
  lm_->gradient_checkpointing = o_.gradient_checkpointing;
  llm::set_training_precision(*lm_, o_.precision, device, "finetune.precision");
  lm_->train();
  NamedTensors decay, no_decay;
  trainable_groups(*lm_, decay, no_decay);
  trainable_ = decay;
  trainable_.insert(trainable_.end(), no_decay.begin(), no_decay.end());
  std::vector<bool> owned_decay, owned_no_decay;  // empty: this process updates every parameter
  if (o_.zero_stage > 0 && group_) {
    Zero z;
    z.decay = ShardPlan::balanced(decay, world_);
    z.no_decay = ShardPlan::balanced(no_decay, world_);
    z.all = ShardPlan{z.decay.owner, world_};
    z.all.owner.insert(z.all.owner.end(), z.no_decay.owner.begin(), z.no_decay.owner.end());
    for (size_t i = 0; i < trainable_.size(); ++i)
      if (z.all.owner[i] == rank_) z.owned.push_back(trainable_[i]);
    owned_decay = z.decay.owned_by(rank_);
    owned_no_decay = z.no_decay.owned_by(rank_);
    if (o_.zero_stage == 3) {
      std::vector<std::shared_ptr<torch::nn::Module>> blocks;
      for (size_t i = 0; i < lm_->model->layers->size(); ++i) blocks.push_back(lm_->model->layers->ptr(i));
      z.gate = std::make_unique<Zero3Gate>(group_, z.all, trainable_, blocks, o_.zero_prefetch);
      lm_->block_gate = z.gate.get();
    }
    z.replicated.world_size = world_;
    for (size_t i = 0; i < trainable_.size(); ++i)
      if (!z.gate || !z.gate->manages(i)) {
        z.replicated.owner.push_back(z.all.owner[i]);
        z.replicated_params.push_back(trainable_[i]);
      }
    zero_ = std::move(z);
  } else if (o_.zero_stage > 0) {
    log_info("finetune.zero_stage %ld: one process owns every parameter (ZeRO shards across ranks of `seqrec launch`)",
             long(o_.zero_stage));
  }
  AdamWOptions adam{o_.lr, o_.beta1, o_.beta2, o_.eps, o_.weight_decay};
  decay_opt_ = std::make_unique<AdamW>(decay, adam, owned_decay);
  adam.weight_decay = 0;
  no_decay_opt_ = std::make_unique<AdamW>(no_decay, adam, owned_no_decay);
  int64_t count = 0;
  for (const auto& [name, p] : trainable_) count += p.numel();
  log_info("training %ld parameters (%zu tensors, %zu without weight decay)", long(count), trainable_.size(),
           no_decay.size());

  export_spec_.base_dir = o_.model_dir;
  export_spec_.lora = o_.lora.enabled;
  export_spec_.lora_options = o_.lora.adapter;
  for (const auto& m : o_.lora.modules_to_save)
    for (const auto& p : lm_->named_parameters())
      if (is_module_weight(p.key(), {m})) {
        export_spec_.modules_to_save.push_back(m);
        break;
      }
}

void FinetuneLoop::train_step(const std::vector<ExampleIds>& step, int64_t epoch, int64_t total_steps, int64_t warmup) {
  std::vector<SftBatch> batches;  // this rank's: micro-batches rank, rank + W, ... of the step
  for (size_t i = static_cast<size_t>(rank_); i < step.size(); i += static_cast<size_t>(world_))
    batches.push_back(collate(corpus(epoch), step[i], o_.packed));
  const double lr = scheduled_lr(o_.schedule, o_.lr, step_, total_steps, warmup, 0.0, o_.warmup_min_ratio);
  decay_opt_->zero_grad();
  no_decay_opt_->zero_grad();
  StepShare share{group_.get(), reducer_.get()};
  SftBatch filler;  // ZeRO-3: every rank runs the blocks as often as the busiest one
  if (sharded() && zero_->gate) {
    for (const auto& ids : step)
      if ((filler = collate(corpus(epoch), ids, o_.packed)).target_ids.numel() > 0) break;
    if (filler.target_ids.numel() > 0) share.filler = &filler;
  }
  const StepLoss loss = accumulate_gradients(*lm_, batches, share);
  if (sharded() && zero_->gate) zero_->gate->finish();  // block gradients: the owners' means
  if (o_.grad_clip > 0) {
    if (sharded())  // the norm over the owned gradients of all ranks (under ZeRO-2 a rank has only those)
      clip_grad_norm(zero_->owned, o_.grad_clip, [this](double sq) { return group_->all_reduce_sum({sq})[0]; });
    else
      clip_grad_norm(trainable_, o_.grad_clip);
  }
  decay_opt_->step(lr);
  no_decay_opt_->step(lr);
  if (sharded()) broadcast_from_owners(*group_, zero_->replicated, zero_->replicated_params);  // every update
  ++step_;
  epoch_loss_sum_ += loss.mean * static_cast<double>(loss.targets);
  epoch_targets_ += loss.targets;
  window_tokens_ += loss.tokens;
  if (writer() && (step_ % o_.log_every == 0 || step_ == total_steps)) log_progress(epoch, total_steps, loss.mean, lr);
  if (!valid_.empty() && o_.eval_steps > 0 && step_ % o_.eval_steps == 0) validate(epoch);
}

void FinetuneLoop::log_progress(int64_t epoch, int64_t total_steps, double loss, double lr) {
  const auto now = Clock::now();
  const double window = std::chrono::duration<double>(now - window_start_).count();
  const double elapsed = std::chrono::duration<double>(now - start_).count();
  const double eta = elapsed / static_cast<double>(step_) * static_cast<double>(total_steps - step_);
  std::fprintf(stderr, "[finetune] epoch %ld/%ld step %ld/%ld loss %.4f lr %.2e %.0f tok/s eta %s\n", long(epoch),
               long(o_.epochs), long(step_), long(total_steps), loss, lr,
               window > 0 ? static_cast<double>(window_tokens_) / window : 0.0, format_duration(eta).c_str());
  window_tokens_ = 0;
  window_start_ = now;
}

void FinetuneLoop::validate(int64_t epoch) {
  last_validated_ = step_;
  const bool resharding = blocks_sharded_;  // (ranks validate different batches: no per-block gathers)
  unshard_blocks();
  const double loss = corpus_loss(*lm_, valid_, o_, group_.get());
  const bool best = !(loss >= summary_.best_valid_loss);  // also when best is still NaN
  nlohmann::json line = {{"epoch", epoch}, {"split", "valid"}, {"step", step_}, {"valid_loss", loss}, {"best", best}};
  if (epoch_targets_ > 0) line["train_loss"] = epoch_loss_sum_ / static_cast<double>(epoch_targets_);
  metrics_ += line.dump() + "\n";
  log_info("[valid] epoch %ld step %ld loss %.4f%s", long(epoch), long(step_), loss,
           best ? " (best so far: exported)" : "");
  if (best) {
    summary_.best_valid_loss = loss;
    if (writer()) export_model();
  }
  if (resharding) shard_blocks();
}

void FinetuneLoop::export_model() {
  summary_.exported_step = step_;
  export_spec_.extra_files = {{"seqrec_finetune.yaml", config_yaml_}, {"metrics.jsonl", metrics_}};
  export_hf_model(*lm_, export_spec_, o_.out_dir);
}

// The trained weights, both optimisers' moments and the loop's counters after `epoch`, beside out_dir.
// Under ZeRO every rank calls it. Sharded (finetune.zero_state): every rank writes its own moments
// to a shard named after the state and the epoch, and once all are on disk (a barrier) rank 0
// writes the state naming them, the commit point (a kill before it leaves the previous unit whole),
// then removes older shards. Consolidated: the owners' moments meet on rank 0, which writes the
// same file as an unsharded run.
void FinetuneLoop::save_state(int64_t epoch) {
  NamedTensors decay_state, no_decay_state;
  std::vector<std::string> shards;
  if (writes_shards()) {
    NamedTensors mine;
    for (const auto& [name, t] : decay_opt_->state()) mine.emplace_back("decay." + name, t);
    for (const auto& [name, t] : no_decay_opt_->state()) mine.emplace_back("no_decay." + name, t);
    save_optimizer_shard(shard_dir() + "/" + optimizer_shard_name(epoch, rank_, world_, shard_prefix()), mine, epoch,
                         step_);
    for (int64_t r = 0; r < world_; ++r) shards.push_back(optimizer_shard_name(epoch, r, world_, shard_prefix()));
    group_->barrier();
  } else {
    decay_state = sharded() ? consolidate_optimizer_state(*group_, zero_->decay, *decay_opt_) : decay_opt_->state();
    no_decay_state =
        sharded() ? consolidate_optimizer_state(*group_, zero_->no_decay, *no_decay_opt_) : no_decay_opt_->state();
  }
  if (!writer()) return;
  const std::string path = state_path();
  NamedTensors tensors;
  for (const auto& [name, p] : trainable_) tensors.emplace_back("param." + name, p);
  for (const auto& [name, t] : decay_state) tensors.emplace_back("decay." + name, t);
  for (const auto& [name, t] : no_decay_state) tensors.emplace_back("no_decay." + name, t);
  std::map<std::string, std::string> meta = {
      {"format", kResumeFormat}, {"run", trajectory_key(o_, world_)}, {"epoch", std::to_string(epoch)},
      {"step", std::to_string(step_)}, {"decay_steps", std::to_string(decay_opt_->step_count())},
      {"no_decay_steps", std::to_string(no_decay_opt_->step_count())},
      {"last_validated", std::to_string(last_validated_)}, {"best_valid_loss", number_text(summary_.best_valid_loss)},
      {"exported_step", std::to_string(summary_.exported_step)}, {"train_loss", number_text(summary_.train_loss)},
      {"metrics", metrics_}};
  if (!shards.empty()) meta["optimizer_shards"] = nlohmann::json(shards).dump();
  save_tensors(path, tensors, meta);
  remove_other_optimizer_shards(shard_dir(), shards, shard_prefix());  // earlier epochs' (or all: consolidated)
}

namespace {

// The value of `key` in the metadata of the resume state at `path`.
const std::string& resume_meta(const std::map<std::string, std::string>& meta, const std::string& key,
                               const std::string& path) {
  auto it = meta.find(key);
  if (it == meta.end()) throw CheckpointError(path + ": metadata '" + key + "' is missing (not a seqrec resume state?)");
  return it->second;
}

// The tensors whose names start with `prefix`, without it.
NamedTensors with_prefix(const NamedTensors& tensors, const std::string& prefix) {
  NamedTensors out;
  for (const auto& [name, t] : tensors)
    if (name.compare(0, prefix.size(), prefix) == 0) out.emplace_back(name.substr(prefix.size()), t);
  return out;
}

}  // namespace

// This rank's moments (what its two optimisers own) from the shards a sharded state names; returns
// their names.
std::vector<std::string> FinetuneLoop::load_own_moments(const std::string& path, const std::map<std::string, std::string>& meta) {
  auto get = [&](const std::string& k) { return resume_meta(meta, k, path); };
  TrainCounters c;
  c.epoch = std::stoll(get("epoch"));
  c.step = std::stoll(get("step"));
  c.optimizer_shards = nlohmann::json::parse(get("optimizer_shards")).get<std::vector<std::string>>();
  std::set<std::string> wanted;  // the names of the moments this rank's optimisers own
  for (const auto& [name, t] : decay_opt_->state()) wanted.insert("decay." + name);
  for (const auto& [name, t] : no_decay_opt_->state()) wanted.insert("no_decay." + name);
  const NamedTensors moments =
      load_optimizer_shards(shard_dir(), path, c, [&](const std::string& n) { return wanted.count(n) > 0; });
  decay_opt_->load_state(with_prefix(moments, "decay."), std::stoll(get("decay_steps")));
  no_decay_opt_->load_state(with_prefix(moments, "no_decay."), std::stoll(get("no_decay_steps")));
  own_share_loaded_ = true;
  return c.optimizer_shards;
}

void FinetuneLoop::read_own_share() {
  const std::string path = state_path();
  if (!sharded() || !path_exists(path)) return;
  const auto meta = SafetensorsFile::open(path).metadata();  // the header only: rank 0 reads the weights
  if (meta.count("optimizer_shards")) load_own_moments(path, meta);
}

int64_t FinetuneLoop::load_state() {
  const std::string path = state_path();
  if (!path_exists(path)) {
    log_info("resume: no %s, starting from the beginning", path.c_str());
    return 0;
  }
  std::map<std::string, std::string> meta;
  const NamedTensors state = load_tensors(path, &meta);
  auto get = [&](const std::string& k) { return resume_meta(meta, k, path); };
  if (get("format") != kResumeFormat) throw CheckpointError(path + ": not a " + std::string(kResumeFormat) + " file");
  if (get("run") != trajectory_key(o_, world_))
    throw CheckpointError(path + ": written by a run with other options or another number of ranks (only threads, "
                                 "log_every, device and gradient_checkpointing may change on resume)");
  std::map<std::string, torch::Tensor> by_name(state.begin(), state.end());
  torch::NoGradGuard no_grad;
  for (auto& [name, p] : trainable_) {
    auto it = by_name.find("param." + name);
    if (it == by_name.end()) throw CheckpointError(path + ": missing tensor 'param." + name + "'");
    p.copy_(it->second);
  }
  std::vector<std::string> shards;
  if (meta.count("optimizer_shards")) {  // sharded: each rank reads its own moments (read_own_share)
    shards = load_own_moments(path, meta);
  } else {
    decay_opt_->load_state(with_prefix(state, "decay."), std::stoll(get("decay_steps")));  // (its own share under ZeRO)
    no_decay_opt_->load_state(with_prefix(state, "no_decay."), std::stoll(get("no_decay_steps")));
    if (sharded()) {  // the other ranks' shares, handed out by share_rank0_state
      zero_->resumed_decay = with_prefix(state, "decay.");
      zero_->resumed_no_decay = with_prefix(state, "no_decay.");
    }
  }
  step_ = std::stoll(get("step"));
  last_validated_ = std::stoll(get("last_validated"));
  summary_.best_valid_loss = text_number(get("best_valid_loss"));
  summary_.exported_step = std::stoll(get("exported_step"));
  summary_.train_loss = text_number(get("train_loss"));
  metrics_ = get("metrics");
  const int64_t epoch = std::stoll(get("epoch"));
  if (!shards.empty()) remove_other_optimizer_shards(shard_dir(), shards, shard_prefix());  // a killed run's, unnamed
  log_info("resume: %s: %ld epochs (%ld steps) done", path.c_str(), long(epoch), long(step_));
  return epoch;
}

// Rank 0's trained weights, AdamW moments and loop counters (fresh or resumed) on every rank, so
// that all ranks take the same steps from the same point; returns the epochs done.
int64_t FinetuneLoop::share_rank0_state(int64_t done) {
  auto counters = torch::tensor({double(done), double(step_), double(decay_opt_->step_count()),
                                 double(no_decay_opt_->step_count()), double(last_validated_),
                                 summary_.best_valid_loss, double(summary_.exported_step), summary_.train_loss,
                                 double(own_share_loaded_)},
                                torch::kFloat64);  // [9]
  group_->broadcast({counters}, 0);
  const double* c = counters.data_ptr<double>();
  std::vector<torch::Tensor> tensors;
  for (auto& [name, p] : trainable_) tensors.push_back(p.data());
  if (sharded()) {  // weights from rank 0; each rank's moments from the whole state rank 0 read
    group_->broadcast(tensors, 0);
    if (c[0] > 0 && c[8] != 0) {  // a sharded state: every rank has read its own moments
      if (!own_share_loaded_)
        throw CheckpointError(state_path() + ": rank " + std::to_string(rank_) +
                              " cannot read the sharded optimizer state rank 0 resumes from (its folder must be "
                              "visible to every rank)");
    } else if (c[0] > 0) {
      distribute_optimizer_state(*group_, zero_->decay, zero_->resumed_decay, static_cast<int64_t>(c[2]), *decay_opt_);
      distribute_optimizer_state(*group_, zero_->no_decay, zero_->resumed_no_decay, static_cast<int64_t>(c[3]),
                                 *no_decay_opt_);
      zero_->resumed_decay.clear();
      zero_->resumed_no_decay.clear();
    }
  } else {
    NamedTensors decay = decay_opt_->state(), no_decay = no_decay_opt_->state();
    for (auto* state : {&decay, &no_decay})
      for (auto& [name, t] : *state) tensors.push_back(t);
    group_->broadcast(tensors, 0);
    decay_opt_->load_state(decay, static_cast<int64_t>(c[2]));
    no_decay_opt_->load_state(no_decay, static_cast<int64_t>(c[3]));
  }
  step_ = static_cast<int64_t>(c[1]);
  last_validated_ = static_cast<int64_t>(c[4]);
  summary_.best_valid_loss = c[5];
  summary_.exported_step = static_cast<int64_t>(c[6]);
  summary_.train_loss = c[7];
  return static_cast<int64_t>(c[0]);
}

FinetuneSummary FinetuneLoop::run(const FinetuneInvocation& invocation) {
  group_ = invocation.group && invocation.group->world_size() > 1 ? invocation.group : nullptr;
  rank_ = group_ ? group_->rank() : 0;
  world_ = group_ ? group_->world_size() : 1;
  local_rank_ = invocation.local_rank;
  check_state_path(state_path());
  prepare();
  int64_t done = invocation.resume && writer() ? load_state() : 0;
  if (invocation.resume && !writer()) read_own_share();
  if (group_) {
    done = share_rank0_state(done);
    dist::GradientReducerOptions ro;
    if (sharded() && o_.zero_stage >= 2) ro.owners = zero_->replicated.owner;  // ZeRO-2: each gradient to its owner
    reducer_ = std::make_unique<dist::GradientReducer>(group_, sharded() ? zero_->replicated_params : trainable_, ro);
    log_info("finetune: data parallel over %ld ranks (%s): %ld micro-batches per rank and step, %ld in all",
             long(world_), group_->backend().c_str(), long(o_.grad_accum_steps), long(o_.grad_accum_steps * world_));
    if (sharded() && writer()) {
      int64_t total = 0;
      for (const auto& [name, p] : trainable_) total += p.numel();
      log_info("finetune: ZeRO-%ld, AdamW moments%s sharded by parameter; rank 0 owns %ld of %zu parameters "
               "(%.1f%% of the elements)",
               long(o_.zero_stage),
               o_.zero_stage >= 3 ? ", gradients and block parameters" : o_.zero_stage >= 2 ? " and gradients" : "",
               long(zero_->owned.size()),
               trainable_.size(), 100.0 * double(zero_->all.numel_owned_by(0, trainable_)) / double(std::max<int64_t>(total, 1)));
    }
  }
  std::vector<std::vector<std::vector<ExampleIds>>> epochs;
  int64_t total_steps = 0;
  for (int64_t e = 1; e <= o_.epochs; ++e) {
    epochs.push_back(plan_epoch(corpus(e), o_, e, o_.grad_accum_steps * world_));
    total_steps += static_cast<int64_t>(epochs.back().size());
  }
  const auto warmup = static_cast<int64_t>(std::ceil(o_.warmup_ratio * static_cast<double>(total_steps)));
  log_info("%ld epochs, %ld steps (micro-batches of %s, %ld per step, %s), %ld warm-up steps", long(o_.epochs),
           long(total_steps), o_.batch_tokens > 0 ? (std::to_string(o_.batch_tokens) + " tokens").c_str()
                               : (std::to_string(o_.batch_size) + " examples").c_str(),
           long(o_.grad_accum_steps), o_.packed ? "packed" : "padded", long(warmup));
  start_ = window_start_ = Clock::now();
  for (int64_t e = done + 1; e <= o_.epochs; ++e) {
    // Dropout draws depend on (seed, epoch) only, so a run resumed at an epoch boundary repeats;
    // rank 0 draws what one process draws, the other ranks their own.
    const auto seed = static_cast<uint64_t>(o_.seed), epoch = static_cast<uint64_t>(e);
    torch::manual_seed(rank_ == 0 ? derive_seed({seed, 0xf17eULL, epoch})
                                  : derive_seed({seed, 0xf17eULL, epoch, static_cast<uint64_t>(rank_)}));
    epoch_loss_sum_ = 0;
    epoch_targets_ = 0;
    shard_blocks();
    for (const auto& step : epochs[e - 1]) train_step(step, e, total_steps, warmup);
    unshard_blocks();
    summary_.train_loss = epoch_targets_ > 0 ? epoch_loss_sum_ / static_cast<double>(epoch_targets_) : 0.0;
    const bool last = e == o_.epochs;
    if (!valid_.empty() && last_validated_ != step_ && (o_.eval_steps == 0 || last)) validate(e);
    if (last_validated_ != step_) {  // no validation line at the end of this epoch: a training line
      nlohmann::json line = {{"epoch", e}, {"split", "train"}, {"step", step_}, {"loss", summary_.train_loss}};
      metrics_ += line.dump() + "\n";
    }
    if (writer() || sharded()) save_state(e);
    if (e == invocation.stop_after_epoch && !last) {
      log_info("stopping after epoch %ld as asked; continue with --resume", long(e));
      summary_.steps = step_;
      if (group_) group_->barrier();
      return summary_;
    }
  }
  summary_.steps = step_;
  summary_.seconds = std::chrono::duration<double>(Clock::now() - start_).count();
  if (writer()) {
    if (valid_.empty())
      export_model();
    else
      write_file_atomic(o_.out_dir + "/metrics.jsonl", metrics_);  // listed in the manifest: ours to update
  }
  if (group_) group_->barrier();  // the files exist when any rank returns
  return summary_;
}

}  // namespace

void init_added_token_rows(llm::DecoderLmImpl& lm, int64_t first, int64_t end) {
  if (end <= first) return;
  if (end > lm.config().vocab_size) llm::resize_token_embeddings(lm, end);
  torch::NoGradGuard no_grad;
  auto init = [&](torch::Tensor w) {
    w.narrow(0, first, end - first).copy_(w.narrow(0, 0, first).mean(0, /*keepdim=*/true).expand({end - first, w.size(1)}));
  };
  init(lm.model->embed_tokens->weight);
  if (lm.lm_head) init(lm.lm_head->weight);
}

FinetuneOptions read_finetune_options(config::ConfigNode node) {
  FinetuneOptions o;
  o.model_dir = node.get<std::string>("model", o.model_dir);
  o.train_file = node.get<std::string>("train_file", o.train_file);
  o.epoch_train_files = node.get<std::vector<std::string>>("epoch_train_files", o.epoch_train_files);
  o.valid_file = node.get<std::string>("valid_file", o.valid_file);
  o.out_dir = node.get<std::string>("out_dir", o.out_dir);
  o.added_tokens = node.get<std::vector<std::string>>("added_tokens", o.added_tokens);
  o.added_tokens_file = node.get<std::string>("added_tokens_file", o.added_tokens_file);
  o.index_file = node.get<std::string>("index_file", o.index_file);
  o.only_train_response = node.get<bool>("only_train_response", o.only_train_response);
  o.max_length = node.get<int64_t>("max_length", o.max_length);
  o.epochs = node.get<int64_t>("epochs", o.epochs);
  o.batch_size = node.get<int64_t>("batch_size", o.batch_size);
  o.batch_tokens = node.get<int64_t>("batch_tokens", o.batch_tokens);
  o.grad_accum_steps = node.get<int64_t>("grad_accum_steps", o.grad_accum_steps);
  o.packed = node.get<bool>("packed", o.packed);
  o.lr = node.get<double>("lr", o.lr);
  o.weight_decay = node.get<double>("weight_decay", o.weight_decay);
  o.beta1 = node.get<double>("beta1", o.beta1);
  o.beta2 = node.get<double>("beta2", o.beta2);
  o.eps = node.get<double>("eps", o.eps);
  const std::string schedule = node.get<std::string>("schedule", config::name(o.schedule));
  o.warmup_ratio = node.get<double>("warmup_ratio", o.warmup_ratio);
  o.warmup_min_ratio = node.get<double>("warmup_min_ratio", o.warmup_min_ratio);
  o.grad_clip = node.get<double>("grad_clip", o.grad_clip);
  o.eval_steps = node.get<int64_t>("eval_steps", o.eval_steps);
  o.seed = node.get<int64_t>("seed", o.seed);
  o.threads = node.get<int64_t>("threads", o.threads);
  o.log_every = node.get<int64_t>("log_every", o.log_every);
  o.gradient_checkpointing = node.get<bool>("gradient_checkpointing", o.gradient_checkpointing);
  o.device = node.get<std::string>("device", o.device);
  o.precision = config::read_precision(node, o.precision);
  o.zero_stage = node.get<int64_t>("zero_stage", o.zero_stage);
  o.zero_prefetch = node.get<bool>("zero_prefetch", o.zero_prefetch);
  o.zero_state = config::read_zero_state(node, o.zero_state);
  if (o.zero_stage < 0 || o.zero_stage > 3) throw ConfigError(key(node, "zero_stage"), "must be 0, 1, 2 or 3");
  o.lora = read_lora(node.child("lora"));

  for (const auto& [name, value] : {std::pair<const char*, const std::string*>{"model", &o.model_dir},
                                    {"train_file", &o.train_file},
                                    {"out_dir", &o.out_dir}})
    if (value->empty()) throw ConfigError(key(node, name), "required key is missing");
  if (o.max_length < 2) throw ConfigError(key(node, "max_length"), "must be >= 2, got " + std::to_string(o.max_length));
  require_positive(o.epochs, key(node, "epochs"));
  require_positive(o.batch_size, key(node, "batch_size"));
  require_positive(o.grad_accum_steps, key(node, "grad_accum_steps"));
  require_positive(o.log_every, key(node, "log_every"));
  if (o.batch_tokens < 0) throw ConfigError(key(node, "batch_tokens"), "must be >= 0 (0 = batch_size examples)");
  if (o.eval_steps < 0) throw ConfigError(key(node, "eval_steps"), "must be >= 0 (0 = after each epoch)");
  if (!(o.lr > 0)) throw ConfigError(key(node, "lr"), "must be > 0");
  if (o.weight_decay < 0) throw ConfigError(key(node, "weight_decay"), "must be >= 0");
  if (!(o.beta1 >= 0 && o.beta1 < 1)) throw ConfigError(key(node, "beta1"), "must be in [0, 1)");
  if (!(o.beta2 >= 0 && o.beta2 < 1)) throw ConfigError(key(node, "beta2"), "must be in [0, 1)");
  if (!(o.eps > 0)) throw ConfigError(key(node, "eps"), "must be > 0");
  // Its own table: this message lists cosine (the default here) first, train.schedule's lists constant first.
  o.schedule = config::parse_one_of<config::Schedule>(
      schedule, {{config::Schedule::kCosine, "cosine"}, {config::Schedule::kConstant, "constant"}},
      key(node, "schedule"));
  if (!(o.warmup_ratio >= 0 && o.warmup_ratio < 1)) throw ConfigError(key(node, "warmup_ratio"), "must be in [0, 1)");
  if (!(o.warmup_min_ratio >= 0 && o.warmup_min_ratio <= 1))
    throw ConfigError(key(node, "warmup_min_ratio"), "must be in [0, 1]");
  if (o.grad_clip < 0) throw ConfigError(key(node, "grad_clip"), "must be >= 0 (0 = off)");
  if (o.threads < 0) throw ConfigError(key(node, "threads"), "must be >= 0 (0 = all cores)");
  if (!std::regex_match(o.device, std::regex("cpu|cuda(:[0-9]+)?")))
    throw ConfigError(key(node, "device"), "'" + o.device + "' is not one of: cpu, cuda, cuda:N");
  return o;
}

FinetuneSummary run_finetune(const FinetuneOptions& options, const std::string& config_yaml,
                             const FinetuneInvocation& invocation) {
  FinetuneLoop loop(options, config_yaml);
  return loop.run(invocation);
}

}  // namespace seqrec::train
