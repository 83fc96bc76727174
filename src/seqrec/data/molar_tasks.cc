// Molar's item-model pre-training mixtures as prompt/response JSONL.
#include "seqrec/data/molar_tasks.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <fstream>
#include <unordered_set>

#include "seqrec/common/error.h"
#include "seqrec/common/fs.h"
#include "seqrec/common/random.h"
#include "seqrec/data/item_catalog.h"
#include "seqrec/data/split.h"

namespace seqrec::data {
namespace {

using json = nlohmann::json;

// k distinct indices of [0, n), ascending (all of them when k >= n).
std::vector<int64_t> sample_without_replacement(int64_t n, int64_t k, Rng& rng) {
  std::vector<int64_t> out;
  if (k >= n) {
    out.resize(n);
    for (int64_t i = 0; i < n; ++i) out[i] = i;
    return out;
  }
  if (2 * k > n) {  // dense: a partial shuffle
    out = draw_distinct(n, k, rng);
  } else {  // sparse (memory O(k), for logs of 100M+ pairs): draw until k distinct
    std::unordered_set<int64_t> seen;
    while (static_cast<int64_t>(out.size()) < k) {
      const auto i = static_cast<int64_t>(rng.below(n));
      if (seen.insert(i).second) out.push_back(i);
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string item_name(const ItemCatalog& catalog, int64_t item, const std::string& title_field) {
  std::string t = catalog.field(item, title_field);
  return t.empty() ? catalog.raw_id(item) : t;
}

void attributes_examples(const ItemCatalog& catalog, const MolarTaskOptions& o, Rng& rng,
                         std::vector<MolarExample>* out) {
  std::vector<int64_t> usable;  // items with a description and at least one attribute
  for (int64_t i = 1; i <= catalog.num_items(); ++i) {
    if (catalog.field(i, o.description_field).empty()) continue;
    for (const auto& f : o.attribute_fields)
      if (!catalog.field(i, f).empty()) {
        usable.push_back(i);
        break;
      }
  }
  for (int64_t k : sample_without_replacement(static_cast<int64_t>(usable.size()), o.examples_per_task, rng)) {
    const int64_t item = usable[k];
    MolarExample e{MolarTask::kAttributesToDescription, kAttributesPrompt, catalog.field(item, o.description_field), item};
    for (const auto& f : o.attribute_fields) {
      const std::string v = catalog.field(item, f);
      if (!v.empty()) e.prompt += f + ": " + v + "\n";
    }
    e.prompt += "Description: ";
    out->push_back(std::move(e));
  }
}

void behaviour_examples(const InteractionStore& store, const ItemCatalog& catalog, const MolarTaskOptions& o,
                        Rng& rng, std::vector<MolarExample>* out) {
  // Pair (u, t): the item at t >= 1 of u's training part after its <= max_history predecessors.
  std::vector<int64_t> first(store.num_users() + 1, 0);  // first pair index of each user
  for (int64_t u = 0; u < store.num_users(); ++u)
    first[u + 1] = first[u] + std::max<int64_t>(0, train_length(store.items(u).size(), o.holdout) - 1);
  for (int64_t k : sample_without_replacement(first.back(), o.examples_per_task, rng)) {
    const int64_t u = std::upper_bound(first.begin(), first.end(), k) - first.begin() - 1;
    const int64_t t = k - first[u] + 1;
    const Span<int32_t> seq = store.items(u);
    MolarExample e{MolarTask::kBehaviourToNextItem, kBehaviourPrompt, item_name(catalog, seq[t], o.title_field),
                   seq[t], u};
    for (int64_t j = std::max<int64_t>(0, t - o.max_history); j < t; ++j)
      e.prompt += (j > std::max<int64_t>(0, t - o.max_history) ? ", " : "") + item_name(catalog, seq[j], o.title_field);
    e.prompt += ".\nThe next item the user interacts with: ";
    out->push_back(std::move(e));
  }
}

}  // namespace

const char* molar_task_name(MolarTask task) {
  return task == MolarTask::kAttributesToDescription ? "attributes_to_description" : "behaviour_to_next_item";
}

MolarTask parse_molar_task(const std::string& name, const std::string& field) {
  if (name == "attributes_to_description") return MolarTask::kAttributesToDescription;
  if (name == "behaviour_to_next_item") return MolarTask::kBehaviourToNextItem;
  if (name == "image_to_text")
    throw ConfigError(field, "image_to_text needs image soft tokens in seqrec finetune, which it does not have "
                             "(the mixtures it can write: attributes_to_description, behaviour_to_next_item)");
  throw ConfigError(field, "'" + name + "' is not one of attributes_to_description, behaviour_to_next_item");
}

std::vector<MolarExample> molar_pretraining_examples(const InteractionStore& store, const ItemCatalog& catalog,
                                                     const MolarTaskOptions& o) {
  if (o.examples_per_task < 1) throw ConfigError("molar_data.examples_per_task", "must be >= 1");
  if (o.max_history < 1) throw ConfigError("molar_data.max_history", "must be >= 1");
  if (catalog.num_items() != store.num_items())
    throw DataError("the item table has " + std::to_string(catalog.num_items()) + " items, the store " +
                    std::to_string(store.num_items()) + " (re-run seqrec prepare)");
  std::vector<MolarExample> out;
  for (MolarTask task : o.tasks) {
    Rng rng(derive_seed({o.seed, static_cast<uint64_t>(task)}));
    if (task == MolarTask::kAttributesToDescription) {
      for (const auto& f : o.attribute_fields) catalog.require_column(f, "molar_data.attribute_fields");
      catalog.require_column(o.description_field, "molar_data.description_field");
      attributes_examples(catalog, o, rng, &out);
    } else {
      catalog.require_column(o.title_field, "molar_data.title_field");
      behaviour_examples(store, catalog, o, rng, &out);
    }
  }
  return out;
}

std::string molar_example_json(const MolarExample& e) {
  json j;
  j["prompt"] = e.prompt;
  j["response"] = e.response;
  j["task"] = molar_task_name(e.task);
  j["item"] = e.item;
  j["user"] = e.user >= 0 ? json(e.user) : json(nullptr);
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

void write_molar_data(const std::string& path, const std::vector<MolarExample>& examples) {
  if (path_exists(path)) {  // replace only a file of ours
    std::ifstream in(path);
    std::string line;
    std::getline(in, line);
    const json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
    const bool ours = j.is_object() && j.contains("task") && j["task"].is_string() &&
                      (j["task"] == "attributes_to_description" || j["task"] == "behaviour_to_next_item");
    if (!ours) throw Error(path + ": exists and was not written by seqrec molar-data; choose another molar_data.out");
  }
  std::string content;
  for (const MolarExample& e : examples) content += molar_example_json(e) + "\n";
  write_file_atomic(path, content);
}

}  // namespace seqrec::data
