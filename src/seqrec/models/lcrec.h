// LC-Rec as a recommender (systems.md §3.4): a decoder fine-tuned by `seqrec finetune` on the
// `seqrec lcrec-data` tasks, the item codes of its index.json as token ids of that decoder's
// tokenizer, and constrained beam search that turns a prompt into ranked items. Also the
// `generative` protocol over a split (HR/NDCG over the ranked beams, per test template and averaged
// over them, as upstream's test.py with --test_prompt_ids).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "seqrec/eval/metrics.h"
#include "seqrec/llm/decoder_lm.h"
#include "seqrec/llm/tokenizer.h"
#include "seqrec/semantic_id/constrained_beam.h"
#include "seqrec/semantic_id/item_index.h"
#include "seqrec/semantic_id/trie.h"

namespace seqrec::data {
struct LcRecExample;
}

namespace seqrec::models {

/// How LC-Rec generates (the generation keys of `eval:`: num_beams, constraint, filter_items,
/// generation_batch).
struct LcRecOptions {
  int64_t num_beams = 20;                                          ///< beams kept = items returned
  semantic_id::CodeConstraint constraint = semantic_id::CodeConstraint::kTrie;  ///< trie | whitelist
  bool filter_non_items = false;                                   ///< upstream --filter_items
  int64_t batch_size = 8;                                          ///< prompts per beam search
};

/// A fine-tuned decoder with its item codes.
class LcRec {
 public:
  /// Loads the Hugging Face folder `model_dir` (weights and the tokenizer with the code tokens) and
  /// maps every item's code tokens to ids. Throws CheckpointError naming the folder and the first
  /// token the tokenizer does not know (a model tuned with another index).
  LcRec(const std::string& model_dir, const semantic_id::ItemIndex& index, LcRecOptions options);
  LcRec(const LcRec&) = delete;
  LcRec& operator=(const LcRec&) = delete;

  /// Ranked items for each prompt (Alpaca-wrapped text ending with "### Response:"), in batches of
  /// options.batch_size. Item ids are dense ids (1..V), kNotAnItem for a beam that is no item.
  std::vector<semantic_id::RankedItems> generate(const std::vector<std::string>& prompts);
  /// The trie over the item codes (canonical_item maps colliding items to one id).
  const semantic_id::PrefixTrie& trie() const { return *trie_; }
  const LcRecOptions& options() const { return options_; }
  /// V: the items of the index the model was loaded with.
  int64_t num_items() const { return static_cast<int64_t>(codes_.size()) - 1; }
  /// The code token ids of item `item` (1..V).
  const std::vector<int64_t>& code_ids(int64_t item) const { return codes_[static_cast<size_t>(item)]; }

 private:
  LcRecOptions options_;
  llm::DecoderLm lm_{nullptr};
  std::unique_ptr<llm::Tokenizer> tokenizer_;
  std::vector<std::vector<int64_t>> codes_;  // [V + 1], index 0 empty
  std::unique_ptr<semantic_id::PrefixTrie> trie_;
  std::unique_ptr<semantic_id::ItemGenerator> generator_;
};

/// What `evaluate_generative` measured.
struct GenerativeResult {
  eval::MetricSet metrics;                     ///< averaged over templates; with several, also <m>_min / <m>_max
  std::vector<eval::MetricSet> per_template;   ///< one per template id, in order of first appearance
  std::vector<int64_t> template_ids;           ///< the template of each per_template entry
  int64_t queries = 0;                         ///< prompts scored (all templates)
  double seconds = 0;
};

/// Scores `examples` (each with its target_item): generation, then HR/NDCG over the ranked beams
/// against the target (compared by code: canonical items), grouped by template and averaged over
/// templates as upstream's test.py. `progress_label` names the progress line ("" = none).
GenerativeResult evaluate_generative(LcRec& model, const std::vector<data::LcRecExample>& examples,
                                     const std::vector<int64_t>& ks, const std::string& progress_label);

}  // namespace seqrec::models
