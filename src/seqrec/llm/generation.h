// Generation from a DecoderLm: greedy, temperature / top-p sampling with a seed, and beam search
// with a pluggable logits constraint (the shape later used for prefix-trie decoding of item codes).
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "seqrec/llm/decoder_lm.h"

namespace seqrec::llm {

/// How to decode.
struct GenerationOptions {
  std::string strategy = "greedy";   ///< greedy | sample | beam
  int64_t max_new_tokens = 64;       ///< tokens generated after the prompt
  double temperature = 1.0;          ///< sample: logits / temperature
  double top_p = 1.0;                ///< sample: nucleus mass kept
  uint64_t seed = 0;                 ///< sample: generator seed
  int64_t num_beams = 4;             ///< beam: beams kept (and hypotheses returned)
  double length_penalty = 1.0;       ///< beam: score = sum logprob / length^penalty (HF convention)
  int64_t eos_id = -1;               ///< stop token (-1 = none)
};

/// Restricts the next token of each live hypothesis: set disallowed entries of `logprobs` [N, V]
/// to -inf. `prefixes[n]` holds the tokens generated so far by hypothesis n (prompt excluded).
class LogitsConstraint {
 public:
  virtual ~LogitsConstraint() = default;
  virtual void apply(int64_t step, const std::vector<std::vector<int64_t>>& prefixes, torch::Tensor& logprobs) = 0;
};

/// One finished sequence: generated tokens (prompt excluded, EOS excluded) and its score
/// (sum of token log-probabilities; beam: divided by length^length_penalty).
struct Hypothesis {
  std::vector<int64_t> ids;
  double score = 0;
};

/// Generates from `prompt` (token ids, BOS included if wanted). greedy/sample return one
/// hypothesis; beam returns up to num_beams, best first. Deterministic for a seed.
std::vector<Hypothesis> generate(DecoderLm& lm, const std::vector<int64_t>& prompt, const GenerationOptions& options,
                                 LogitsConstraint* constraint = nullptr);

/// Log-probability of each token of `ids` given the tokens before it: [len - 1] values.
std::vector<double> token_logprobs(DecoderLm& lm, const std::vector<int64_t>& ids);

}  // namespace seqrec::llm
