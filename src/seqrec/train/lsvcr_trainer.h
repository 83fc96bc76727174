// LSVCR stage 2, recommendation-oriented fine-tuning (systems.md §4.3): batches of the two tasks,
// the training loop over L_video + L_comment + w * L_id_text, and the evaluation protocol (videos:
// the target among 1 + 99 random videos; comments: up to 100 comments of the current video, several
// positives; recall / ndcg / mrr at k, model selection on ndcg@5).
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "seqrec/common/random.h"
#include "seqrec/config/options.h"
#include "seqrec/data/lsvcr_data.h"
#include "seqrec/eval/metrics.h"
#include "seqrec/models/lsvcr.h"

namespace seqrec::config {
class ConfigNode;
}

namespace seqrec::train {

/// The "format" metadata of LSVCR's checkpoints (best/last.safetensors; `seqrec eval` takes them).
constexpr const char* kLsvcrCheckpointFormat = "seqrec-lsvcr-checkpoint-1";

/// lsvcr.stage: what `seqrec train` runs.
enum class LsvcrStage { kFinetune, kAlign, kRandom, kMostPop };
/// lsvcr.selection: whose ndcg@5 selects the model.
enum class LsvcrSelection { kMean, kVideo, kComment };
/// The config spelling ("most_pop", "comment", ...), as read_lsvcr_run_options parses it.
std::string name(LsvcrStage value);
std::string name(LsvcrSelection value);

/// The `lsvcr:` section: LSVCR's data files, task and evaluation settings.
struct LsvcrRunOptions {
  LsvcrStage stage = LsvcrStage::kFinetune;  ///< finetune (stage 2) | align (stage 1) | random | most_pop (reference rows)
  std::string video_title_emb;          ///< [V, D_text] title embeddings (embed-items --data <data.dir>/videos --fields title)
  std::string comment_emb;              ///< [C, D_text] comment embeddings (embed-items --data <data.dir>/comments --fields text)
  int64_t neg_comment_num = 19;         ///< training negatives per comment sample, from the same video's section
  double id_text_loss_weight = 0.1;     ///< weight of the ID-text contrastive loss (0 = off)
  int64_t id_text_negatives = 99;       ///< in-batch negatives of the ID-text loss (videos per step: 1 + this)
  int64_t eval_video_candidates = 100;  ///< video eval: the target and this many - 1 random videos
  int64_t eval_comment_candidates = 100;  ///< comment eval: at most this many comments of the video
  std::vector<int64_t> ks = {1, 5, 10}; ///< cut-offs of recall / ndcg / mrr
  LsvcrSelection selection = LsvcrSelection::kMean;  ///< model selection on ndcg@5 of: mean (both tasks) | video | comment
  int64_t eval_seed = 7;                ///< candidates are a function of (eval_seed, sample)
};

/// Reads and validates the `lsvcr:` section.
LsvcrRunOptions read_lsvcr_run_options(config::ConfigNode node);

/// The text tables of a store: reads the two embedding files (rows = dense ids 1..V / 1..C; a zero
/// padding row is prepended). Throws DataError naming the file when its row count does not match.
models::LsvcrTextTables load_lsvcr_text_tables(const data::LsvcrStore& store, const LsvcrRunOptions& options);

/// The LSVCR model of `options` for `store`: the catalogue sizes from the store, the text tables of
/// `run` loaded and their width set; parameters drawn from the current torch seed.
models::Lsvcr build_lsvcr(models::LsvcrOptions options, const data::LsvcrStore& store, const LsvcrRunOptions& run);

/// Model inputs of samples, plus each sample's target video (next video, or the current video).
struct LsvcrSampleBatch {
  models::LsvcrBatch inputs;  ///< histories (the newest max_history events, right-padded)
  torch::Tensor videos;       ///< [B] int64 target / current video
};

/// Builds the batch of `samples` (histories cut to max_history; at least one padding slot each).
LsvcrSampleBatch make_lsvcr_batch(const data::LsvcrStore& store, const std::vector<const data::LsvcrSample*>& samples,
                                  int64_t max_history);

/// Training negatives of a comment sample: n comments of the current video's section that are not
/// positives (without replacement), topped up with random other comments when the section is small.
std::vector<int64_t> sample_comment_negatives(const data::LsvcrStore& store, const data::LsvcrSample& sample,
                                              int64_t n, Rng& rng);

/// The loss terms of one step (each undefined when its batch is empty / its weight 0).
struct LsvcrLossTerms {
  torch::Tensor video;    ///< full softmax over all videos
  torch::Tensor comment;  ///< 1 positive + neg_comment_num negatives
  torch::Tensor id_text;  ///< ID-text contrastive loss (unweighted)
  torch::Tensor total;    ///< video + comment + id_text_loss_weight * id_text
};

/// Computes one step's losses on a batch of video samples and one of comment samples.
LsvcrLossTerms lsvcr_step_loss(models::LsvcrImpl& model, const data::LsvcrStore& store,
                               const std::vector<const data::LsvcrSample*>& video_samples,
                               const std::vector<const data::LsvcrSample*>& comment_samples,
                               const LsvcrRunOptions& options, Rng& rng);

/// Evaluates a split: {"video_recall@k", "video_ndcg@k", "video_mrr@k", "comment_...", "video_samples",
/// "comment_samples"}. Deterministic for options.eval_seed.
eval::MetricSet evaluate_lsvcr(models::LsvcrImpl& model, const data::LsvcrStore& store, const data::LsvcrSplit& split,
                               const LsvcrRunOptions& options, int64_t batch_size);

/// The reference rows of the same protocol: every candidate scored by its training count (most
/// popular: videos by training targets, comments by training positives) or not at all (random);
/// ties are broken by a small random score.
eval::MetricSet evaluate_lsvcr_baseline(const data::LsvcrStore& store, const data::LsvcrSplits& splits,
                                        const data::LsvcrSplit& split, const LsvcrRunOptions& options,
                                        bool most_popular);

/// The model-selection value of a metric set (ndcg@5 per options.selection).
double lsvcr_selection_metric(const eval::MetricSet& metrics, const LsvcrRunOptions& options);

/// What fit_lsvcr did.
struct LsvcrSummary {
  int64_t epochs_run = 0;
  int64_t best_epoch = 0;
  double best_metric = 0;
  double train_seconds = 0;
  eval::MetricSet test;  ///< the best checkpoint on the test split
};

/// Trains stage 2 (AdamW, train.lr / weight_decay / epochs / batch_size / seed / patience /
/// clip_norm). Each step takes batch_size video samples and batch_size comment samples (the shorter
/// list wraps around; an epoch is one pass over the longer). Validates every eval_every epochs,
/// writes <out_dir>/metrics.jsonl, best.safetensors (model weights + `metadata`) and last.safetensors,
/// then tests the best weights.
LsvcrSummary fit_lsvcr(models::LsvcrImpl& model, const data::LsvcrStore& store, const data::LsvcrSplits& splits,
                       const config::TrainOptions& train, const LsvcrRunOptions& options,
                       const std::map<std::string, std::string>& metadata);

}  // namespace seqrec::train
