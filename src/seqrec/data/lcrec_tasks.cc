// LC-Rec tuning data: samples per task, sub-sampling, seeded template draws, rendering.
#include "seqrec/data/lcrec_tasks.h"

#include <algorithm>
#include <stdexcept>

#include "seqrec/common/error.h"
#include "seqrec/common/log.h"
#include "seqrec/common/random.h"
#include "seqrec/config/config_node.h"
#include "seqrec/data/item_catalog.h"
#include "seqrec/data/split.h"

namespace seqrec::data {
namespace {

// Salts that keep the random streams of different purposes apart.
constexpr uint64_t kSubsampleSalt = 0x6c637265632d7373ULL;  // "lcrec-ss"
constexpr uint64_t kTrainSalt = 0x6c637265632d7472ULL;      // "lcrec-tr"
constexpr uint64_t kValidSalt = 0x6c637265632d7661ULL;      // "lcrec-va"
constexpr uint64_t kTestSalt = 0x6c637265632d7465ULL;       // "lcrec-te"

/// The last max_his_len items of span[0, end) (all of them when max_his_len <= 0).
Span<int32_t> recent(const int32_t* begin, int64_t end, int64_t max_his_len) {
  const int64_t from = max_his_len > 0 ? std::max<int64_t>(0, end - max_his_len) : 0;
  return {begin + from, end - from};
}

/// Keeps `k` of the samples (drawn without replacement, seeded), in their original order.
std::vector<LcRecSample> subsample(std::vector<LcRecSample> all, int64_t k, uint64_t seed) {
  if (k <= 0 || k >= static_cast<int64_t>(all.size())) return all;
  Rng rng(seed);
  std::vector<int64_t> keep = draw_distinct(static_cast<int64_t>(all.size()), k, rng);
  std::sort(keep.begin(), keep.end());
  std::vector<LcRecSample> out;
  out.reserve(keep.size());
  for (int64_t i : keep) out.push_back(all[static_cast<size_t>(i)]);
  return out;
}

bool needs_user_texts(LcRecTask task) {
  return task == LcRecTask::kItemSearch || task == LcRecTask::kPreferenceObtain;
}

/// Upstream's --test_prompt_ids: "all" or comma-separated template ids of `task`.
std::vector<int64_t> parse_prompt_ids(const std::string& ids, LcRecTask task, const std::string& path) {
  const int64_t num = lcrec_templates(task).size();
  std::vector<int64_t> out;
  if (ids == "all") {
    for (int64_t t = 0; t < num; ++t) out.push_back(t);
    return out;
  }
  size_t start = 0;
  while (start <= ids.size()) {
    const size_t comma = std::min(ids.find(',', start), ids.size());
    const std::string piece = ids.substr(start, comma - start);
    size_t used = 0;
    int64_t t = -1;
    try {
      t = std::stoll(piece, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != piece.size() || t < 0 || t >= num)
      throw ConfigError(path, "expected 'all' or comma-separated template ids 0.." + std::to_string(num - 1) +
                                  ", got '" + ids + "'");
    out.push_back(t);
    start = comma + 1;
  }
  return out;
}

}  // namespace

LcRecItems lcrec_items(const ItemCatalog& catalog, std::vector<std::string> codes, const std::string& title_field,
                       const std::string& description_field) {
  const int64_t n = catalog.num_items();
  if (static_cast<int64_t>(codes.size()) != n + 1)
    throw std::invalid_argument("lcrec_items: codes must have num_items + 1 entries");
  const auto& columns = catalog.columns();
  const bool has_title = std::find(columns.begin(), columns.end(), title_field) != columns.end();
  const bool has_description = std::find(columns.begin(), columns.end(), description_field) != columns.end();
  LcRecItems items;
  items.codes = std::move(codes);
  items.titles.resize(static_cast<size_t>(n) + 1);
  items.descriptions.resize(static_cast<size_t>(n) + 1);
  for (int64_t i = 1; i <= n; ++i) {
    if (has_title) items.titles[i] = clean_title(catalog.field(i, title_field));
    if (has_description) items.descriptions[i] = catalog.field(i, description_field);
  }
  return items;
}

LcRecTaskSet::LcRecTaskSet(InteractionStore store, LcRecItems items, LcRecUserTexts users, LcRecDataOptions options)
    : store_(std::move(store)), items_(std::move(items)), users_(std::move(users)), options_(std::move(options)) {
  check_items();
  for (LcRecTask t : kLcRecTasks) {
    std::vector<uint32_t> fields;
    for (const PromptTemplate& p : lcrec_templates(t)) fields.push_back(template_fields(p));
    template_fields_.push_back(std::move(fields));
  }
  for (const LcRecTaskSpec& spec : options_.tasks) {
    LcRecTaskReport report;
    report.task = spec.task;
    const char* name = lcrec_task_name(spec.task);
    std::vector<LcRecSample> all = samples(spec.task, LcRecMode::kTrain);
    if (all.empty() && needs_user_texts(spec.task)) {
      report.skipped = true;
      report.reason = users_.preferences.empty() ? "no user preference texts (user.json not given or empty)"
                                                 : "no user has both preference texts and a train intention";
      log_warn("lcrec: task %s skipped: %s", name, report.reason.c_str());
      reports_.push_back(report);
      continue;
    }
    report.candidates = static_cast<int64_t>(all.size());
    std::vector<LcRecSample> usable;
    for (const LcRecSample& s : all)
      if (!usable_templates(s).empty()) usable.push_back(s);
    report.unusable = report.candidates - static_cast<int64_t>(usable.size());
    if (spec.data_sample_num >= static_cast<int64_t>(usable.size()) && spec.data_sample_num > 0)
      log_warn("lcrec: task %s: data_sample_num %ld >= its %ld samples: keeping all", name,
               long(spec.data_sample_num), long(usable.size()));
    TaskSamples ts{spec, subsample(std::move(usable), spec.data_sample_num,
                                   derive_seed({uint64_t(options_.seed), kSubsampleSalt, uint64_t(spec.task)}))};
    report.samples = static_cast<int64_t>(ts.samples.size());
    report.examples_per_epoch = report.samples * spec.prompt_sample_num;
    log_info("lcrec: task %s: %ld samples (%ld found, %ld no template can fill) x %ld prompt copies", name,
             long(report.samples), long(report.candidates), long(report.unusable), long(spec.prompt_sample_num));
    reports_.push_back(report);
    train_.push_back(std::move(ts));
  }
  valid_ = samples(LcRecTask::kSeqRec, LcRecMode::kValid);
  std::vector<LcRecSample> test = samples(options_.test_task, LcRecMode::kTest);
  if (test.empty() && options_.test_task == LcRecTask::kItemSearch)
    throw DataError("lcrec: test_task itemsearch needs user texts with test intentions and preferences");
  test_ = subsample(std::move(test), options_.test_sample_num,
                    derive_seed({uint64_t(options_.seed), kTestSalt, uint64_t(options_.test_task)}));
}

void LcRecTaskSet::check_items() const {
  const size_t n = static_cast<size_t>(store_.num_items()) + 1;
  if (items_.codes.size() != n || items_.titles.size() != n || items_.descriptions.size() != n)
    throw std::invalid_argument("LcRecTaskSet: item codes/titles/descriptions must have num_items + 1 entries");
  for (size_t i = 1; i < n; ++i)
    if (items_.codes[i].empty()) throw std::invalid_argument("LcRecTaskSet: item " + std::to_string(i) + " has no code");
}

LcRecSample LcRecTaskSet::make_sample(LcRecTask task, int64_t user, int32_t item, Span<int32_t> history) const {
  LcRecSample s;
  s.task = task;
  s.user = user;
  s.item = item;
  s.history = history;
  uint32_t bits = 0;
  if (item > 0) {
    bits |= kFieldItem;
    if (!items_.titles[item].empty()) bits |= kFieldTitle;
    if (!items_.descriptions[item].empty()) bits |= kFieldDescription;
  }
  if (!history.empty()) {
    bits |= kFieldInters;
    const bool all_titled =
        std::all_of(history.begin(), history.end(), [&](int32_t i) { return !items_.titles[i].empty(); });
    if (all_titled) bits |= kFieldInterTitles;
  }
  s.available = bits;
  return s;
}

std::vector<LcRecSample> LcRecTaskSet::samples(LcRecTask task, LcRecMode mode) const {
  switch (task) {
    case LcRecTask::kSeqRec:
    case LcRecTask::kFusionSeqRec:
      return history_samples(task, mode);
    case LcRecTask::kItem2Index:
    case LcRecTask::kIndex2Item: {
      std::vector<LcRecSample> out;
      if (mode != LcRecMode::kTrain) return out;
      for (int64_t i = 1; i <= store_.num_items(); ++i)
        out.push_back(make_sample(task, -1, static_cast<int32_t>(i), {}));
      return out;
    }
    case LcRecTask::kItemSearch:
    case LcRecTask::kPreferenceObtain:
      return user_text_samples(task, mode);
  }
  return {};
}

std::vector<LcRecSample> LcRecTaskSet::history_samples(LcRecTask task, LcRecMode mode) const {
  std::vector<LcRecSample> out;
  const int64_t h = options_.max_his_len;
  for (int64_t u = 0; u < store_.num_users(); ++u) {
    const Span<int32_t> items = store_.items(u);
    const int64_t n = items.size();
    if (mode == LcRecMode::kTrain) {
      const int64_t m = train_length(n);  // upstream items[:-2] (every user of its 5-core data has n >= 5)
      for (int64_t i = 1; i < m; ++i) out.push_back(make_sample(task, u, items[i], recent(items.ptr, i, h)));
    } else if (n >= 3) {
      const int64_t target = mode == LcRecMode::kValid ? n - 2 : n - 1;
      out.push_back(make_sample(task, u, items[target], recent(items.ptr, target, h)));
    }
  }
  return out;
}

std::vector<LcRecSample> LcRecTaskSet::user_text_samples(LcRecTask task, LcRecMode mode) const {
  std::vector<LcRecSample> out;
  const int64_t h = options_.max_his_len;
  if (task == LcRecTask::kPreferenceObtain) {
    if (mode != LcRecMode::kTrain) return out;
    for (const UserPreferences& p : users_.preferences) {
      if (p.user >= store_.num_users()) continue;
      const Span<int32_t> items = store_.items(p.user);
      LcRecSample s = make_sample(task, p.user, 0, recent(items.ptr, std::max<int64_t>(0, items.size() - 3), h));
      s.preferences = &p;
      s.available |= kFieldExplicitPreference;
      out.push_back(s);
    }
    return out;
  }
  if (mode == LcRecMode::kValid) return out;
  // itemsearch: users with both preference texts and an intention (upstream iterates the preference
  // users and looks their intention up); both lists are sorted by user.
  const auto& intentions = mode == LcRecMode::kTrain ? users_.train_intentions : users_.test_intentions;
  auto pref = users_.preferences.begin();
  for (const UserIntention& in : intentions) {
    while (pref != users_.preferences.end() && pref->user < in.user) ++pref;
    if (pref == users_.preferences.end() || pref->user != in.user) continue;
    const Span<int32_t> hist{in.history.data(), static_cast<int64_t>(in.history.size())};
    LcRecSample s = make_sample(task, in.user, in.item, recent(hist.ptr, hist.size(), h));
    s.intention = &in;
    s.preferences = &*pref;
    s.available |= kFieldExplicitPreference;
    if (!in.user_related_intention.empty()) s.available |= kFieldUserRelatedIntention;
    if (!in.item_related_intention.empty()) s.available |= kFieldItemRelatedIntention;
    if (!in.user_related_intention.empty() || !in.item_related_intention.empty()) s.available |= kFieldQuery;
    out.push_back(s);
  }
  return out;
}

bool LcRecTaskSet::usable(const LcRecSample& sample, int64_t template_id) const {
  const auto& fields = template_fields_[static_cast<size_t>(sample.task)];
  return template_id >= 0 && template_id < static_cast<int64_t>(fields.size()) &&
         (fields[static_cast<size_t>(template_id)] & ~sample.available) == 0;
}

std::vector<int64_t> LcRecTaskSet::usable_templates(const LcRecSample& sample) const {
  std::vector<int64_t> ids;
  const int64_t n = static_cast<int64_t>(template_fields_[static_cast<size_t>(sample.task)].size());
  for (int64_t t = 0; t < n; ++t)
    if (usable(sample, t)) ids.push_back(t);
  return ids;
}

TemplateChoice LcRecTaskSet::draw_choice(const LcRecSample& sample, uint64_t seed) const {
  Rng rng(seed);
  const std::vector<int64_t> ids = usable_templates(sample);
  TemplateChoice c;
  c.template_id = ids[rng.below(ids.size())];
  if (sample.preferences != nullptr) c.preference = static_cast<int64_t>(rng.below(sample.preferences->texts.size()));
  if (sample.intention != nullptr) {
    const bool has_user = !sample.intention->user_related_intention.empty();
    const bool has_item = !sample.intention->item_related_intention.empty();
    c.query = has_user && has_item ? static_cast<int64_t>(rng.below(2)) : (has_user ? 0 : 1);
  }
  return c;
}

std::string LcRecTaskSet::history_text(Span<int32_t> history, bool titles) const {
  std::string out;
  for (int64_t k = 0; k < history.size(); ++k) {
    if (k > 0) out += options_.his_sep;
    if (options_.add_prefix) out += std::to_string(k + 1) + ". ";
    const int32_t i = history[k];
    if (titles)
      out += "\"" + items_.titles[i] + "\"";
    else
      out += items_.codes[i];
  }
  return out;
}

LcRecExample LcRecTaskSet::render(const LcRecSample& sample, const TemplateChoice& choice) const {
  if (!usable(sample, choice.template_id))
    throw std::invalid_argument(std::string("lcrec: template ") + std::to_string(choice.template_id) + " of " +
                                lcrec_task_name(sample.task) + " cannot be filled from this sample");
  const uint32_t need = template_fields_[static_cast<size_t>(sample.task)][static_cast<size_t>(choice.template_id)];
  PromptValues v;
  if (sample.item > 0) {
    v.item = items_.codes[sample.item];
    if (need & kFieldTitle) v.title = items_.titles[sample.item];
    if (need & kFieldDescription) v.description = items_.descriptions[sample.item];
  }
  if (need & kFieldInters) v.inters = history_text(sample.history, false);
  if (need & kFieldInterTitles) v.inter_titles = history_text(sample.history, true);
  if (sample.preferences != nullptr) v.explicit_preference = sample.preferences->texts.at(choice.preference);
  if (sample.intention != nullptr) {
    v.user_related_intention = sample.intention->user_related_intention;
    v.item_related_intention = sample.intention->item_related_intention;
    v.query = choice.query == 0 ? v.user_related_intention : v.item_related_intention;
  }
  RenderedPrompt r = render_prompt(lcrec_templates(sample.task)[choice.template_id], v);
  LcRecExample e;
  e.task = sample.task;
  e.template_id = choice.template_id;
  e.user = sample.user;
  e.target_item = sample.item;
  e.prompt = std::move(r.prompt);
  e.response = std::move(r.response);
  return e;
}

LcRecExample LcRecTaskSet::query_example(const std::vector<int32_t>& history, int64_t template_id) const {
  const LcRecTask task = options_.test_task;
  if (task != LcRecTask::kSeqRec && task != LcRecTask::kFusionSeqRec)
    throw std::invalid_argument(std::string("lcrec: a history alone cannot fill a ") + lcrec_task_name(task) +
                                " prompt (test_task seqrec or fusionseqrec)");
  LcRecSample s = make_sample(task, -1, 0, recent(history.data(), static_cast<int64_t>(history.size()),
                                                  options_.max_his_len));
  s.available |= kFieldItem | kFieldTitle | kFieldDescription;  // the response: what the model writes
  LcRecExample e = render(s, TemplateChoice{template_id, 0, 0});
  e.response.clear();
  return e;
}

int64_t LcRecTaskSet::num_train_examples() const {
  int64_t n = 0;
  for (const LcRecTaskReport& r : reports_) n += r.examples_per_epoch;
  return n;
}

void LcRecTaskSet::for_each_train_example(int64_t epoch, const std::function<void(const LcRecExample&)>& fn) const {
  for (const TaskSamples& ts : train_) {
    for (size_t i = 0; i < ts.samples.size(); ++i) {
      for (int64_t copy = 0; copy < ts.spec.prompt_sample_num; ++copy) {
        const uint64_t seed = derive_seed({uint64_t(options_.seed), kTrainSalt, uint64_t(epoch), uint64_t(ts.spec.task),
                                           uint64_t(i), uint64_t(copy)});
        fn(render(ts.samples[i], draw_choice(ts.samples[i], seed)));
      }
    }
  }
}

std::vector<LcRecExample> LcRecTaskSet::train_examples(int64_t epoch) const {
  std::vector<LcRecExample> out;
  out.reserve(static_cast<size_t>(num_train_examples()));
  for_each_train_example(epoch, [&](const LcRecExample& e) { out.push_back(e); });
  return out;
}

std::vector<LcRecExample> LcRecTaskSet::valid_examples() const {
  std::vector<LcRecExample> out;
  const int64_t num_templates = lcrec_templates(LcRecTask::kSeqRec).size();
  for (const LcRecSample& s : valid_) {
    if (!options_.sample_valid) {
      out.push_back(render(s, TemplateChoice{options_.valid_prompt_id, 0, 0}));
      continue;
    }
    // np.random.choice(range(17), valid_prompt_sample_num, replace=False) per user.
    Rng rng(derive_seed({uint64_t(options_.seed), kValidSalt, uint64_t(s.user)}));
    for (int64_t t : draw_distinct(num_templates, options_.valid_prompt_sample_num, rng))
      out.push_back(render(s, TemplateChoice{t, 0, 0}));
  }
  return out;
}

void LcRecTaskSet::for_each_test_example(const std::function<void(const LcRecExample&)>& fn) const {
  for (int64_t t : options_.test_prompt_ids) {
    for (size_t i = 0; i < test_.size(); ++i) {
      const LcRecSample& s = test_[i];
      if (!usable(s, t)) continue;  // e.g. a fusionseqrec title template for an item without title
      TemplateChoice c = draw_choice(s, derive_seed({uint64_t(options_.seed), kTestSalt, uint64_t(t), uint64_t(i)}));
      c.template_id = t;
      fn(render(s, c));
    }
  }
}

LcRecDataOptions read_lcrec_data_options(config::ConfigNode node) {
  LcRecDataOptions o;
  const std::string p = node.path() + ".";
  std::vector<std::string> names;
  for (const LcRecTaskSpec& s : o.tasks) names.push_back(lcrec_task_name(s.task));
  names = node.get<std::vector<std::string>>("tasks", names);
  if (names.empty()) throw ConfigError(p + "tasks", "must name at least one task");
  std::vector<int64_t> prompt_nums(names.size(), 1), data_nums;
  o.tasks.clear();
  for (size_t k = 0; k < names.size(); ++k) {
    const LcRecTask t = parse_lcrec_task(names[k], p + "tasks[" + std::to_string(k) + "]");
    for (const LcRecTaskSpec& prev : o.tasks)
      if (prev.task == t) throw ConfigError(p + "tasks", std::string("task ") + lcrec_task_name(t) + " is listed twice");
    o.tasks.push_back({t, 1, 0});
    data_nums.push_back(t == LcRecTask::kFusionSeqRec ? 100000 : 0);
  }
  prompt_nums = node.get<std::vector<int64_t>>("train_prompt_sample_num", prompt_nums);
  data_nums = node.get<std::vector<int64_t>>("train_data_sample_num", data_nums);
  if (prompt_nums.size() != names.size())
    throw ConfigError(p + "train_prompt_sample_num", "needs one number per task (" + std::to_string(names.size()) +
                                                         "), got " + std::to_string(prompt_nums.size()));
  if (data_nums.size() != names.size())
    throw ConfigError(p + "train_data_sample_num", "needs one number per task (" + std::to_string(names.size()) +
                                                       "), got " + std::to_string(data_nums.size()));
  for (size_t k = 0; k < names.size(); ++k) {
    if (prompt_nums[k] < 1) throw ConfigError(p + "train_prompt_sample_num[" + std::to_string(k) + "]", "must be >= 1");
    if (data_nums[k] < 0) throw ConfigError(p + "train_data_sample_num[" + std::to_string(k) + "]", "must be >= 0 (0 = all)");
    o.tasks[k].prompt_sample_num = prompt_nums[k];
    o.tasks[k].data_sample_num = data_nums[k];
  }
  o.max_his_len = node.get<int64_t>("max_his_len", o.max_his_len);
  o.his_sep = node.get<std::string>("his_sep", o.his_sep);
  o.add_prefix = node.get<bool>("add_prefix", o.add_prefix);
  o.seed = node.get<int64_t>("seed", o.seed);
  o.sample_valid = node.get<bool>("sample_valid", o.sample_valid);
  o.valid_prompt_sample_num = node.get<int64_t>("valid_prompt_sample_num", o.valid_prompt_sample_num);
  o.valid_prompt_id = node.get<int64_t>("valid_prompt_id", o.valid_prompt_id);
  const int64_t num_seqrec = lcrec_templates(LcRecTask::kSeqRec).size();
  if (o.valid_prompt_sample_num < 1 || o.valid_prompt_sample_num > num_seqrec)
    throw ConfigError(p + "valid_prompt_sample_num", "must be in 1.." + std::to_string(num_seqrec));
  if (o.valid_prompt_id < 0 || o.valid_prompt_id >= num_seqrec)
    throw ConfigError(p + "valid_prompt_id", "must be a seqrec template id 0.." + std::to_string(num_seqrec - 1));
  o.test_task = parse_lcrec_task(node.get<std::string>("test_task", "seqrec"), p + "test_task");
  if (o.test_task != LcRecTask::kSeqRec && o.test_task != LcRecTask::kFusionSeqRec &&
      o.test_task != LcRecTask::kItemSearch)
    throw ConfigError(p + "test_task", "must be seqrec, fusionseqrec or itemsearch (as upstream)");
  o.test_prompt_ids = parse_prompt_ids(node.get<std::string>("test_prompt_ids", "0"), o.test_task,
                                       p + "test_prompt_ids");
  o.test_sample_num = node.get<int64_t>("test_sample_num", o.test_sample_num);
  if (o.test_sample_num < 0) throw ConfigError(p + "test_sample_num", "must be >= 0 (0 = all)");
  return o;
}

}  // namespace seqrec::data
