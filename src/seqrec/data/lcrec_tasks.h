// LC-Rec's tuning data (systems.md §3.3; upstream data.py + utils.load_datasets): the six task
// families turned into prompt/response examples from a prepared store, item code strings, item
// texts and (optionally) per-user preference / intention texts.
//
// Samples, per task (history = the most recent max_his_len items, each written as its code string,
// optionally numbered "k. ", joined by his_sep):
//   seqrec        train: every prefix of the user's training part (data/split.h: items[:-2] when
//                 n >= 3), target the next item; valid: target items[-2]; test: target items[-1]
//   item2index,   every item 1..V; the title / description / title+description templates need the
//   index2item    field (an item without it only draws among the templates it can fill)
//   fusionseqrec  the samples of seqrec, with the target's title and description and the history's
//                 titles ("\"title\"" each) as well
//   itemsearch    one per user with both preference texts and a train (test) intention in user.json:
//                 the intention's own item and history; explicit_preference and query are drawn per
//                 example, as upstream's __getitem__ does
//   preferenceobtain  one per user with preference texts: history items[:-3] of the store
// Titles are cleaned as upstream (clean_title); descriptions are used as stored.
//
// Randomness (all from options.seed, independent of thread count and of the order of calls):
//  - sub-sampling (data_sample_num): once, a function of (seed, task); kept samples stay in order;
//  - training templates: one per (epoch, task, sample, copy), uniform over the templates whose
//    placeholders the sample can fill -- upstream's random.randint per __getitem__, i.e. per epoch;
//  - validation: valid_prompt_sample_num distinct seqrec templates per user, a function of (seed, user);
//  - test: the listed template ids, every one for every test sample (upstream's outer prompt loop).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "seqrec/data/interaction_store.h"
#include "seqrec/data/lcrec_prompts.h"
#include "seqrec/data/lcrec_user_texts.h"

namespace seqrec::config {
class ConfigNode;
}

namespace seqrec::data {

class ItemCatalog;

/// Which examples: training, validation (seqrec only, as upstream) or test.
enum class LcRecMode { kTrain, kValid, kTest };

/// One task of the training mix (upstream --tasks with --train_prompt_sample_num and
/// --train_data_sample_num at the same position).
struct LcRecTaskSpec {
  LcRecTask task = LcRecTask::kSeqRec;  ///< the task family
  int64_t prompt_sample_num = 1;        ///< copies of every sample per epoch, each with its own template
  int64_t data_sample_num = 0;          ///< keep this many samples, drawn without replacement (0 = all)
};

/// How examples are generated (the `lcrec:` config section minus file paths).
struct LcRecDataOptions {
  /// Training tasks; default: the six of upstream's run.sh with its train_data_sample_num
  /// 0,0,0,100000,0,0 (fusionseqrec sub-sampled to 100k).
  std::vector<LcRecTaskSpec> tasks = {{LcRecTask::kSeqRec, 1, 0},       {LcRecTask::kItem2Index, 1, 0},
                                      {LcRecTask::kIndex2Item, 1, 0},   {LcRecTask::kFusionSeqRec, 1, 100000},
                                      {LcRecTask::kItemSearch, 1, 0},   {LcRecTask::kPreferenceObtain, 1, 0}};
  int64_t max_his_len = 20;             ///< history items kept, the most recent (<= 0: all)
  std::string his_sep = ", ";           ///< joins history entries
  bool add_prefix = false;              ///< number history entries "1. ", "2. ", ...
  int64_t seed = 42;                    ///< fixes sub-sampling and every template draw
  bool sample_valid = true;             ///< validation: random distinct templates per user (upstream default)
  int64_t valid_prompt_sample_num = 2;  ///< ... this many of them
  int64_t valid_prompt_id = 0;          ///< the one template when !sample_valid
  LcRecTask test_task = LcRecTask::kSeqRec;  ///< seqrec | fusionseqrec | itemsearch (upstream --test_task)
  std::vector<int64_t> test_prompt_ids = {0};  ///< template ids rendered for every test sample
  int64_t test_sample_num = 0;          ///< test samples drawn without replacement (0 = all)
};

/// Item-side inputs, indexed by dense item id (index 0 unused).
struct LcRecItems {
  std::vector<std::string> codes;         ///< [V+1] code strings, e.g. "<a_1><b_2><c_3><d_4>"; all non-empty
  std::vector<std::string> titles;        ///< [V+1] cleaned titles, "" = none
  std::vector<std::string> descriptions;  ///< [V+1] descriptions, "" = none
};

/// Builds LcRecItems from the catalog columns `title_field` / `description_field` (either may be
/// absent from the catalog: then no item has it); titles are cleaned. `codes` must have V+1 entries.
LcRecItems lcrec_items(const ItemCatalog& catalog, std::vector<std::string> codes, const std::string& title_field,
                       const std::string& description_field);

/// One unit of data before a template is chosen. Views point into the store and the task set.
struct LcRecSample {
  LcRecTask task = LcRecTask::kSeqRec;     ///< task family
  int64_t user = -1;                       ///< dense user index, -1 for item tasks
  int32_t item = 0;                        ///< dense item the response is about, 0 for preferenceobtain
  Span<int32_t> history;                   ///< history items, oldest first, already cut to max_his_len
  const UserIntention* intention = nullptr;      ///< itemsearch
  const UserPreferences* preferences = nullptr;  ///< itemsearch, preferenceobtain
  uint32_t available = 0;                  ///< PromptField bits this sample can fill
};

/// The random choices of one example.
struct TemplateChoice {
  int64_t template_id = 0;   ///< index into lcrec_templates(task)
  int64_t preference = 0;    ///< which preference text is {explicit_preference}
  int64_t query = 0;         ///< {query}: 0 = user-related intention, 1 = item-related
};

/// One prompt/response example (a line of train/valid/test.jsonl).
struct LcRecExample {
  LcRecTask task = LcRecTask::kSeqRec;  ///< task family
  int64_t template_id = 0;              ///< template used
  int64_t user = -1;                    ///< dense user index, -1 for item tasks
  int32_t target_item = 0;              ///< dense item the response is about, 0 for preferenceobtain
  std::string prompt;                   ///< Alpaca-wrapped instruction, ends with "### Response:"
  std::string response;                 ///< the supervised text (no EOS)
};

/// What became of one task (logged and written to lcrec_data.json).
struct LcRecTaskReport {
  LcRecTask task = LcRecTask::kSeqRec;  ///< task family
  bool skipped = false;                 ///< no input for it (e.g. no user texts): produced nothing
  std::string reason;                   ///< why it was skipped
  int64_t candidates = 0;               ///< samples found
  int64_t unusable = 0;                 ///< of them, ones no template can fill (dropped)
  int64_t samples = 0;                  ///< kept after sub-sampling
  int64_t examples_per_epoch = 0;       ///< samples * prompt_sample_num
};

/// The examples of a configured task mix. Build once; render any epoch on demand (the per-epoch hook
/// a trainer can call in-process), or write them out (lcrec_jsonl.h).
class LcRecTaskSet {
 public:
  /// Builds the samples of every task (validating options against the data: template ids in
  /// range, codes for all V items). Tasks that need user texts are skipped, with a log line and a
  /// report entry, when `users` has none for them.
  LcRecTaskSet(InteractionStore store, LcRecItems items, LcRecUserTexts users, LcRecDataOptions options);
  LcRecTaskSet(const LcRecTaskSet&) = delete;
  LcRecTaskSet& operator=(const LcRecTaskSet&) = delete;
  LcRecTaskSet(LcRecTaskSet&&) = default;

  /// One report per configured task, in configuration order.
  const std::vector<LcRecTaskReport>& reports() const { return reports_; }
  /// Training examples per epoch (all tasks).
  int64_t num_train_examples() const;

  /// Calls fn for every training example of `epoch`, tasks in configuration order, samples in order,
  /// the copies of a sample together.
  void for_each_train_example(int64_t epoch, const std::function<void(const LcRecExample&)>& fn) const;
  /// The same, collected.
  std::vector<LcRecExample> train_examples(int64_t epoch) const;
  /// Validation examples (seqrec, target items[-2]).
  std::vector<LcRecExample> valid_examples() const;
  /// Calls fn for every test example (options.test_task, every id of test_prompt_ids).
  void for_each_test_example(const std::function<void(const LcRecExample&)>& fn) const;

  /// The test prompt of an arbitrary history (dense ids, oldest first; its last max_his_len items)
  /// with template `template_id` of options.test_task, which must be seqrec or fusionseqrec (the
  /// others need a user's texts): what `seqrec recommend` asks a tuned model. No target: the response
  /// is empty and target_item 0. Throws std::invalid_argument for another task or a bad template id.
  LcRecExample query_example(const std::vector<int32_t>& history, int64_t template_id) const;

  /// All candidate samples of `task` in `mode` before sub-sampling (unusable ones included).
  std::vector<LcRecSample> samples(LcRecTask task, LcRecMode mode) const;
  /// Whether template `template_id` of the sample's task can be filled from the sample.
  bool usable(const LcRecSample& sample, int64_t template_id) const;
  /// Renders one sample with the given choices (the template must be usable).
  LcRecExample render(const LcRecSample& sample, const TemplateChoice& choice) const;

  const LcRecDataOptions& options() const { return options_; }

 private:
  struct TaskSamples {
    LcRecTaskSpec spec;
    std::vector<LcRecSample> samples;  // kept (usable, sub-sampled)
  };
  LcRecSample make_sample(LcRecTask task, int64_t user, int32_t item, Span<int32_t> history) const;
  std::vector<LcRecSample> history_samples(LcRecTask task, LcRecMode mode) const;
  std::vector<LcRecSample> user_text_samples(LcRecTask task, LcRecMode mode) const;
  std::vector<int64_t> usable_templates(const LcRecSample& sample) const;
  TemplateChoice draw_choice(const LcRecSample& sample, uint64_t seed) const;
  std::string history_text(Span<int32_t> history, bool titles) const;
  void check_items() const;

  InteractionStore store_;
  LcRecItems items_;
  LcRecUserTexts users_;
  LcRecDataOptions options_;
  std::vector<std::vector<uint32_t>> template_fields_;  // [task][template id]
  std::vector<TaskSamples> train_;
  std::vector<LcRecSample> valid_;
  std::vector<LcRecSample> test_;
  std::vector<LcRecTaskReport> reports_;
};

/// Reads `lcrec:` generation keys into LcRecDataOptions and validates them (ConfigError with the
/// key path): tasks (list of names, no repeats), train_prompt_sample_num / train_data_sample_num
/// (lists as long as tasks; the data default follows upstream: 100000 for fusionseqrec, else 0),
/// max_his_len, his_sep, add_prefix, seed, sample_valid, valid_prompt_sample_num, valid_prompt_id,
/// test_task, test_prompt_ids ("all" or comma-separated ids, as upstream), test_sample_num.
LcRecDataOptions read_lcrec_data_options(config::ConfigNode node);

}  // namespace seqrec::data
