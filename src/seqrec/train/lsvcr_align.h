// LSVCR stage 1, personalized preference alignment (systems.md §4.2): a decoder LLM with LoRA reads a
// prompt listing both histories and is trained to produce the response (the next video's title, or
// a comment for the current video); the SR model (RecCom without ID embeddings, on sorted random
// positions) is aligned with the LLM's user representation:
//   loss = L_LM + rec_weight * L_rec + contrast_weight * L_contrast,
//   L_rec      = InfoNCE(task SR user vector, target text vector), in-batch negatives;
//   L_contrast = lsvcr_alignment_contrast_loss(task SR vector, other-behaviour SR vector, LLM vector),
// the LLM vector being contrast_adapter(hidden state of the last prompt token). The video task's
// other-behaviour vector is the comment user vector with the newest watched video as query; the
// comment task's is the video user vector. Terms are averaged over the two tasks' batches.
//
// Data parallel (`seqrec launch`): every rank takes train.batch_size samples of each task per step,
// the in-batch negatives of L_rec and L_contrast are all-gathered across ranks (as upstream does
// across GPUs), and each rank's terms are scaled so that the mean over ranks, which the gradient
// reducer takes, is the loss of the whole step's batch in one process: the row terms are means over
// the step's rows on all ranks, L_LM the mean over all ranks' response tokens. The random draws of
// a sample (its response comment, its random positions) come from its own seed, so a step split
// over ranks draws exactly what one process with the whole batch draws.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "seqrec/common/random.h"
#include "seqrec/config/options.h"
#include "seqrec/data/lsvcr_data.h"
#include "seqrec/models/lsvcr.h"
#include "seqrec/nn/lora.h"

namespace seqrec::config {
class ConfigNode;
}
namespace seqrec::dist {
class ProcessGroup;
}
namespace seqrec::llm {
class DecoderLmImpl;
class Tokenizer;
}

namespace seqrec::train {

/// The `lsvcr.align:` section.
struct LsvcrAlignOptions {
  std::string llm;                  ///< Hugging Face decoder folder (config.json, weights, tokenizer)
  nn::LoraOptions lora{8, 32, 0.1, {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}};
  int64_t prompt_history = 5;       ///< newest events of each history listed in the prompt
  int64_t max_prompt_tokens = 384;  ///< prompt tokens kept (the newest part; BOS first)
  int64_t max_response_tokens = 32; ///< response tokens kept (EOS last)
  double rec_weight = 1.0;          ///< weight of L_rec
  double contrast_weight = 0.5;     ///< weight of L_contrast
  int64_t max_steps = 0;            ///< stop after this many steps in all (0 = train.epochs full epochs)
  std::string data_dir;             ///< the prepared store's folder (its items.tsv texts; set from data.dir)
};

/// Reads `lsvcr.align` (llm required; data_dir is left to the caller).
LsvcrAlignOptions read_lsvcr_align_options(config::ConfigNode node);

/// The texts of the prompts: video titles [V+1] and comment texts [C+1] (index 0 empty).
struct LsvcrTexts {
  std::vector<std::string> video_titles;
  std::vector<std::string> comment_texts;
};

/// Reads <data>/videos/items.tsv (title) and <data>/comments/items.tsv (text).
LsvcrTexts load_lsvcr_texts(const std::string& data_dir);

/// The prompt and response of a sample. Video task (positive_comments empty): the response is the
/// target video's title; comment task: `comment` (one of the positives) is the response.
struct LsvcrPrompt {
  std::string prompt;
  std::string response;
};
LsvcrPrompt lsvcr_prompt(const data::LsvcrStore& store, const LsvcrTexts& texts, const data::LsvcrSample& sample,
                         int64_t comment, int64_t prompt_history);

/// Sorted random positions (the alignment stage's augmentation): writes an increasing draw of
/// `length` of 0..max_position-1 to out[0..length). Requires length <= max_position.
void random_positions_row(int64_t max_position, Rng& rng, int64_t* out, int64_t length);

/// The stage-1 model around the LLM: the LoRA-adapted LLM and the contrast adapter (LLM width -> D).
class LsvcrAlignerImpl : public torch::nn::Module {
 public:
  /// Wraps `llm` (LoRA applied by the caller) and adds contrast_adapter [D_llm -> sr_dim].
  LsvcrAlignerImpl(std::shared_ptr<llm::DecoderLmImpl> llm, int64_t sr_dim);
  /// Token ids [B, T] (right-padded, valid [B, T]), labels [B, T] (-100 = not scored), user_index [B]
  /// (the last prompt token) -> {LM loss, LLM user vectors [B, sr_dim]}.
  std::pair<torch::Tensor, torch::Tensor> forward(const torch::Tensor& ids, const torch::Tensor& valid,
                                                  const torch::Tensor& labels, const torch::Tensor& user_index);
  std::shared_ptr<llm::DecoderLmImpl> llm;
  torch::nn::Linear contrast_adapter{nullptr};
};
TORCH_MODULE(LsvcrAligner);

/// The loss terms of one alignment step.
struct LsvcrAlignTerms {
  torch::Tensor lm, rec, contrast, total;
  int64_t tokens = 0;  ///< LLM tokens of the step (prompts and responses)
};

/// A sample of a step and the seed of its random draws (the response comment of a comment sample,
/// then the random positions of its video and comment histories).
struct LsvcrAlignSample {
  const data::LsvcrSample* sample = nullptr;
  uint64_t seed = 0;
};

/// One step on a batch of video samples and one of comment samples (either may be empty). With a
/// group of W > 1 ranks, each rank passes its part of the step (every rank must have samples of a
/// task that any rank has): the negatives are gathered across the ranks and the returned terms are
/// this rank's share, scaled so that their mean over ranks is the one-process loss of all parts
/// together (so is its gradient after the reducer's mean). `tokens` counts this rank's tokens.
LsvcrAlignTerms lsvcr_align_step(models::LsvcrImpl& sr, LsvcrAlignerImpl& aligner, const llm::Tokenizer& tokenizer,
                                 const data::LsvcrStore& store, const LsvcrTexts& texts,
                                 const std::vector<LsvcrAlignSample>& video_samples,
                                 const std::vector<LsvcrAlignSample>& comment_samples,
                                 const LsvcrAlignOptions& options,
                                 const std::shared_ptr<dist::ProcessGroup>& group = nullptr);

/// Runs stage 1 over the training samples for train.epochs (AdamW, train.lr, constant), logging
/// tokens/s, and writes <out_dir>/sr_model.safetensors (RecCom's tensors under their stage-2 names:
/// stage 2 loads them with train.init_from), contrast_adapter.safetensors and lora.safetensors.
/// Returns the tokens per second (LLM tokens over the whole step's time, all ranks together).
/// With a group of W > 1 ranks: rank 0's initial weights are broadcast, each step's W x batch_size
/// samples per task are split over the ranks (the last step of an epoch filled from the start of
/// its order, so that every rank has samples of both tasks), gradients are averaged by
/// dist::GradientReducer, and rank 0 writes the files.
double fit_lsvcr_align(models::LsvcrImpl& sr, const data::LsvcrStore& store, const data::LsvcrSplits& splits,
                       const config::TrainOptions& train, const LsvcrAlignOptions& options,
                       const std::map<std::string, std::string>& metadata,
                       const std::shared_ptr<dist::ProcessGroup>& group = nullptr);

}  // namespace seqrec::train
