// Batched beam search with Hugging Face's BeamSearchScorer semantics: B prompts x num_beams live
// hypotheses, one prefill per prompt whose KV cache is reordered by beam each step (never re-run),
// an optional LogitsConstraint, early stopping as HF's `early_stopping`. The search knows nothing
// about tries; semantic_id/constrained_beam.h puts item codes on top.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <vector>

#include "seqrec/llm/decoder_lm.h"
#include "seqrec/llm/generation.h"

namespace seqrec::llm {

/// When the search of one prompt stops (Hugging Face `early_stopping`).
enum class EarlyStopping {
  kFirstK,     ///< `True`: as soon as num_beams hypotheses are finished (LC-Rec's test.py)
  kHeuristic,  ///< `False` (HF default): once the best candidate, scored at the current length, is below the worst finished
};

/// How to search.
struct BeamSearchOptions {
  int64_t num_beams = 4;               ///< K: live hypotheses kept per prompt
  int64_t num_return = 0;              ///< hypotheses returned per prompt (<= K; 0 = K)
  int64_t max_new_tokens = 64;         ///< tokens generated after the prompt, EOS included
  double length_penalty = 1.0;         ///< finished score = sum logprob / generated_len^penalty (EOS counted)
  EarlyStopping early_stopping = EarlyStopping::kHeuristic;
  int64_t eos_id = -1;                 ///< stop token (-1 = none)
};

/// The model side of beam search: next-token log-probabilities of the live rows. Row n of a step
/// continues row parents[n] of the step before with tokens[n].
class NextTokenScorer {
 public:
  virtual ~NextTokenScorer() = default;
  /// Runs the prompts (one row each); returns log-probabilities of the first new token [B, V] float.
  virtual torch::Tensor start(const std::vector<std::vector<int64_t>>& prompts) = 0;
  /// Extends the rows; returns log-probabilities of their next token [N, V] float.
  virtual torch::Tensor next(const std::vector<int64_t>& parents, const std::vector<int64_t>& tokens) = 0;
};

/// NextTokenScorer over a DecoderLm: the prompts are left-padded into one prefill batch (padding
/// keys masked, RoPE positions counted from each prompt's first real token, as HF does with an
/// attention mask), and each step reorders the layers' KV caches by parent row and runs one token
/// per row. The caller holds torch::NoGradGuard and puts the model in eval mode.
class DecoderLmScorer : public NextTokenScorer {
 public:
  /// Keeps a reference to `lm` (a module holder).
  explicit DecoderLmScorer(DecoderLm lm);
  torch::Tensor start(const std::vector<std::vector<int64_t>>& prompts) override;
  torch::Tensor next(const std::vector<int64_t>& parents, const std::vector<int64_t>& tokens) override;

 private:
  torch::Tensor logprobs_of_last(const DecoderInput& input);  // [N, V] float

  DecoderLm lm_;
  DecoderCache cache_;
  torch::Tensor prompt_valid_;      // [B, W] bool (CPU): false on left padding
  bool padded_ = false;              // some prompt is shorter than W
  std::vector<int64_t> prompt_len_;  // real tokens per prompt
  std::vector<int64_t> row_prompt_;  // prompt of each live row
  int64_t step_ = 0;                 // tokens generated so far per row
};

/// Beam search over several prompts at once. Per prompt: each step takes the top 2K of (live row,
/// token) by running score; an EOS among the top K closes a hypothesis (EOS ranked lower is
/// dropped), other tokens fill the K live rows in score order. A prompt is done per
/// `early_stopping`; at max_new_tokens its live rows join the finished ones. Returns per prompt up
/// to num_return hypotheses, best first (fewer only when fewer than K sequences have finite score:
/// HF pads those slots with copies scored -1e9, we leave them out).
std::vector<std::vector<Hypothesis>> beam_search(NextTokenScorer& scorer, const std::vector<std::vector<int64_t>>& prompts,
                                                 const BeamSearchOptions& options, LogitsConstraint* constraint = nullptr);

/// beam_search with a DecoderLmScorer (no gradients; puts the model in eval mode). Throws
/// RequestError for an empty prompt.
std::vector<std::vector<Hypothesis>> beam_search(DecoderLm& lm, const std::vector<std::vector<int64_t>>& prompts,
                                                 const BeamSearchOptions& options, LogitsConstraint* constraint = nullptr);

}  // namespace seqrec::llm
