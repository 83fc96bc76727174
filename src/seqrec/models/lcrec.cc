#include "seqrec/models/lcrec.h"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <map>

#include "seqrec/common/error.h"
#include "seqrec/common/log.h"
#include "seqrec/data/lcrec_tasks.h"
#include "seqrec/eval/generative_metrics.h"

namespace seqrec::models {

LcRec::LcRec(const std::string& model_dir, const semantic_id::ItemIndex& index, LcRecOptions options)
    : options_(options) {
  if (options_.batch_size < 1) throw ConfigError("eval.generative.batch_size", "must be >= 1");
  tokenizer_ = llm::load_tokenizer(model_dir);
  lm_ = llm::load_decoder_lm(model_dir);
  lm_->eval();
  if (tokenizer_->eos_id() < 0) throw CheckpointError(model_dir + ": the tokenizer has no EOS token (codes end with EOS)");
  const int64_t vocab = lm_->config().vocab_size;
  codes_.assign(static_cast<size_t>(index.num_items() + 1), {});
  for (int64_t row = 0; row < index.num_items(); ++row) {
    std::vector<int64_t>& ids = codes_[static_cast<size_t>(row + 1)];
    for (const std::string& token : index.row_tokens(row)) {
      const int64_t id = tokenizer_->piece_to_id(token);
      if (id < 0 || id >= vocab)
        throw CheckpointError(model_dir + ": the tokenizer has no token " + token + " (item row " + std::to_string(row) +
                              "): was this model tuned with another index.json?");
      ids.push_back(id);
    }
  }
  trie_ = std::make_unique<semantic_id::PrefixTrie>(codes_, tokenizer_->eos_id());
  semantic_id::ItemGenerationOptions gen;
  gen.num_beams = options_.num_beams;
  gen.constraint = options_.constraint;
  gen.filter_non_items = options_.filter_non_items;
  generator_ = std::make_unique<semantic_id::ItemGenerator>(*trie_, gen);
}

std::vector<semantic_id::RankedItems> LcRec::generate(const std::vector<std::string>& prompts) {
  torch::NoGradGuard no_grad;
  std::vector<semantic_id::RankedItems> out;
  out.reserve(prompts.size());
  const size_t batch = static_cast<size_t>(options_.batch_size);
  for (size_t begin = 0; begin < prompts.size(); begin += batch) {
    const size_t end = std::min(prompts.size(), begin + batch);
    std::vector<std::vector<int64_t>> ids;
    for (size_t i = begin; i < end; ++i) ids.push_back(tokenizer_->encode_with_special(prompts[i]));
    for (auto& ranked : generator_->generate(lm_, ids)) out.push_back(std::move(ranked));
  }
  return out;
}

namespace {

// Canonical ids: an item and the items that share its code count as one (LC-Rec compares codes).
std::vector<int64_t> canonical(const semantic_id::PrefixTrie& trie, const std::vector<int64_t>& items) {
  std::vector<int64_t> out(items.size());
  for (size_t i = 0; i < items.size(); ++i) out[i] = items[i] < 0 ? items[i] : trie.canonical_item(items[i]);
  return out;
}

}  // namespace

GenerativeResult evaluate_generative(LcRec& model, const std::vector<data::LcRecExample>& examples,
                                     const std::vector<int64_t>& ks, const std::string& progress_label) {
  const auto start = std::chrono::steady_clock::now();
  GenerativeResult result;
  std::map<int64_t, size_t> slot;  // template id -> index into accumulators
  std::vector<eval::GenerativeMetrics> per_template;
  const size_t chunk = static_cast<size_t>(std::max<int64_t>(1, model.options().batch_size)) * 8;
  std::vector<std::string> prompts;
  for (size_t begin = 0; begin < examples.size(); begin += chunk) {
    const size_t end = std::min(examples.size(), begin + chunk);
    prompts.clear();
    for (size_t i = begin; i < end; ++i) {
      if (examples[i].target_item <= 0)
        throw DataError("generative evaluation: example " + std::to_string(i) + " (task " +
                        data::lcrec_task_name(examples[i].task) + ") has no target item");
      prompts.push_back(examples[i].prompt);
    }
    const std::vector<semantic_id::RankedItems> ranked = model.generate(prompts);
    for (size_t i = begin; i < end; ++i) {
      const int64_t tid = examples[i].template_id;
      auto it = slot.find(tid);
      if (it == slot.end()) {
        it = slot.emplace(tid, per_template.size()).first;
        per_template.emplace_back(ks);
        result.template_ids.push_back(tid);
      }
      per_template[it->second].add(canonical(model.trie(), ranked[i - begin].items),
                                   model.trie().canonical_item(examples[i].target_item));
    }
    result.queries = static_cast<int64_t>(end);
    if (!progress_label.empty()) {
      const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      log_info("[%s] %zu/%zu prompts, %.2f prompts/s", progress_label.c_str(), end, examples.size(),
               static_cast<double>(end) / std::max(secs, 1e-9));
    }
  }
  for (const auto& acc : per_template) result.per_template.push_back(acc.result());
  // Upstream averages each metric over the test prompts and also saves min and max.
  if (!result.per_template.empty()) {
    for (const auto& [name, value] : result.per_template.front()) {
      double sum = 0, lo = value, hi = value;
      for (const auto& m : result.per_template) {
        const double v = m.at(name);
        sum += v;
        lo = std::min(lo, v);
        hi = std::max(hi, v);
      }
      result.metrics[name] = sum / static_cast<double>(result.per_template.size());
      if (result.per_template.size() > 1) {
        result.metrics[name + "_min"] = lo;
        result.metrics[name + "_max"] = hi;
      }
    }
  }
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

}  // namespace seqrec::models
