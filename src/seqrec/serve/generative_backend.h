// The generative side of the serving core: an LC-Rec model that answers a batch of queries with
// one constrained beam search over the item trie (the prompt of each history, as `seqrec
// recommend` writes it), the beams then filtered by each query's masked items and allow list.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "seqrec/serve/query.h"

namespace seqrec::models {
class LcRec;
}

namespace seqrec::serve {

/// The prompt of a history (dense item ids, oldest first): LC-Rec's test template over its codes.
using PromptFn = std::function<std::string(const std::vector<int32_t>& history)>;

/// A generative recommender behind RecommenderService. Thread-safe: beam searches run one at a time.
class GenerativeBackend {
 public:
  /// Takes the loaded model and the prompt builder of its run config.
  GenerativeBackend(std::unique_ptr<models::LcRec> model, PromptFn prompt);
  ~GenerativeBackend();
  GenerativeBackend(const GenerativeBackend&) = delete;
  GenerativeBackend& operator=(const GenerativeBackend&) = delete;

  /// K: beams searched per query, the most items one query can get.
  int64_t num_beams() const;
  /// V: items of the model's index.
  int64_t num_items() const;
  /// "lcrec beam search (20 beams, trie)", for logs and /healthz.
  std::string description() const;
  /// One beam search for all the queries (in chunks of the model's batch size); per query, the
  /// beams best first with non-items, masked items and items outside a non-empty allow list
  /// dropped, cut to k. Scores are the beams' scores (sum of log-probabilities / (code length + 1)).
  std::vector<Ranked> rank(const std::vector<const Query*>& queries) const;

 private:
  mutable std::mutex mutex_;  // LcRec::generate is not reentrant
  std::unique_ptr<models::LcRec> model_;
  PromptFn prompt_;
};

/// Loads a generative model from a folder checkpoint (`seqrec finetune`'s output), its run config
/// read by the caller (the CLI reads the folder's seqrec_finetune.yaml).
using GenerativeLoader = std::function<std::shared_ptr<const GenerativeBackend>(const std::string& folder)>;

}  // namespace seqrec::serve
