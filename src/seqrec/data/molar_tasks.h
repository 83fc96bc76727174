// Molar's pre-training mixtures of the item model (systems.md §1.10: MIRM is first fine-tuned on
// three mixtures of 10,000 examples each) as prompt/response JSONL for `seqrec finetune`:
//
//   attributes_to_description (SA): an item's structured attributes, one "field: value" line each,
//     -> its description;
//   behaviour_to_next_item (UB): the titles of a user's last <= max_history training items, oldest
//     first, joined with ", " -> the title of the item that came next;
//   image_to_text (IT) needs image soft tokens in `seqrec finetune`, which it does not have: refused.
//
// The paper gives no wording; ours is kAttributesPrompt / kBehaviourPrompt below. Only training
// events are read: the last `holdout` items of every user with >= 3 events (the validation and
// test targets of data/split.h) never appear, as history or as answer. Sampling is uniform without
// replacement (SA over items with a description and at least one attribute; UB over every
// (user, position >= 1) pair of the training parts), seeded and the same on every machine.
//
// Each JSONL line: {"prompt": ..., "response": ..., "task": "<name>", "item": <dense id>,
// "user": <dense index or null>}. The file is written to a temp name and renamed; an existing file
// is replaced only when its first line is a molar-data line (seqrec wrote it).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "seqrec/data/interaction_store.h"

namespace seqrec::data {

class ItemCatalog;

/// The mixtures seqrec can write.
enum class MolarTask { kAttributesToDescription, kBehaviourToNextItem };

constexpr const char* kAttributesPrompt = "Below are the attributes of an item. Write the item's description.\n";
constexpr const char* kBehaviourPrompt = "A user interacted with these items, in order: ";

/// The `molar_data:` settings.
struct MolarTaskOptions {
  std::vector<MolarTask> tasks = {MolarTask::kAttributesToDescription, MolarTask::kBehaviourToNextItem};
  std::vector<std::string> attribute_fields = {"title", "tag"};  ///< SA's input columns, in order
  std::string description_field = "description";                 ///< SA's answer column
  std::string title_field = "title";                             ///< UB names items by this column
  int64_t examples_per_task = 10000;
  int64_t max_history = 20;  ///< UB: items of history shown
  int64_t holdout = 2;       ///< data.holdout: items held out at the end of every user
  uint64_t seed = 42;
};

/// One example.
struct MolarExample {
  MolarTask task;
  std::string prompt;
  std::string response;
  int64_t item = 0;   ///< the item described (SA) or predicted (UB), dense 1..V
  int64_t user = -1;  ///< UB: the dense user; SA: -1
};

/// "attributes_to_description" / "behaviour_to_next_item".
const char* molar_task_name(MolarTask task);
/// Parses a task name; ConfigError at `field` for image_to_text (why) and unknown names.
MolarTask parse_molar_task(const std::string& name, const std::string& field);

/// The examples of every task in options.tasks, task by task. ConfigError (molar_data.<key>) when a
/// named column is not in the item table.
std::vector<MolarExample> molar_pretraining_examples(const InteractionStore& store, const ItemCatalog& catalog,
                                                     const MolarTaskOptions& options);

/// One JSONL line (no newline); invalid UTF-8 is replaced by U+FFFD.
std::string molar_example_json(const MolarExample& example);

/// Writes the examples as JSONL (temp + rename). Throws Error when `path` exists and is not a
/// molar-data file (never overwrites what seqrec did not write).
void write_molar_data(const std::string& path, const std::vector<MolarExample>& examples);

}  // namespace seqrec::data
