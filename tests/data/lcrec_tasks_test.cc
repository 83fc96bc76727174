// LC-Rec tuning data: upstream data.py's texts on a fixture (golden), samples per task, history
// cutting, sub-sampling and template draws, skipped tasks, option reading, the file readers and
// the JSONL output.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "seqrec/common/error.h"
#include "seqrec/config/config_node.h"
#include "seqrec/semantic_id/item_index.h"
#include "seqrec/data/lcrec_jsonl.h"
#include "seqrec/data/lcrec_tasks.h"
#include "seqrec/data/lcrec_user_texts.h"
#include "support.h"

namespace {

using namespace seqrec::data;
using nlohmann::json;
using seqrec::testing::TempDir;

InteractionStore make_store(const std::vector<std::vector<int32_t>>& users, int64_t num_items) {
  StoreData d;
  d.num_items = num_items;
  d.user_offsets.push_back(0);
  for (const auto& u : users) {
    d.item_ids.insert(d.item_ids.end(), u.begin(), u.end());
    d.user_offsets.push_back(d.item_ids.size());
  }
  return InteractionStore::from_data(std::move(d));
}

/// Codes "<c_i>", titles "T<i>", descriptions "D<i>" for items 1..n.
LcRecItems make_items(int64_t n) {
  LcRecItems items;
  items.codes.resize(n + 1);
  items.titles.resize(n + 1);
  items.descriptions.resize(n + 1);
  for (int64_t i = 1; i <= n; ++i) {
    items.codes[i] = "<c_" + std::to_string(i) + ">";
    items.titles[i] = "T" + std::to_string(i);
    items.descriptions[i] = "D" + std::to_string(i);
  }
  return items;
}

LcRecDataOptions only(std::vector<LcRecTaskSpec> tasks) {
  LcRecDataOptions o;
  o.tasks = std::move(tasks);
  return o;
}

std::string fixture(const std::string& name) {
  return std::string(SEQREC_SOURCE_DIR) + "/tests/fixtures/lcrec/" + name;
}

json read_json(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("missing " + path);
  return json::parse(in);
}

int64_t parse_id(const std::string& s) { return std::stoll(s); }

// ---- golden: upstream data.py on tests/fixtures/lcrec (tools/lcrec_golden.py) ----

struct Fixture {
  InteractionStore store;
  LcRecItems items;
  LcRecUserTexts users;
};

/// The fixture as seqrec sees it: upstream user "k" = dense user k, upstream item i = dense i + 1.
Fixture load_fixture() {
  const json inter = read_json(fixture("Tiny.inter.json"));
  const json item = read_json(fixture("Tiny.item.json"));
  std::vector<std::vector<int32_t>> users(inter.size());
  for (auto it = inter.begin(); it != inter.end(); ++it)
    for (int v : *it) users[parse_id(it.key())].push_back(v + 1);
  const int64_t n = static_cast<int64_t>(item.size());
  Fixture f{make_store(users, n), {}, {}};
  f.items.codes = seqrec::semantic_id::read_index_json(fixture("Tiny.index.json"), n).item_texts();
  f.items.titles.resize(n + 1);
  f.items.descriptions.resize(n + 1);
  for (auto it = item.begin(); it != item.end(); ++it) {
    const int64_t i = parse_id(it.key()) + 1;
    f.items.titles[i] = clean_title((*it)["title"].get<std::string>());
    f.items.descriptions[i] = (*it)["description"].get<std::string>();
  }
  f.users = read_lcrec_user_texts(
      fixture("Tiny.user.json"), [&](const std::string& u) { return parse_id(u) < int64_t(users.size()) ? parse_id(u) : -1; },
      [&](const std::string& i) { return parse_id(i) < n ? parse_id(i) + 1 : -1; });
  return f;
}

LcRecMode mode_named(const std::string& m) {
  return m == "train" ? LcRecMode::kTrain : m == "valid" ? LcRecMode::kValid : LcRecMode::kTest;
}

TEST(LcRecTasksTest, RendersExactlyWhatUpstreamDataPyRenders) {
  const json golden = read_json(fixture("golden.json"));
  const std::string sft = golden["sft_prompt"].get<std::string>();
  const std::string before = sft.substr(0, sft.find("{instruction}"));
  const std::string after = "\n\n### Response:";
  int64_t checked = 0;
  for (const json& config : golden["configs"]) {
    Fixture f = load_fixture();
    LcRecDataOptions o;
    o.max_his_len = config["max_his_len"].get<int64_t>();
    o.add_prefix = config["add_prefix"].get<bool>();
    o.his_sep = config["his_sep"].get<std::string>();
    const LcRecTaskSet set(f.store, f.items, f.users, o);
    std::map<std::pair<std::string, std::string>, std::vector<LcRecSample>> samples;
    std::map<std::pair<std::string, std::string>, int64_t> upstream_count;
    for (const json& c : config["cases"]) {
      const std::string task = c["task"], mode = c["mode"];
      auto key = std::make_pair(task, mode);
      if (!samples.count(key)) samples[key] = set.samples(parse_lcrec_task(task, ""), mode_named(mode));
      const int64_t i = c["sample"].get<int64_t>();
      upstream_count[key] = std::max(upstream_count[key], i + 1);
      ASSERT_LT(i, int64_t(samples[key].size())) << task << "/" << mode;
      TemplateChoice choice{c["template"].get<int64_t>(), c.value("preference", int64_t(0)), c.value("query", int64_t(0))};
      const LcRecExample e = set.render(samples[key][i], choice);
      EXPECT_EQ(e.prompt, before + c["instruction"].get<std::string>() + after)
          << task << "/" << mode << " sample " << i << " template " << choice.template_id;
      EXPECT_EQ(e.response, c["response"].get<std::string>())
          << task << "/" << mode << " sample " << i << " template " << choice.template_id;
      ++checked;
    }
    // Every upstream sample is one of ours and we have no extra ones.
    for (const auto& [key, n] : upstream_count) EXPECT_EQ(int64_t(samples[key].size()), n) << key.first << "/" << key.second;
  }
  EXPECT_GT(checked, 250);
}

// ---- samples ----

TEST(LcRecTasksTest, SeqRecTrainUsesEveryPrefixOfTheTrainingPart) {
  // User 0: n = 6 -> training part [1 2 3 4] -> targets 2, 3, 4; valid 5; test 6.
  // User 1: n = 2 -> training only (data/split.h), targets items[1].
  const LcRecTaskSet set(make_store({{1, 2, 3, 4, 5, 6}, {7, 8}}, 8), make_items(8), {},
                         only({{LcRecTask::kSeqRec, 1, 0}}));
  const auto train = set.samples(LcRecTask::kSeqRec, LcRecMode::kTrain);
  ASSERT_EQ(train.size(), 4u);
  const std::vector<int32_t> targets = {2, 3, 4, 8};
  const std::vector<int64_t> lengths = {1, 2, 3, 1};
  for (size_t k = 0; k < train.size(); ++k) {
    EXPECT_EQ(train[k].item, targets[k]);
    EXPECT_EQ(train[k].history.size(), lengths[k]);
    EXPECT_EQ(train[k].history[0], k < 3 ? 1 : 7);
  }
  const auto valid = set.samples(LcRecTask::kSeqRec, LcRecMode::kValid);
  ASSERT_EQ(valid.size(), 1u);
  EXPECT_EQ(valid[0].item, 5);
  EXPECT_EQ(valid[0].history.size(), 4);
  const auto test = set.samples(LcRecTask::kSeqRec, LcRecMode::kTest);
  ASSERT_EQ(test.size(), 1u);
  EXPECT_EQ(test[0].item, 6);
  EXPECT_EQ(test[0].history.size(), 5);
  EXPECT_EQ(set.num_train_examples(), 4);
}

TEST(LcRecTasksTest, HistoryKeepsTheMostRecentItemsJoinedAndNumbered) {
  LcRecDataOptions o = only({{LcRecTask::kSeqRec, 1, 0}});
  o.max_his_len = 2;
  o.his_sep = " | ";
  o.add_prefix = true;
  const LcRecTaskSet set(make_store({{1, 2, 3, 4, 5, 6}}, 6), make_items(6), {}, o);
  const auto test = set.samples(LcRecTask::kSeqRec, LcRecMode::kTest);
  const LcRecExample e = set.render(test[0], {0, 0, 0});
  EXPECT_NE(e.prompt.find("interacted with items 1. <c_4> | 2. <c_5> in chronological order."), std::string::npos)
      << e.prompt;
  EXPECT_EQ(e.response, "<c_6>");
  EXPECT_EQ(e.user, 0);
  EXPECT_EQ(e.target_item, 6);

  o.max_his_len = 0;  // no limit
  o.add_prefix = false;
  o.his_sep = ", ";
  const LcRecTaskSet all(make_store({{1, 2, 3, 4, 5, 6}}, 6), make_items(6), {}, o);
  const LcRecExample f = all.render(all.samples(LcRecTask::kSeqRec, LcRecMode::kTest)[0], {0, 0, 0});
  EXPECT_NE(f.prompt.find("items <c_1>, <c_2>, <c_3>, <c_4>, <c_5> in"), std::string::npos) << f.prompt;
}

TEST(LcRecTasksTest, SubsamplingKeepsTheCountInOrderAndFollowsTheSeed) {
  std::vector<std::vector<int32_t>> users;
  for (int u = 0; u < 10; ++u) users.push_back({1, 2, 3, 4, 5, 6, 7, 8});  // 5 fusion samples each
  auto targets = [&](int64_t seed, int64_t keep) {
    LcRecDataOptions o = only({{LcRecTask::kFusionSeqRec, 1, keep}});
    o.seed = seed;
    const LcRecTaskSet set(make_store(users, 8), make_items(8), {}, o);
    EXPECT_EQ(set.reports()[0].candidates, 50);
    std::vector<std::pair<int64_t, int32_t>> out;
    for (const LcRecExample& e : set.train_examples(0)) out.emplace_back(e.user, e.target_item);
    return out;
  };
  const auto a = targets(1, 7), b = targets(1, 7), c = targets(2, 7);
  EXPECT_EQ(a.size(), 7u);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  EXPECT_TRUE(std::is_sorted(a.begin(), a.end()));  // original order: by user, then position
  const std::set<std::pair<int64_t, int32_t>> distinct(a.begin(), a.end());
  EXPECT_EQ(distinct.size(), 7u);
  EXPECT_EQ(targets(1, 0).size(), 50u);   // 0 = all
  EXPECT_EQ(targets(1, 500).size(), 50u); // more than there are: all (logged)
}

TEST(LcRecTasksTest, TemplatesAreDrawnPerEpochFromTheSeedAndCoverAllTemplates) {
  std::vector<std::vector<int32_t>> users;
  for (int u = 0; u < 400; ++u) users.push_back({1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12});  // 9 samples each
  LcRecDataOptions o = only({{LcRecTask::kSeqRec, 2, 0}});
  const LcRecTaskSet set(make_store(users, 12), make_items(12), {}, o);
  const LcRecTaskSet again(make_store(users, 12), make_items(12), {}, o);
  const auto e0 = set.train_examples(0), e1 = set.train_examples(1);
  ASSERT_EQ(e0.size(), 400u * 9 * 2);  // prompt_sample_num 2: each sample twice, each with its own template
  EXPECT_EQ(set.num_train_examples(), int64_t(e0.size()));
  int64_t differ = 0;
  std::vector<int64_t> counts(17, 0);
  for (size_t k = 0; k < e0.size(); ++k) {
    differ += e0[k].template_id != e1[k].template_id;
    ++counts[e0[k].template_id];
    EXPECT_EQ(e0[k].response, e1[k].response);  // same samples, fresh templates
  }
  EXPECT_GT(differ, int64_t(e0.size()) / 2);   // 16/17 expected
  const double expected = double(e0.size()) / 17;
  for (int64_t t = 0; t < 17; ++t) {
    EXPECT_GT(counts[t], 0.8 * expected) << "template " << t;
    EXPECT_LT(counts[t], 1.2 * expected) << "template " << t;
  }
  const auto r0 = again.train_examples(0);
  for (size_t k = 0; k < e0.size(); ++k) ASSERT_EQ(e0[k].prompt, r0[k].prompt);
}

TEST(LcRecTasksTest, ItemTasksDrawOnlyTemplatesTheItemCanFill) {
  LcRecItems items = make_items(3);
  items.descriptions[2] = "";                    // title only
  items.titles[3] = items.descriptions[3] = "";  // nothing to say: unusable
  std::vector<std::vector<int32_t>> users = {{1, 2, 3}};
  const LcRecTaskSet set(make_store(users, 3), items, {},
                         only({{LcRecTask::kItem2Index, 1, 0}, {LcRecTask::kIndex2Item, 1, 0}}));
  ASSERT_EQ(set.reports().size(), 2u);
  for (const LcRecTaskReport& r : set.reports()) {
    EXPECT_EQ(r.candidates, 3);
    EXPECT_EQ(r.unusable, 1);
    EXPECT_EQ(r.samples, 2);
  }
  std::set<int64_t> item1_templates;
  for (int64_t epoch = 0; epoch < 200; ++epoch) {
    for (const LcRecExample& e : set.train_examples(epoch)) {
      ASSERT_NE(e.target_item, 3);
      if (e.target_item == 2) {
        ASSERT_LT(e.template_id, 6) << lcrec_task_name(e.task);  // the title templates
      }
      if (e.target_item == 1 && e.task == LcRecTask::kIndex2Item) item1_templates.insert(e.template_id);
      EXPECT_EQ(e.user, -1);
    }
  }
  EXPECT_EQ(item1_templates.size(), 17u);
}

TEST(LcRecTasksTest, TitleHistoryTemplatesNeedEveryHistoryTitle) {
  LcRecItems items = make_items(4);
  items.titles[1] = "";
  const LcRecTaskSet set(make_store({{1, 2, 3, 4, 4, 4}}, 4), items, {}, only({{LcRecTask::kFusionSeqRec, 1, 0}}));
  const auto samples = set.samples(LcRecTask::kFusionSeqRec, LcRecMode::kTrain);  // histories all start with item 1
  ASSERT_EQ(samples.size(), 3u);
  for (const LcRecSample& s : samples) {
    for (int64_t t = 8; t < 12; ++t) EXPECT_FALSE(set.usable(s, t));
    for (int64_t t = 0; t < 8; ++t) EXPECT_TRUE(set.usable(s, t));
  }
  ASSERT_THROWS_WITH(set.render(samples[0], {8, 0, 0}), "template 8 of fusionseqrec cannot be filled");
  const LcRecExample e = set.render(samples[1], {5, 0, 0});
  EXPECT_EQ(e.response, "D3");
}

TEST(LcRecTasksTest, TasksWithoutUserTextsAreSkippedWithALogLine) {
  ::testing::internal::CaptureStderr();
  const LcRecTaskSet set(make_store({{1, 2, 3, 4, 5}}, 5), make_items(5), {}, LcRecDataOptions{});
  const std::string err = ::testing::internal::GetCapturedStderr();
  ASSERT_EQ(set.reports().size(), 6u);
  for (const LcRecTaskReport& r : set.reports()) {
    const bool user_task = r.task == LcRecTask::kItemSearch || r.task == LcRecTask::kPreferenceObtain;
    EXPECT_EQ(r.skipped, user_task) << lcrec_task_name(r.task);
    if (user_task) {
      EXPECT_EQ(r.reason, "no user preference texts (user.json not given or empty)");
    }
  }
  EXPECT_NE(err.find("lcrec: task itemsearch skipped: no user preference texts"), std::string::npos) << err;
  EXPECT_NE(err.find("lcrec: task preferenceobtain skipped: no user preference texts"), std::string::npos) << err;
  for (const LcRecExample& e : set.train_examples(0))
    EXPECT_TRUE(e.task != LcRecTask::kItemSearch && e.task != LcRecTask::kPreferenceObtain);
}

TEST(LcRecTasksTest, UserTextTasksPairPreferencesWithIntentions) {
  LcRecUserTexts users;
  users.preferences = {{0, {"P0a", "P0b"}}, {2, {"P2"}}};
  users.train_intentions = {{0, 4, {1, 2, 3}, "U0", "I0"}, {1, 5, {1}, "U1", "I1"}};
  LcRecDataOptions o = only({{LcRecTask::kItemSearch, 1, 0}, {LcRecTask::kPreferenceObtain, 1, 0}});
  o.max_his_len = 2;
  const LcRecTaskSet set(make_store({{1, 2, 3, 4, 5, 6}, {1, 5, 6}, {2, 3, 4, 5}}, 6), make_items(6), users, o);
  const auto search = set.samples(LcRecTask::kItemSearch, LcRecMode::kTrain);  // only user 0 has both
  ASSERT_EQ(search.size(), 1u);
  EXPECT_EQ(search[0].item, 4);
  ASSERT_EQ(search[0].history.size(), 2);
  EXPECT_EQ(search[0].history[0], 2);
  const LcRecExample e = set.render(search[0], {3, 1, 1});
  EXPECT_NE(e.prompt.find("query: \"I0\" and his historical interactions: <c_2>, <c_3>, you can estimate the user's "
                          "preferences \"P0b\""),
            std::string::npos)
      << e.prompt;
  EXPECT_EQ(e.response, "<c_4>");
  const auto pref = set.samples(LcRecTask::kPreferenceObtain, LcRecMode::kTrain);  // users 0 and 2: items[:-3]
  ASSERT_EQ(pref.size(), 2u);
  EXPECT_EQ(pref[0].history.size(), 2);  // [1 2 3] cut to the last 2
  EXPECT_EQ(pref[0].history[0], 2);
  EXPECT_EQ(pref[1].history.size(), 1);  // [2]
  const LcRecExample p = set.render(pref[1], {0, 0, 0});
  EXPECT_EQ(p.response, "P2");
  EXPECT_EQ(p.target_item, 0);
  EXPECT_EQ(p.user, 2);
}

TEST(LcRecTasksTest, ValidationDrawsDistinctTemplatesPerUser) {
  std::vector<std::vector<int32_t>> users(30, std::vector<int32_t>{1, 2, 3, 4});
  LcRecDataOptions o = only({{LcRecTask::kSeqRec, 1, 0}});
  const LcRecTaskSet set(make_store(users, 4), make_items(4), {}, o);
  const auto v = set.valid_examples();
  ASSERT_EQ(v.size(), 60u);  // valid_prompt_sample_num 2
  std::set<int64_t> seen;
  for (size_t k = 0; k < v.size(); k += 2) {
    EXPECT_EQ(v[k].user, v[k + 1].user);
    EXPECT_NE(v[k].template_id, v[k + 1].template_id);
    EXPECT_EQ(v[k].target_item, 3);
    EXPECT_EQ(v[k].response, "<c_3>");
    seen.insert(v[k].template_id);
  }
  EXPECT_GT(seen.size(), 5u);
  o.sample_valid = false;
  o.valid_prompt_id = 4;
  const LcRecTaskSet fixed(make_store(users, 4), make_items(4), {}, o);
  const auto w = fixed.valid_examples();
  ASSERT_EQ(w.size(), 30u);
  for (const LcRecExample& e : w) EXPECT_EQ(e.template_id, 4);
}

TEST(LcRecTasksTest, TestExamplesRenderEveryListedTemplateForEveryUser) {
  std::vector<std::vector<int32_t>> users = {{1, 2, 3}, {2, 3, 4, 1}, {1, 2}};  // the last is never tested
  LcRecDataOptions o = only({{LcRecTask::kSeqRec, 1, 0}});
  o.test_prompt_ids = {3, 0};
  const LcRecTaskSet set(make_store(users, 4), make_items(4), {}, o);
  std::vector<std::tuple<int64_t, int64_t, int32_t>> got;
  set.for_each_test_example([&](const LcRecExample& e) { got.emplace_back(e.template_id, e.user, e.target_item); });
  const std::vector<std::tuple<int64_t, int64_t, int32_t>> want = {{3, 0, 3}, {3, 1, 1}, {0, 0, 3}, {0, 1, 1}};
  EXPECT_EQ(got, want);
  o.test_sample_num = 1;
  const LcRecTaskSet one(make_store(users, 4), make_items(4), {}, o);
  int64_t n = 0;
  one.for_each_test_example([&](const LcRecExample&) { ++n; });
  EXPECT_EQ(n, 2);
}

TEST(LcRecTasksTest, QueryExampleRendersTheTestPromptOfAnyHistory) {
  LcRecDataOptions o = only({{LcRecTask::kSeqRec, 1, 0}});
  o.max_his_len = 2;
  const LcRecTaskSet set(make_store({{1, 2, 3}}, 4), make_items(4), {}, o);
  const LcRecExample q = set.query_example({4, 1, 2}, 0);  // the last 2 items are kept
  EXPECT_EQ(q.prompt, alpaca_prompt("The user has interacted with items <c_1>, <c_2> in chronological order. Can you "
                                    "predict the next possible item that the user may expect?"));
  EXPECT_EQ(q.response, "");
  EXPECT_EQ(q.target_item, 0);
  // The same text as the test example of a user with that history.
  std::vector<LcRecExample> tests;
  set.for_each_test_example([&](const LcRecExample& e) { tests.push_back(e); });
  ASSERT_EQ(tests.size(), 1u);
  EXPECT_EQ(set.query_example({1, 2}, 0).prompt, tests[0].prompt);
  ASSERT_THROWS_WITH(set.query_example({1, 2}, 17), "template 17 of seqrec cannot be filled");
}

// ---- options ----

LcRecDataOptions read_options(const std::string& yaml) {
  seqrec::config::ConfigNode root = seqrec::config::ConfigNode::parse(yaml);
  return read_lcrec_data_options(root.child("lcrec"));
}

TEST(LcRecTasksTest, OptionsFollowUpstreamDefaultsAndFormats) {
  const LcRecDataOptions d = read_options("lcrec: {}\n");
  ASSERT_EQ(d.tasks.size(), 6u);
  EXPECT_EQ(d.tasks[3].task, LcRecTask::kFusionSeqRec);
  EXPECT_EQ(d.tasks[3].data_sample_num, 100000);
  EXPECT_EQ(d.tasks[0].data_sample_num, 0);
  EXPECT_EQ(d.max_his_len, 20);
  EXPECT_EQ(d.his_sep, ", ");
  EXPECT_EQ(d.test_prompt_ids, std::vector<int64_t>{0});
  const LcRecDataOptions a = read_options(
      "lcrec:\n  tasks: [SeqRec, fusionseqrec]\n  train_prompt_sample_num: [2, 1]\n  train_data_sample_num: [0, 30000]\n"
      "  test_prompt_ids: all\n");
  ASSERT_EQ(a.tasks.size(), 2u);
  EXPECT_EQ(a.tasks[0].prompt_sample_num, 2);
  EXPECT_EQ(a.tasks[1].data_sample_num, 30000);
  EXPECT_EQ(a.test_prompt_ids.size(), 17u);
  EXPECT_EQ(read_options("lcrec:\n  test_prompt_ids: \"0,3,16\"\n").test_prompt_ids, (std::vector<int64_t>{0, 3, 16}));
  EXPECT_EQ(read_options("lcrec:\n  test_task: itemsearch\n  test_prompt_ids: all\n").test_prompt_ids.size(), 11u);
}

TEST(LcRecTasksTest, BadOptionsNameTheKey) {
  ASSERT_THROWS_WITH(read_options("lcrec:\n  tasks: [seqrec, bogus]\n"), "lcrec.tasks[1]: unknown LC-Rec task 'bogus'");
  ASSERT_THROWS_WITH(read_options("lcrec:\n  tasks: [seqrec, seqrec]\n"), "lcrec.tasks: task seqrec is listed twice");
  ASSERT_THROWS_WITH(read_options("lcrec:\n  tasks: [seqrec, index2item]\n  train_prompt_sample_num: [1]\n"),
                     "lcrec.train_prompt_sample_num: needs one number per task (2), got 1");
  ASSERT_THROWS_WITH(read_options("lcrec:\n  tasks: [seqrec]\n  train_data_sample_num: [-1]\n"),
                     "lcrec.train_data_sample_num[0]: must be >= 0");
  ASSERT_THROWS_WITH(read_options("lcrec:\n  test_prompt_ids: \"0,17\"\n"),
                     "lcrec.test_prompt_ids: expected 'all' or comma-separated template ids 0..16, got '0,17'");
  ASSERT_THROWS_WITH(read_options("lcrec:\n  test_prompt_ids: \"1,x\"\n"), "lcrec.test_prompt_ids");
  ASSERT_THROWS_WITH(read_options("lcrec:\n  test_task: index2item\n"), "lcrec.test_task: must be seqrec, fusionseqrec");
  ASSERT_THROWS_WITH(read_options("lcrec:\n  valid_prompt_id: 17\n"), "lcrec.valid_prompt_id: must be a seqrec template");
  ASSERT_THROWS_WITH(read_options("lcrec:\n  valid_prompt_sample_num: 0\n"), "lcrec.valid_prompt_sample_num");
}

// ---- readers ----

TEST(LcRecTasksTest, UserTextsReaderMapsIdsAndNamesBadEntries) {
  TempDir dir;
  auto users = [](const std::string& raw) -> int64_t { return raw == "u1" ? 0 : raw == "u2" ? 1 : -1; };
  auto items = [](const std::string& raw) -> int64_t { return raw == "9" ? 1 : raw == "7" ? 2 : -1; };
  const std::string good = dir.write(
      "good.json",
      R"({"user_explicit_preference": {"u2": ["b"], "u1": ["a1", "a2"]},
          "user_vague_intention": {"train": {"u1": {"item": 9, "inters": ["7", 9], "querys": ["q1", "q2"]}}}})");
  const LcRecUserTexts t = read_lcrec_user_texts(good, users, items);
  ASSERT_EQ(t.preferences.size(), 2u);
  EXPECT_EQ(t.preferences[0].user, 0);  // sorted by dense user
  EXPECT_EQ(t.preferences[0].texts, (std::vector<std::string>{"a1", "a2"}));
  ASSERT_EQ(t.train_intentions.size(), 1u);
  EXPECT_EQ(t.train_intentions[0].item, 1);
  EXPECT_EQ(t.train_intentions[0].history, (std::vector<int32_t>{2, 1}));
  EXPECT_EQ(t.train_intentions[0].item_related_intention, "q2");
  EXPECT_TRUE(t.test_intentions.empty());

  const std::string bad_item = dir.write(
      "bad_item.json", R"({"user_vague_intention": {"train": {"u1": {"item": 8, "inters": [], "querys": ["a", "b"]}}}})");
  ASSERT_THROWS_WITH(read_lcrec_user_texts(bad_item, users, items),
                     bad_item + ": user_vague_intention.train.\"u1\".item: unknown item id '8'");
  const std::string bad_user = dir.write("bad_user.json", R"({"user_explicit_preference": {"u3": ["x"]}})");
  ASSERT_THROWS_WITH(read_lcrec_user_texts(bad_user, users, items),
                     bad_user + ": user_explicit_preference.\"u3\": unknown user id 'u3'");
  const std::string bad_querys = dir.write(
      "bad_q.json", R"({"user_vague_intention": {"test": {"u1": {"item": 9, "inters": [], "querys": ["a"]}}}})");
  ASSERT_THROWS_WITH(read_lcrec_user_texts(bad_querys, users, items),
                     "user_vague_intention.test.\"u1\".querys: expected [user-related intention, item-related");
  const std::string empty_prefs = dir.write("empty.json", R"({"user_explicit_preference": {"u1": []}})");
  ASSERT_THROWS_WITH(read_lcrec_user_texts(empty_prefs, users, items), "expected a non-empty list of preference texts");
  const std::string broken = dir.write("broken.json", "{\"user_explicit_preference\": ");
  ASSERT_THROWS_WITH(read_lcrec_user_texts(broken, users, items), broken + ": not valid JSON");
  // nlohmann throws out_of_range (not parse_error) for a number past a double's range.
  const std::string overflow = dir.write("overflow.json", R"({"user_vague_intention": {"train": 1e9999}})");
  ASSERT_THROWS_WITH(read_lcrec_user_texts(overflow, users, items), overflow + ": not valid JSON");
}

// ---- JSONL ----

TEST(LcRecTasksTest, ExampleLinesCarryPromptResponseAndIds) {
  LcRecExample e;
  e.task = LcRecTask::kIndex2Item;
  e.template_id = 12;
  e.prompt = "P \"quoted\"\n### Response:";
  e.response = "T\n\nD \xff";  // invalid UTF-8 is replaced, not fatal
  e.target_item = 7;
  const json j = json::parse(lcrec_example_json(e));
  EXPECT_EQ(j["prompt"], "P \"quoted\"\n### Response:");
  EXPECT_EQ(j["response"], "T\n\nD \xef\xbf\xbd");
  EXPECT_EQ(j["task"], "index2item");
  EXPECT_EQ(j["template"], 12);
  EXPECT_TRUE(j["user"].is_null());
  EXPECT_EQ(j["target_item"], 7);
  EXPECT_EQ(lcrec_train_file(0), "train.jsonl");
  EXPECT_EQ(lcrec_train_file(2), "train_epoch2.jsonl");
}

TEST(LcRecTasksTest, WritesFilesOnlyIntoItsOwnFolder) {
  TempDir dir;
  const LcRecTaskSet set(make_store({{1, 2, 3, 4, 5}, {2, 3, 4}}, 5), make_items(5), {},
                         only({{LcRecTask::kSeqRec, 1, 0}, {LcRecTask::kIndex2Item, 1, 0}}));
  LcRecOutputOptions out{dir.file("out"), 3, "lcrec: {}\n"};
  auto files = write_lcrec_data(set, out);
  std::map<std::string, int64_t> lines;
  for (const auto& f : files) lines[f.name] = f.lines;
  EXPECT_EQ(lines["train.jsonl"], 2 + 5);  // seqrec prefixes (2 + 0) + 5 items
  EXPECT_EQ(lines["train_epoch2.jsonl"], 7);
  EXPECT_EQ(lines["valid.jsonl"], 4);      // 2 users x 2 templates
  EXPECT_EQ(lines["test.jsonl"], 2);
  EXPECT_TRUE(std::filesystem::exists(dir.file("out/config.yaml")));
  const json marker = read_json(dir.file("out/lcrec_data.json"));
  EXPECT_EQ(marker["tasks"][1]["task"], "index2item");
  std::ifstream train(dir.file("out/train.jsonl"));
  std::string first;
  std::getline(train, first);
  EXPECT_EQ(json::parse(first)["task"], "seqrec");

  out.epochs = 1;  // a rerun into its own folder: the epoch files it no longer writes are removed
  write_lcrec_data(set, out);
  EXPECT_TRUE(std::filesystem::exists(dir.file("out/train.jsonl")));
  EXPECT_FALSE(std::filesystem::exists(dir.file("out/train_epoch1.jsonl")));
  EXPECT_FALSE(std::filesystem::exists(dir.file("out/train_epoch2.jsonl")));

  std::filesystem::create_directories(dir.file("foreign"));
  dir.write("foreign/notes.txt", "mine");
  ASSERT_THROWS_WITH(write_lcrec_data(set, LcRecOutputOptions{dir.file("foreign"), 1, ""}),
                     "has no lcrec_data.json (not written by seqrec lcrec-data); refusing to write into it");
  EXPECT_FALSE(std::filesystem::exists(dir.file("foreign/train.jsonl")));
}

}  // namespace
