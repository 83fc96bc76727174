// LC-Rec behind the serving core: prompts -> one batched constrained beam search -> filtered beams.
#include "seqrec/serve/generative_backend.h"

#include <torch/torch.h>

#include <algorithm>

#include "seqrec/models/lcrec.h"

namespace seqrec::serve {

GenerativeBackend::GenerativeBackend(std::unique_ptr<models::LcRec> model, PromptFn prompt)
    : model_(std::move(model)), prompt_(std::move(prompt)) {}

GenerativeBackend::~GenerativeBackend() = default;

int64_t GenerativeBackend::num_beams() const { return model_->options().num_beams; }

int64_t GenerativeBackend::num_items() const { return model_->num_items(); }

std::string GenerativeBackend::description() const {
  const bool trie = model_->options().constraint == semantic_id::CodeConstraint::kTrie;
  return "lcrec beam search (" + std::to_string(num_beams()) + " beams, " + (trie ? "trie" : "whitelist") + ")";
}

std::vector<Ranked> GenerativeBackend::rank(const std::vector<const Query*>& queries) const {
  std::vector<std::string> prompts;
  prompts.reserve(queries.size());
  for (const Query* q : queries) prompts.push_back(prompt_(q->history));
  std::vector<semantic_id::RankedItems> beams;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    beams = model_->generate(prompts);
  }
  std::vector<Ranked> out(queries.size());
  for (size_t i = 0; i < queries.size(); ++i) {
    const Query& q = *queries[i];
    const semantic_id::RankedItems& r = beams[i];
    for (size_t b = 0; b < r.items.size() && static_cast<int64_t>(out[i].ids.size()) < q.k; ++b) {
      const int64_t item = r.items[b];
      if (item <= 0) continue;  // a whitelist beam that is no item
      if (std::binary_search(q.masked.begin(), q.masked.end(), item)) continue;
      if (!q.allow.empty() && !std::binary_search(q.allow.begin(), q.allow.end(), item)) continue;
      out[i].ids.push_back(item);
      out[i].scores.push_back(static_cast<float>(r.scores[b]));
    }
  }
  return out;
}

}  // namespace seqrec::serve
