// LC-Rec's instruction templates (systems.md §3.3; upstream prompt.py) and how one is rendered.
//
// The six task families keep upstream's template lists in upstream's order, so a template id here is
// the index upstream uses (`--test_prompt_ids`, `--valid_prompt_id`). Counts: seqrec 17, item2index
// 19, index2item 17, fusionseqrec 12, itemsearch 11, preferenceobtain 11. The table itself is
// generated from prompt.py by tools/gen_lcrec_templates.py into lcrec_templates.cc.
//
// Rendering is Python's str.format with named fields, in one pass (values are never re-read as
// templates). The Alpaca wrapper is
//   "Below is an instruction that describes a task. Write a response that appropriately completes
//    the request.\n\n### Instruction:\n{instruction}\n\n### Response:{response}"
// and a training example splits it as upstream's collator does: the prompt is the wrapper with an
// empty response (it ends with "### Response:", no space or newline after it), the response follows
// it directly; the fine-tuning code appends EOS and supervises the response tokens only.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "seqrec/data/interaction_store.h"

namespace seqrec::data {

/// The six LC-Rec tuning tasks (upstream `--tasks` names).
enum class LcRecTask {
  kSeqRec,            ///< "seqrec": history of item codes -> next item code
  kItem2Index,        ///< "item2index": title and/or description -> item code
  kIndex2Item,        ///< "index2item": item code -> title and/or description
  kFusionSeqRec,      ///< "fusionseqrec": code history -> next title/description; title history -> code
  kItemSearch,        ///< "itemsearch": history + preference / intention / query -> item code
  kPreferenceObtain,  ///< "preferenceobtain": history -> the user's explicit preference text
};

/// All tasks, in upstream's default `--tasks` order.
constexpr LcRecTask kLcRecTasks[] = {LcRecTask::kSeqRec,       LcRecTask::kItem2Index, LcRecTask::kIndex2Item,
                                     LcRecTask::kFusionSeqRec, LcRecTask::kItemSearch, LcRecTask::kPreferenceObtain};

/// Upstream name of a task ("seqrec", "item2index", ...).
const char* lcrec_task_name(LcRecTask task);
/// Parses an upstream task name (case-insensitive, as upstream lower-cases it); throws
/// ConfigError(path) listing the valid names otherwise.
LcRecTask parse_lcrec_task(const std::string& name, const std::string& path);

/// One instruction template and its response template (placeholders in braces).
struct PromptTemplate {
  const char* instruction;  ///< e.g. "What is the title of item {item}?"
  const char* response;     ///< e.g. "{title}"
};

/// The templates of a task in upstream order; the index is the template id.
Span<PromptTemplate> lcrec_templates(LcRecTask task);

/// Upstream's `sft_prompt` (the Alpaca wrapper with {instruction} and {response} placeholders).
extern const char kLcRecSftPrompt[];

/// The placeholders of the templates, one bit each (a template's set is `template_fields`).
enum PromptField : uint32_t {
  kFieldItem = 1u << 0,                  ///< {item}: the item's code string, e.g. "<a_1><b_2><c_3><d_4>"
  kFieldInters = 1u << 1,                ///< {inters}: history codes joined by his_sep
  kFieldTitle = 1u << 2,                 ///< {title}: the item's cleaned title
  kFieldDescription = 1u << 3,           ///< {description}: the item's description, as stored
  kFieldInterTitles = 1u << 4,           ///< {inter_titles}: history titles, each in double quotes
  kFieldExplicitPreference = 1u << 5,    ///< {explicit_preference}: one of the user's preference texts
  kFieldUserRelatedIntention = 1u << 6,  ///< {user_related_intention}
  kFieldItemRelatedIntention = 1u << 7,  ///< {item_related_intention}
  kFieldQuery = 1u << 8,                 ///< {query}: one of the two intentions
};

/// Values for the placeholders of one example (fields a template does not use may stay empty).
struct PromptValues {
  std::string item;
  std::string inters;
  std::string title;
  std::string description;
  std::string inter_titles;
  std::string explicit_preference;
  std::string user_related_intention;
  std::string item_related_intention;
  std::string query;
};

/// The PromptField bits of every placeholder in the instruction and response of `t`.
uint32_t template_fields(const PromptTemplate& t);

/// Python's `text.format(**values)` for our placeholder names: "{name}" is replaced by the value,
/// "{{" / "}}" by a brace. Throws std::invalid_argument for an unknown name or an unmatched brace
/// (the templates are fixed data, so this is a programming error).
std::string render_template(const char* text, const PromptValues& values);

/// The Alpaca wrapper with an empty response: everything up to and including "### Response:".
std::string alpaca_prompt(const std::string& instruction);

/// A template rendered for one example: the model input and the supervised continuation.
struct RenderedPrompt {
  std::string prompt;    ///< alpaca_prompt(instruction)
  std::string response;  ///< the rendered response template
};

/// Renders instruction and response of `t` with `values` and wraps the instruction.
RenderedPrompt render_prompt(const PromptTemplate& t, const PromptValues& values);

/// Upstream's title cleaning, `title.strip().strip(".!?,;:`")`: Python whitespace (ASCII and the
/// Unicode spaces str.strip() removes) off both ends, then the characters .!?,;:` off both ends.
std::string clean_title(const std::string& title);

}  // namespace seqrec::data
