// Constrained beam search over item codes (LC-Rec inference, systems.md §3.4): logits constraints
// from a PrefixTrie (only real codes) or LC-Rec's per-level whitelist, and ItemGenerator, which runs
// llm::beam_search for a batch of prompts and maps each returned code back to its item.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <vector>

#include "seqrec/llm/beam_search.h"
#include "seqrec/llm/decoder_lm.h"
#include "seqrec/llm/generation.h"
#include "seqrec/semantic_id/trie.h"

namespace seqrec::semantic_id {

/// Allows after each prefix exactly the tokens the trie allows (code tokens, EOS after a whole code).
class PrefixTrieConstraint : public llm::LogitsConstraint {
 public:
  /// Keeps a reference to `trie`, which must outlive the constraint.
  explicit PrefixTrieConstraint(const PrefixTrie& trie) : trie_(trie) {}
  void apply(int64_t step, const std::vector<std::vector<int64_t>>& prefixes, torch::Tensor& logprobs) override;

 private:
  const PrefixTrie& trie_;
};

/// LC-Rec's constraint: at step i, the tokens of level i of any code (then EOS), whatever the prefix.
class LevelWhitelistConstraint : public llm::LogitsConstraint {
 public:
  /// Keeps a reference to `whitelist`, which must outlive the constraint.
  explicit LevelWhitelistConstraint(const LevelWhitelist& whitelist) : whitelist_(whitelist) {}
  void apply(int64_t step, const std::vector<std::vector<int64_t>>& prefixes, torch::Tensor& logprobs) override;

 private:
  const LevelWhitelist& whitelist_;
};

/// Which constraint decodes the codes.
enum class CodeConstraint {
  kTrie,            ///< only codes of items (every beam is an item)
  kLevelWhitelist,  ///< LC-Rec's test.py: per-level token sets (beams may be no item)
};

/// How to generate items.
struct ItemGenerationOptions {
  int64_t num_beams = 20;                           ///< beams kept and ranked beams returned (LC-Rec: 20)
  CodeConstraint constraint = CodeConstraint::kTrie;
  bool filter_non_items = false;                    ///< LC-Rec --filter_items: non-items get score -1000 (sink to the end)
};

/// The ranked beams of one prompt.
struct RankedItems {
  /// Item per beam, best first: the smallest item id with the beam's code (PrefixTrie::item_of), or
  /// kNotAnItem. Compare with trie.canonical_item(target) so that colliding items count as LC-Rec
  /// counts them (code equality).
  std::vector<int64_t> items;
  std::vector<double> scores;               ///< HF sequences_scores: sum of log-probs / (code length + 1)
  std::vector<std::vector<int64_t>> codes;  ///< generated code tokens per beam (EOS excluded)
};

/// Generates ranked items for batches of prompts under one trie: HF generate(num_beams=K,
/// num_return_sequences=K, early_stopping=True, length_penalty=1, do_sample=False) with
/// max_new_tokens = the longest code + 1 (for EOS). With either constraint every hypothesis ends
/// with EOS at the same step (codes of one length), so the length normalisation divides all of a
/// prompt's scores by the same number and does not change the ranking.
class ItemGenerator {
 public:
  /// Keeps a reference to `trie`, which must outlive the generator. Throws std::invalid_argument
  /// for num_beams < 1.
  ItemGenerator(const PrefixTrie& trie, ItemGenerationOptions options);
  /// Not copyable: the constraints point into this object.
  ItemGenerator(const ItemGenerator&) = delete;
  ItemGenerator& operator=(const ItemGenerator&) = delete;
  /// Ranked beams per prompt (token ids, BOS included if wanted; lengths may differ).
  std::vector<RankedItems> generate(llm::DecoderLm& lm, const std::vector<std::vector<int64_t>>& prompts);
  /// The beam-search options used (for reports).
  const llm::BeamSearchOptions& beam_options() const { return beam_; }

 private:
  RankedItems rank(const std::vector<llm::Hypothesis>& hypotheses) const;

  const PrefixTrie& trie_;
  ItemGenerationOptions options_;
  llm::BeamSearchOptions beam_;
  LevelWhitelist whitelist_;
  PrefixTrieConstraint trie_constraint_;
  LevelWhitelistConstraint whitelist_constraint_;
};

}  // namespace seqrec::semantic_id
