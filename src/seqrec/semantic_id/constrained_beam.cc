// Code constraints on logits and the item generator.
#include "seqrec/semantic_id/constrained_beam.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace seqrec::semantic_id {
namespace {

// Sets logprobs[n][t] to -inf for every token t outside allowed[n] (HF
// PrefixConstrainedLogitsProcessor: an additive 0 / -inf mask, no renormalisation).
void keep_only(const std::vector<const std::vector<int64_t>*>& allowed, torch::Tensor& logprobs) {
  std::vector<int64_t> rows, cols;
  for (size_t n = 0; n < allowed.size(); ++n)
    for (int64_t t : *allowed[n]) {
      rows.push_back(static_cast<int64_t>(n));
      cols.push_back(t);
    }
  const int64_t vocab = logprobs.size(1);
  TORCH_CHECK(cols.empty() || *std::max_element(cols.begin(), cols.end()) < vocab,
              "a code token id is outside the model's vocabulary of ", vocab, " (were the code tokens added?)");
  const auto device = logprobs.device();
  auto mask = torch::full(logprobs.sizes(), -INFINITY, logprobs.options());                   // [N, V]
  if (!rows.empty())
    mask.index_put_({torch::tensor(rows, torch::kLong).to(device), torch::tensor(cols, torch::kLong).to(device)}, 0.0);
  logprobs.add_(mask);
}

}  // namespace

void PrefixTrieConstraint::apply(int64_t, const std::vector<std::vector<int64_t>>& prefixes, torch::Tensor& logprobs) {
  std::vector<std::vector<int64_t>> allowed;
  allowed.reserve(prefixes.size());
  for (const auto& p : prefixes) allowed.push_back(trie_.allowed(p));
  std::vector<const std::vector<int64_t>*> refs;
  for (const auto& a : allowed) refs.push_back(&a);
  keep_only(refs, logprobs);
}

void LevelWhitelistConstraint::apply(int64_t step, const std::vector<std::vector<int64_t>>& prefixes,
                                     torch::Tensor& logprobs) {
  keep_only(std::vector<const std::vector<int64_t>*>(prefixes.size(), &whitelist_.allowed(step)), logprobs);
}

ItemGenerator::ItemGenerator(const PrefixTrie& trie, ItemGenerationOptions options)
    : trie_(trie), options_(options), whitelist_(trie), trie_constraint_(trie), whitelist_constraint_(whitelist_) {
  if (options_.num_beams < 1)
    throw std::invalid_argument("num_beams must be >= 1, got " + std::to_string(options_.num_beams));
  beam_.num_beams = options_.num_beams;
  beam_.num_return = options_.num_beams;
  beam_.max_new_tokens = trie.max_length() + 1;
  beam_.length_penalty = 1.0;
  beam_.early_stopping = llm::EarlyStopping::kFirstK;
  beam_.eos_id = trie.eos_id();
}

std::vector<RankedItems> ItemGenerator::generate(llm::DecoderLm& lm, const std::vector<std::vector<int64_t>>& prompts) {
  llm::LogitsConstraint* constraint = &trie_constraint_;
  if (options_.constraint == CodeConstraint::kLevelWhitelist) constraint = &whitelist_constraint_;
  std::vector<RankedItems> out;
  for (const auto& hyps : llm::beam_search(lm, prompts, beam_, constraint)) out.push_back(rank(hyps));
  return out;
}

RankedItems ItemGenerator::rank(const std::vector<llm::Hypothesis>& hypotheses) const {
  std::vector<size_t> order(hypotheses.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  // --filter_items: non-items score -1000 and a stable sort puts them last, in beam order.
  if (options_.filter_non_items)
    std::stable_partition(order.begin(), order.end(),
                          [&](size_t i) { return trie_.item_of(hypotheses[i].ids) != kNotAnItem; });
  RankedItems r;
  for (size_t i : order) {
    const int64_t item = trie_.item_of(hypotheses[i].ids);
    r.items.push_back(item);
    r.scores.push_back(options_.filter_non_items && item == kNotAnItem ? -1000.0 : hypotheses[i].score);
    r.codes.push_back(hypotheses[i].ids);
  }
  return r;
}

}  // namespace seqrec::semantic_id
