// Molar's pre-training mixtures: the texts of both tasks by hand, held-out items never shown,
// sampling without replacement and by seed, column and task errors, the JSONL file and its
// refusal to replace a file seqrec did not write.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "seqrec/common/error.h"
#include "seqrec/data/item_catalog.h"
#include "seqrec/data/molar_tasks.h"
#include "data/store_support.h"
#include "support.h"

namespace {

using namespace seqrec::data;
using seqrec::data::testing::make_store;
using seqrec::testing::TempDir;

// Items 1..5: titles "T<i>", tags for 1-3, descriptions for all but 4 (item 5 has no attribute).
ItemCatalog make_catalog(const TempDir& dir) {
  dir.write("items.tsv",
            "item_id\traw_id\ttitle\ttag\tdescription\n"
            "1\ta\tT1\tred\tD one\n"
            "2\tb\tT2\tblue\tD two\n"
            "3\tc\tT3\tred\tD three\n"
            "4\td\tT4\t\t\n"
            "5\te\t\t\tD five\n");
  return ItemCatalog::load(dir.path());
}

MolarTaskOptions only(MolarTask task) {
  MolarTaskOptions o;
  o.tasks = {task};
  return o;
}

TEST(MolarTasks, AttributesToDescriptionByHand) {
  TempDir dir;
  const ItemCatalog catalog = make_catalog(dir);
  auto ex = molar_pretraining_examples(make_store({{1, 2, 3}}, 5), catalog, only(MolarTask::kAttributesToDescription));
  // Item 4 has no description, item 5 no attribute: items 1-3, in id order (all are taken).
  ASSERT_EQ(ex.size(), 3u);
  EXPECT_EQ(ex[1].item, 2);
  EXPECT_EQ(ex[1].prompt, "Below are the attributes of an item. Write the item's description.\n"
                          "title: T2\ntag: blue\nDescription: ");
  EXPECT_EQ(ex[1].response, "D two");
  EXPECT_EQ(ex[1].user, -1);
  EXPECT_EQ(molar_example_json(ex[1]),
            R"({"item":2,"prompt":"Below are the attributes of an item. Write the item's description.\ntitle: T2\ntag: blue\nDescription: ","response":"D two","task":"attributes_to_description","user":null})");
}

TEST(MolarTasks, BehaviourToNextItemShowsTrainingItemsOnly) {
  TempDir dir;
  const ItemCatalog catalog = make_catalog(dir);
  MolarTaskOptions o = only(MolarTask::kBehaviourToNextItem);
  o.max_history = 2;
  // User 0: 1 2 3 4 | 5 1 held out (valid, test) -> targets 2, 3, 4 at positions 1..3. User 1: two
  // events (no hold-out below 3) -> target 4 after 3. User 2: one event, nothing.
  auto ex = molar_pretraining_examples(make_store({{1, 2, 3, 4, 5, 1}, {3, 4}, {2}}, 5), catalog, o);
  ASSERT_EQ(ex.size(), 4u);
  std::vector<std::string> prompts, responses;
  for (const auto& e : ex) {
    prompts.push_back(e.prompt.substr(std::string(kBehaviourPrompt).size()));
    responses.push_back(e.response);
  }
  const std::string tail = ".\nThe next item the user interacts with: ";
  EXPECT_EQ(prompts, (std::vector<std::string>{"T1" + tail, "T1, T2" + tail, "T2, T3" + tail, "T3" + tail}));
  EXPECT_EQ(responses, (std::vector<std::string>{"T2", "T3", "T4", "T4"}));
  EXPECT_EQ(ex[3].user, 1);
  EXPECT_EQ(ex[3].item, 4);
  // An item without a title is named by its raw id.
  auto untitled = molar_pretraining_examples(make_store({{5, 1}}, 5), catalog, o);
  ASSERT_EQ(untitled.size(), 1u);
  EXPECT_EQ(untitled[0].prompt, std::string(kBehaviourPrompt) + "e" + tail);
}

TEST(MolarTasks, SamplingIsWithoutReplacementAndFollowsTheSeed) {
  TempDir dir;
  const ItemCatalog catalog = make_catalog(dir);
  std::vector<std::vector<int32_t>> users;
  for (int u = 0; u < 40; ++u) users.push_back({1, 2, 3, 4, 5, 1, 2, 3});  // 5 training pairs each: 200
  const InteractionStore store = make_store(users, 5);
  MolarTaskOptions o = only(MolarTask::kBehaviourToNextItem);
  auto key = [](const std::vector<MolarExample>& ex) {
    std::set<std::pair<int64_t, std::string>> s;
    for (const auto& e : ex) s.insert({e.user, e.prompt});
    return s;
  };
  for (int64_t k : {30, 150}) {  // the sparse and the dense sampler
    o.examples_per_task = k;
    auto a = molar_pretraining_examples(store, catalog, o);
    ASSERT_EQ(a.size(), static_cast<size_t>(k));
    EXPECT_EQ(key(a).size(), static_cast<size_t>(k)) << "a pair drawn twice";
    EXPECT_EQ(key(molar_pretraining_examples(store, catalog, o)), key(a));
    o.seed = 7;
    EXPECT_NE(key(molar_pretraining_examples(store, catalog, o)), key(a));
    o.seed = 42;
  }
  o.examples_per_task = 1000;  // more than there are: all 200
  EXPECT_EQ(molar_pretraining_examples(store, catalog, o).size(), 200u);
}

TEST(MolarTasks, ErrorsNameTheField) {
  TempDir dir;
  const ItemCatalog catalog = make_catalog(dir);
  const InteractionStore store = make_store({{1, 2, 3}}, 5);
  MolarTaskOptions o;
  o.attribute_fields = {"title", "brand"};
  ASSERT_THROWS_WITH(molar_pretraining_examples(store, catalog, o),
                     "molar_data.attribute_fields: 'brand' is not a column of the item table (columns: title, tag, description)");
  o = only(MolarTask::kBehaviourToNextItem);
  o.title_field = "name";
  ASSERT_THROWS_WITH(molar_pretraining_examples(store, catalog, o), "molar_data.title_field: 'name'");
  ASSERT_THROWS_WITH(parse_molar_task("image_to_text", "molar_data.tasks"),
                     "molar_data.tasks: image_to_text needs image soft tokens in seqrec finetune");
  ASSERT_THROWS_WITH(parse_molar_task("captions", "molar_data.tasks"), "'captions' is not one of");
  EXPECT_EQ(parse_molar_task("behaviour_to_next_item", "x"), MolarTask::kBehaviourToNextItem);
  ASSERT_THROWS_WITH(molar_pretraining_examples(make_store({{1, 2, 3}}, 6), catalog, MolarTaskOptions{}),
                     "the item table has 5 items, the store 6");
}

TEST(MolarTasks, FileIsJsonlAndReplacesOnlyItsOwn) {
  TempDir dir;
  const ItemCatalog catalog = make_catalog(dir);
  auto ex = molar_pretraining_examples(make_store({{1, 2, 3, 4, 5}}, 5), catalog, MolarTaskOptions{});
  const std::string path = dir.file("molar.jsonl");
  write_molar_data(path, ex);
  std::ifstream in(path);
  std::string line;
  size_t lines = 0;
  while (std::getline(in, line)) {
    auto j = nlohmann::json::parse(line);
    EXPECT_TRUE(j.contains("prompt") && j.contains("response")) << line;
    ++lines;
  }
  EXPECT_EQ(lines, ex.size());
  write_molar_data(path, ex);  // its own file: replaced
  const std::string foreign = dir.write("notes.jsonl", "{\"prompt\": \"mine\", \"response\": \"keep\"}\n");
  ASSERT_THROWS_WITH(write_molar_data(foreign, ex), "notes.jsonl: exists and was not written by seqrec molar-data");
  std::ifstream kept(foreign);
  std::getline(kept, line);
  EXPECT_EQ(line, "{\"prompt\": \"mine\", \"response\": \"keep\"}");
}

}  // namespace
