// Options structs of the run-level config sections (data:, train:, eval:) and their readers.
// Model options live next to each model and are read by models/registry.cc.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace seqrec::config {

class ConfigNode;

/// train.loss.name: the training objective.
enum class LossName { kBce, kSampledSoftmax, kSoftmax, kNce };
/// train.schedule (and finetune.schedule): the learning rate after the warm-up.
enum class Schedule { kConstant, kCosine };
/// eval.protocol: how the target is ranked.
enum class Protocol { kFull, kSampled, kGenerative };
/// eval.history_mask: which history items full ranking masks.
enum class HistoryMask { kFull, kWindow, kNone };
/// train.precision and finetune.precision: the LLM towers' compute dtype when training.
enum class Precision { kFp32, kBf16 };
/// train.zero_state and finetune.zero_state: where ZeRO's resume state keeps the optimizer moments.
enum class ZeroState { kSharded, kConsolidated };
/// eval.constraint (generative): which token sequences beam search may emit.
enum class GenerationConstraint { kTrie, kWhitelist };

/// The config spelling of each enumerator ("sampled_softmax", "cosine", ...), as the readers parse it.
std::string name(LossName value);
std::string name(Schedule value);
std::string name(Protocol value);
std::string name(HistoryMask value);
std::string name(Precision value);
std::string name(ZeroState value);
std::string name(GenerationConstraint value);

/// `<node>.precision` and `<node>.zero_state` (train: and finetune: alike), `fallback` when absent;
/// an unknown spelling throws ConfigError naming the key and the accepted spellings.
Precision read_precision(ConfigNode node, Precision fallback);
ZeroState read_zero_state(ConfigNode node, ZeroState fallback);

/// `data:` -- which prepared store to use and how sequences are cut.
struct DataOptions {
  std::string dir;                   ///< prepared directory (output of `seqrec prepare`)
  int64_t max_seq_len = 200;         ///< L: history length fed to the model
  bool chunk_long_sequences = false; ///< HLLM: cut long training parts into chunks of L+1
  int64_t prefetch_batches = 4;      ///< batches prepared ahead by the loader thread
  /// Cold-start protocol: this share of the items (drawn with cold_item_seed) never appears in
  /// training (inputs, targets or negatives); evaluation also reports cold_* metrics over the users
  /// whose target is such an item. 0 = off.
  double cold_item_share = 0.0;
  int64_t cold_item_seed = 1;
  /// Items held out at the end of every evaluated user's sequence: 2 = the validation and the test
  /// item (model selection on valid); 1 = the test item only, as GR's code (`ignore_last_n = 1`):
  /// the validation item is trained on, there is no validation split, every evaluation during
  /// training is on the test split and the last epoch's model is the one tested.
  int64_t holdout = 2;
  /// PerSRec's window cut (MerRec: -2000, -720): every user's sequence is sliced as Python's
  /// seq[item_start_position:item_end_position] (negative = from the end, end 0 = to the end)
  /// before the leave-one-out split, for training and evaluation alike.
  int64_t item_start_position = 0;
  int64_t item_end_position = 0;
  /// PerSRec's `train_feat_max_length` N (0 = off): training reads only the last N items of each
  /// user's training part, and the window cut above applies to those N, as the PerSRec loader does
  /// (seq[:-holdout][-N:][start:end]); evaluation still cuts the whole sequence (seq[start:end]).
  int64_t train_feat_max_length = 0;
};

/// `train.loss:` -- the training objective.
struct LossOptions {
  LossName name = LossName::kBce;    ///< bce | sampled_softmax | softmax | nce
  int64_t num_negatives = 1;         ///< per position (bce: 1; sampled_softmax: R; nce: R, pooled over all positions and ranks)
  double temperature = 1.0;          ///< logits are divided by it (sampled_softmax / softmax)
  bool exclude_history = true;       ///< negatives avoid the user's training items
  // nce (HLLM, systems.md §1.6): cosine logits times a scale, near-duplicates of the positive masked.
  bool learnable_scale = true;       ///< scale = exp(clamp(model.logit_scale, 0, ln max_scale))
  double scale = 20.0;               ///< fixed scale when not learnable (HLLM fix_temp: 1/0.05)
  double max_scale = 100.0;          ///< clamp of the learnable scale
  bool shared_pool = true;           ///< all positions score against the batch's whole negative pool
  double dedup_threshold = 0.99;     ///< negatives with cos(positive, negative) above it are dropped
};

/// `train:` -- optimisation and the training loop.
struct TrainOptions {
  std::string out_dir;               ///< checkpoints, metrics.jsonl, resolved config
  int64_t epochs = 100;              ///< maximum epochs
  int64_t batch_size = 128;          ///< sequences per step (per process)
  double lr = 1e-3;                  ///< peak learning rate
  double beta1 = 0.9;                ///< AdamW betas
  double beta2 = 0.98;
  double eps = 1e-8;                 ///< AdamW epsilon
  double weight_decay = 0.0;         ///< decoupled (AdamW) weight decay
  Schedule schedule = Schedule::kConstant;  ///< constant | cosine (cosine decays to min_lr_ratio*lr)
  double warmup_ratio = 0.0;         ///< share of all steps spent in linear warm-up
  int64_t warmup_steps = 0;          ///< warm-up steps (overrides warmup_ratio when > 0)
  double warmup_min_ratio = 0.0;     ///< the warm-up rises from this share of lr (Molar: 0.01, "1/100 of the peak")
  double min_lr_ratio = 0.0;         ///< cosine floor as a share of lr
  double clip_norm = 0.0;            ///< global gradient-norm clip (0 = off)
  int64_t seed = 42;                 ///< fixes data order, sampling and init
  int64_t eval_every = 1;            ///< validate every N epochs
  std::string metric = "ndcg@10";    ///< model selection / early stopping metric (higher is better)
  int64_t patience = 0;              ///< stop after N evaluations without improvement (0 = never)
  int64_t log_every = 20;            ///< progress-bar refresh in steps
  int64_t threads = 0;               ///< intra-op threads (0 = all cores)
  bool length_bucketing = false;     ///< group similar lengths into batches (off: random batches, as
                                     ///< the papers' code; bucketing costs quality, docs/benchmarks.md)
  std::string device = "cpu";        ///< cpu | cuda (the GPU LOCAL_RANK names; cuda:N for one of them)
  int64_t grad_accum_steps = 1;      ///< micro-batches of batch_size per optimiser step (sums of exact
                                     ///< per-position losses: equal to one batch of grad_accum_steps x batch_size)
  int64_t zero_stage = 0;            ///< data parallel: 0 replicated (DDP), 1 optimizer state sharded, 2 and gradients, 3 and block parameters
  bool zero_prefetch = true;         ///< zero_stage 3: gather the next block (and reduce gradients) while one computes
  ZeroState zero_state = ZeroState::kSharded;  ///< ZeRO's resume state: sharded (one moments file per rank) |
                                               ///< consolidated (rank 0 gathers all into the state file); both
                                               ///< resume at any world size
  LossOptions loss;                  ///< train.loss
  /// fp32 | bf16: bf16 runs the LLM towers' training forward passes (and so their backward) under
  /// bfloat16 autocast; parameters, gradients and optimizer state stay float32 (llm/precision.h).
  Precision precision = Precision::kFp32;
};

/// `eval:` -- the evaluation protocol.
struct EvalOptions {
  Protocol protocol = Protocol::kFull;  ///< full | sampled | generative (LC-Rec: beam search over item codes)
  int64_t num_negatives = 100;       ///< sampled: negatives per user (not in the user's history)
  std::vector<int64_t> ks = {1, 5, 10, 20, 50, 200};  ///< cut-offs for hr@k / ndcg@k
  HistoryMask history_mask = HistoryMask::kFull;  ///< full (HLLM) | window (GR: last L) | none
  int64_t batch_size = 512;          ///< users per forward pass
  int64_t seed = 7;                  ///< sampled negatives are a function of (seed, user)
  int64_t max_users = 0;             ///< evaluate only the first N users (0 = all)
  // generative only (LC-Rec, systems.md §3.4)
  int64_t num_beams = 20;            ///< beams kept = ranked items per prompt
  GenerationConstraint constraint = GenerationConstraint::kTrie;  ///< trie (only item codes) | whitelist (LC-Rec's per-level token sets)
  bool filter_items = false;         ///< whitelist: beams that are no item sink to the end (upstream --filter_items)
  int64_t generation_batch = 8;      ///< prompts per beam search
};

DataOptions read_data_options(ConfigNode node);
LossOptions read_loss_options(ConfigNode node);
TrainOptions read_train_options(ConfigNode node);
EvalOptions read_eval_options(ConfigNode node);

}  // namespace seqrec::config
