// Readers and validation of the run-level options (data:, train:, eval:).
#include "seqrec/config/options.h"

#include <algorithm>
#include <regex>

#include "seqrec/common/error.h"
#include "seqrec/config/config_node.h"
#include "seqrec/config/validate.h"

namespace seqrec::config {
namespace {

// One spelling table per enum: the readers parse with it, name() spells with it.
const Spellings<LossName> kLossNames = {{LossName::kBce, "bce"},
                                        {LossName::kSampledSoftmax, "sampled_softmax"},
                                        {LossName::kSoftmax, "softmax"},
                                        {LossName::kNce, "nce"}};
const Spellings<Schedule> kSchedules = {{Schedule::kConstant, "constant"}, {Schedule::kCosine, "cosine"}};
const Spellings<Protocol> kProtocols = {
    {Protocol::kFull, "full"}, {Protocol::kSampled, "sampled"}, {Protocol::kGenerative, "generative"}};
const Spellings<HistoryMask> kHistoryMasks = {
    {HistoryMask::kFull, "full"}, {HistoryMask::kWindow, "window"}, {HistoryMask::kNone, "none"}};
const Spellings<Precision> kPrecisions = {{Precision::kFp32, "fp32"}, {Precision::kBf16, "bf16"}};
const Spellings<ZeroState> kZeroStates = {{ZeroState::kSharded, "sharded"}, {ZeroState::kConsolidated, "consolidated"}};
const Spellings<GenerationConstraint> kConstraints = {{GenerationConstraint::kTrie, "trie"},
                                                      {GenerationConstraint::kWhitelist, "whitelist"}};

}  // namespace

std::string name(LossName value) { return spelling(value, kLossNames); }
std::string name(Schedule value) { return spelling(value, kSchedules); }
std::string name(Protocol value) { return spelling(value, kProtocols); }
std::string name(HistoryMask value) { return spelling(value, kHistoryMasks); }
std::string name(Precision value) { return spelling(value, kPrecisions); }
std::string name(ZeroState value) { return spelling(value, kZeroStates); }
std::string name(GenerationConstraint value) { return spelling(value, kConstraints); }

Precision read_precision(ConfigNode node, Precision fallback) {
  return parse_one_of(node.get<std::string>("precision", name(fallback)), kPrecisions, key(node, "precision"));
}

ZeroState read_zero_state(ConfigNode node, ZeroState fallback) {
  return parse_one_of(node.get<std::string>("zero_state", name(fallback)), kZeroStates, key(node, "zero_state"));
}

DataOptions read_data_options(ConfigNode node) {
  DataOptions o;
  o.dir = node.get<std::string>("dir", o.dir);
  o.max_seq_len = node.get<int64_t>("max_seq_len", o.max_seq_len);
  o.chunk_long_sequences = node.get<bool>("chunk_long_sequences", o.chunk_long_sequences);
  o.prefetch_batches = node.get<int64_t>("prefetch_batches", o.prefetch_batches);
  require_positive(o.max_seq_len, key(node, "max_seq_len"));
  // Position tables and attention rows are sized by L: beyond 2^20 the first allocation fails.
  if (o.max_seq_len > (int64_t{1} << 20))
    throw ConfigError(key(node, "max_seq_len"), "must be at most 1048576 (2^20), got " + std::to_string(o.max_seq_len));
  require_positive(o.prefetch_batches, key(node, "prefetch_batches"));
  o.cold_item_share = node.get<double>("cold_item_share", o.cold_item_share);
  o.cold_item_seed = node.get<int64_t>("cold_item_seed", o.cold_item_seed);
  if (!(o.cold_item_share >= 0 && o.cold_item_share < 1))
    throw ConfigError(key(node, "cold_item_share"), "must be in [0, 1)");
  o.holdout = node.get<int64_t>("holdout", o.holdout);
  if (o.holdout != 1 && o.holdout != 2)
    throw ConfigError(key(node, "holdout"), "must be 2 (valid and test held out) or 1 (test only), not " +
                                                std::to_string(o.holdout));
  o.item_start_position = node.get<int64_t>("item_start_position", o.item_start_position);
  o.item_end_position = node.get<int64_t>("item_end_position", o.item_end_position);
  if (o.item_end_position != 0 && (o.item_start_position < 0) == (o.item_end_position < 0) &&
      o.item_end_position <= o.item_start_position)
    throw ConfigError(key(node, "item_end_position"), "must come after item_start_position (" +
                                                          std::to_string(o.item_start_position) + "), got " +
                                                          std::to_string(o.item_end_position));
  o.train_feat_max_length = node.get<int64_t>("train_feat_max_length", o.train_feat_max_length);
  if (o.train_feat_max_length != 0 && o.train_feat_max_length < o.max_seq_len + 1)  // PerSRec asserts the same
    throw ConfigError(key(node, "train_feat_max_length"),
                      "must be 0 (off) or at least max_seq_len + 1 = " + std::to_string(o.max_seq_len + 1) +
                          " (one window and its target), got " + std::to_string(o.train_feat_max_length));
  return o;
}

LossOptions read_loss_options(ConfigNode node) {
  LossOptions o;
  o.name = parse_one_of(node.get<std::string>("name", name(o.name)), kLossNames, key(node, "name"));
  o.num_negatives = node.get<int64_t>("num_negatives", o.name == LossName::kSampledSoftmax ? 128 : 1);
  o.temperature = node.get<double>("temperature", o.name == LossName::kBce ? 1.0 : 0.05);
  o.exclude_history = node.get<bool>("exclude_history", o.name == LossName::kBce || o.name == LossName::kNce);
  if (o.name == LossName::kNce) {
    const std::string scale = node.get<std::string>("scale", "learnable");
    o.learnable_scale = scale == "learnable";
    if (!o.learnable_scale) {
      try {
        size_t used = 0;
        o.scale = std::stod(scale, &used);
        if (used != scale.size()) throw std::invalid_argument(scale);
      } catch (const std::exception&) {
        throw ConfigError(key(node, "scale"), "'" + scale + "' is neither 'learnable' nor a number");
      }
      if (!(o.scale > 0)) throw ConfigError(key(node, "scale"), "must be > 0");
    }
    o.max_scale = node.get<double>("max_scale", o.max_scale);
    if (!(o.max_scale >= 1)) throw ConfigError(key(node, "max_scale"), "must be >= 1");
    const std::string pool = node.get<std::string>("pool", "shared");
    require_one_of(pool, {"shared", "per_position"}, key(node, "pool"));
    o.shared_pool = pool == "shared";
    o.dedup_threshold = node.get<double>("dedup_threshold", o.dedup_threshold);
  }
  if (o.name != LossName::kSoftmax) require_positive(o.num_negatives, key(node, "num_negatives"));
  if (o.name == LossName::kBce && o.num_negatives != 1)
    throw ConfigError(key(node, "num_negatives"), "bce uses exactly one negative per position");
  if (!(o.temperature > 0)) throw ConfigError(key(node, "temperature"), "must be > 0");
  return o;
}

TrainOptions read_train_options(ConfigNode node) {
  TrainOptions o;
  o.out_dir = node.get<std::string>("out_dir", o.out_dir);
  o.epochs = node.get<int64_t>("epochs", o.epochs);
  o.batch_size = node.get<int64_t>("batch_size", o.batch_size);
  o.lr = node.get<double>("lr", o.lr);
  o.beta1 = node.get<double>("beta1", o.beta1);
  o.beta2 = node.get<double>("beta2", o.beta2);
  o.eps = node.get<double>("eps", o.eps);
  o.weight_decay = node.get<double>("weight_decay", o.weight_decay);
  const std::string schedule = node.get<std::string>("schedule", name(o.schedule));
  o.warmup_ratio = node.get<double>("warmup_ratio", o.warmup_ratio);
  o.warmup_steps = node.get<int64_t>("warmup_steps", o.warmup_steps);
  o.warmup_min_ratio = node.get<double>("warmup_min_ratio", o.warmup_min_ratio);
  o.min_lr_ratio = node.get<double>("min_lr_ratio", o.min_lr_ratio);
  o.clip_norm = node.get<double>("clip_norm", o.clip_norm);
  o.seed = node.get<int64_t>("seed", o.seed);
  o.eval_every = node.get<int64_t>("eval_every", o.eval_every);
  o.metric = node.get<std::string>("metric", o.metric);
  o.patience = node.get<int64_t>("patience", o.patience);
  o.log_every = node.get<int64_t>("log_every", o.log_every);
  o.threads = node.get<int64_t>("threads", o.threads);
  o.length_bucketing = node.get<bool>("length_bucketing", o.length_bucketing);
  o.device = node.get<std::string>("device", o.device);
  o.grad_accum_steps = node.get<int64_t>("grad_accum_steps", o.grad_accum_steps);
  o.zero_stage = node.get<int64_t>("zero_stage", o.zero_stage);
  o.zero_prefetch = node.get<bool>("zero_prefetch", o.zero_prefetch);
  o.zero_state = read_zero_state(node, o.zero_state);
  o.loss = read_loss_options(node.child("loss"));
  o.precision = read_precision(node, o.precision);

  require_positive(o.epochs, key(node, "epochs"));
  require_positive(o.batch_size, key(node, "batch_size"));
  require_positive(o.eval_every, key(node, "eval_every"));
  require_positive(o.log_every, key(node, "log_every"));
  require_positive(o.grad_accum_steps, key(node, "grad_accum_steps"));
  if (o.zero_stage < 0 || o.zero_stage > 3) throw ConfigError(key(node, "zero_stage"), "must be 0, 1, 2 or 3");
  o.schedule = parse_one_of(schedule, kSchedules, key(node, "schedule"));
  if (!(o.lr > 0)) throw ConfigError(key(node, "lr"), "must be > 0");
  if (!(o.beta1 >= 0 && o.beta1 < 1)) throw ConfigError(key(node, "beta1"), "must be in [0, 1)");
  if (!(o.beta2 >= 0 && o.beta2 < 1)) throw ConfigError(key(node, "beta2"), "must be in [0, 1)");
  if (o.weight_decay < 0) throw ConfigError(key(node, "weight_decay"), "must be >= 0");
  if (o.warmup_ratio < 0 || o.warmup_ratio >= 1)
    throw ConfigError(key(node, "warmup_ratio"), "must be in [0, 1)");
  if (!(o.warmup_min_ratio >= 0 && o.warmup_min_ratio <= 1))
    throw ConfigError(key(node, "warmup_min_ratio"), "must be in [0, 1]");
  if (o.clip_norm < 0) throw ConfigError(key(node, "clip_norm"), "must be >= 0 (0 = off)");
  if (o.patience < 0) throw ConfigError(key(node, "patience"), "must be >= 0 (0 = off)");
  if (o.threads < 0) throw ConfigError(key(node, "threads"), "must be >= 0 (0 = all cores)");
  if (!std::regex_match(o.device, std::regex("cpu|cuda(:[0-9]+)?")))
    throw ConfigError(key(node, "device"), "'" + o.device + "' is not one of: cpu, cuda, cuda:N");
  if (o.metric != "mrr" && o.metric.rfind("hr@", 0) != 0 && o.metric.rfind("ndcg@", 0) != 0)
    throw ConfigError(key(node, "metric"), "expected hr@K, ndcg@K or mrr, got '" + o.metric + "'");
  return o;
}

EvalOptions read_eval_options(ConfigNode node) {
  EvalOptions o;
  o.protocol = parse_one_of(node.get<std::string>("protocol", name(o.protocol)), kProtocols, key(node, "protocol"));
  if (o.protocol == Protocol::kGenerative) o.ks = {1, 5, 10};  // LC-Rec's hit@1,5,10, ndcg@5,10 (ndcg@1 = hit@1)
  o.num_negatives = node.get<int64_t>("num_negatives", o.num_negatives);
  o.ks = node.get<std::vector<int64_t>>("ks", o.ks);
  o.history_mask = parse_one_of(node.get<std::string>("history_mask", name(o.history_mask)), kHistoryMasks,
                                key(node, "history_mask"));
  o.batch_size = node.get<int64_t>("batch_size", o.batch_size);
  o.seed = node.get<int64_t>("seed", o.seed);
  o.max_users = node.get<int64_t>("max_users", o.max_users);
  require_positive(o.num_negatives, key(node, "num_negatives"));
  require_positive(o.batch_size, key(node, "batch_size"));
  if (o.ks.empty()) throw ConfigError(key(node, "ks"), "needs at least one cut-off");
  for (size_t i = 0; i < o.ks.size(); ++i)
    if (o.ks[i] < 1)
      throw ConfigError(key(node, "ks") + "[" + std::to_string(i) + "]",
                        "k=" + std::to_string(o.ks[i]) + " must be >= 1");
  if (o.max_users < 0) throw ConfigError(key(node, "max_users"), "must be >= 0");
  o.num_beams = node.get<int64_t>("num_beams", o.num_beams);
  o.constraint =
      parse_one_of(node.get<std::string>("constraint", name(o.constraint)), kConstraints, key(node, "constraint"));
  o.filter_items = node.get<bool>("filter_items", o.filter_items);
  o.generation_batch = node.get<int64_t>("generation_batch", o.generation_batch);
  require_positive(o.num_beams, key(node, "num_beams"));
  require_positive(o.generation_batch, key(node, "generation_batch"));
  for (size_t i = 0; i < o.ks.size(); ++i)
    if (o.protocol == Protocol::kGenerative && o.ks[i] > o.num_beams)
      throw ConfigError(key(node, "ks") + "[" + std::to_string(i) + "]",
                        "k=" + std::to_string(o.ks[i]) + " is more than the " + std::to_string(o.num_beams) +
                            " beams generated (eval.num_beams)");
  return o;
}

}  // namespace seqrec::config
