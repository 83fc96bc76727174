// `seqrec lcrec-data` end to end: prepare a tiny store with titles and descriptions, write an
// index.json and a user.json over its raw ids, generate the JSONL files and check them.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <map>
#include <string>

#include "cli/cli_support.h"
#include "support.h"

namespace {

using nlohmann::json;
using seqrec::testing::TempDir;
using namespace seqrec::testing::cli;

class LcRecDataCli : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_.write("seqs.txt", "u1 101 102 103 104 105\nu2 103 104 105 106 101 102\nu3 106 105 104\nu4 102 101\n");
    dir_.write("items.tsv",
               "item_id\ttitle\tdescription\n101\tPicks, 12 pack.\tMedium picks\n102\t Strings!\tNickel wound\n"
               "103\tTuner\tChromatic\n104\tUkulele\tSoprano\n105\tMic\tDynamic\n106\tCapo\t\n");
    // One file for both commands: prepare ignores lcrec:, lcrec-data ignores prepare:.
    dir_.write("lcrec.yaml", "prepare:\n  input: " + t("seqs.txt") + "\n  format: user_sequences\n  items: " +
                                 t("items.tsv") + "\n  items_format: table\n  items_sep: \"\\t\"\n  output: " +
                                 t("data") + "\ndata:\n  dir: " + t("data") + "\n  max_seq_len: 50\nlcrec:\n  index: " +
                                 t("index.json") + "\n  user_texts: " + t("user.json") + "\n  out_dir: " + t("out") +
                                 "\n  test_prompt_ids: all\n  seed: 3\n");
    Result prep = run_seqrec("prepare --config " + t("lcrec.yaml"), dir_);
    ASSERT_EQ(prep.code, 0) << prep.err;
    // Dense ids as prepare assigned them.
    for (const auto& line : lines_of(slurp(t("data/items.tsv")))) {
      auto f = split_tabs(line);
      if (f[0] == "item_id") continue;
      dense_item_[f[1]] = std::stoll(f[0]);
    }
    for (const auto& line : lines_of(slurp(t("data/users.tsv")))) {
      auto f = split_tabs(line);
      dense_user_[f[1]] = std::stoll(f[0]);
    }
    ASSERT_EQ(dense_item_.size(), 6u);
    json index;
    for (const auto& [raw, dense] : dense_item_)
      index[std::to_string(dense - 1)] = {"<a_" + raw + ">", "<b_" + std::to_string(dense) + ">"};
    dir_.write("index.json", index.dump());
    dir_.write("user.json", R"({"user_explicit_preference": {"u1": ["likes picks", "short: strings"], "u2": ["pedals"]},
        "user_vague_intention": {"train": {
          "u1": {"item": 103, "inters": [101, 102], "querys": ["a tuner", "chromatic"]},
          "u2": {"item": 106, "inters": [103, 104, 105], "querys": ["a capo", "small"]}}}})");
  }

  std::string t(const std::string& name) const { return dir_.file(name); }
  std::string code(const std::string& raw) const { return "<a_" + raw + "><b_" + std::to_string(dense_item_.at(raw)) + ">"; }

  static std::vector<json> read_lines(const std::string& path) {
    std::vector<json> out;
    for (const auto& line : lines_of(slurp(path))) out.push_back(json::parse(line));
    return out;
  }

  TempDir dir_;
  std::map<std::string, int64_t> dense_item_, dense_user_;
};

TEST_F(LcRecDataCli, WritesTrainValidAndTestJsonl) {
  Result r = run_seqrec("lcrec-data --config " + t("lcrec.yaml"), dir_);
  ASSERT_EQ(r.code, 0) << r.err;
  const json summary = last_json(r.out);
  // seqrec: prefixes of the training parts (2 + 3 + 0 + 1, u4 has 2 items: training only); items: 6
  // each; fusionseqrec: the seqrec samples; itemsearch and preferenceobtain: u1 and u2.
  EXPECT_EQ(summary["files"]["train.jsonl"], 6 + 6 + 6 + 6 + 2 + 2) << r.out;
  EXPECT_EQ(summary["files"]["valid.jsonl"], 3 * 2);
  EXPECT_EQ(summary["files"]["test.jsonl"], 3 * 17);
  EXPECT_TRUE(summary["skipped_tasks"].empty());

  std::map<std::string, int64_t> per_task;
  for (const json& e : read_lines(t("out/train.jsonl"))) {
    ++per_task[e["task"].get<std::string>()];
    const std::string prompt = e["prompt"];
    ASSERT_GE(prompt.size(), 13u);
    EXPECT_EQ(prompt.substr(prompt.size() - 13), "### Response:");
    EXPECT_FALSE(e["response"].get<std::string>().empty());
    if (e["task"] == "seqrec" || e["task"] == "item2index") {
      const int64_t item = e["target_item"];
      for (const auto& [raw, dense] : dense_item_)
        if (dense == item) {
          EXPECT_EQ(e["response"], code(raw));
        }
    }
    if (e["task"] == "item2index" || e["task"] == "index2item") {
      EXPECT_TRUE(e["user"].is_null());
    }
  }
  const std::map<std::string, int64_t> want = {{"seqrec", 6},     {"item2index", 6}, {"index2item", 6},
                                               {"fusionseqrec", 6}, {"itemsearch", 2}, {"preferenceobtain", 2}};
  EXPECT_EQ(per_task, want);

  // Test prompts: template 0 first, users in dense order; u1's history is its first four items.
  const auto test = read_lines(t("out/test.jsonl"));
  bool found = false;
  for (const json& e : test) {
    if (e["template"] != 0 || e["user"] != dense_user_["u1"]) continue;
    found = true;
    EXPECT_EQ(e["prompt"].get<std::string>(),
              "Below is an instruction that describes a task. Write a response that appropriately completes the "
              "request.\n\n### Instruction:\nThe user has interacted with items " +
                  code("101") + ", " + code("102") + ", " + code("103") + ", " + code("104") +
                  " in chronological order. Can you predict the next possible item that the user may expect?"
                  "\n\n### Response:");
    EXPECT_EQ(e["response"], code("105"));
    EXPECT_EQ(e["target_item"], dense_item_["105"]);
  }
  EXPECT_TRUE(found);
  for (size_t k = 1; k < test.size(); ++k) EXPECT_LE(test[k - 1]["template"], test[k]["template"]);

  // The resolved config and the marker are written next to the data.
  EXPECT_NE(slurp(t("out/config.yaml")).find("test_prompt_ids: all"), std::string::npos);
  EXPECT_EQ(json::parse(slurp(t("out/lcrec_data.json")))["written_by"], "seqrec lcrec-data");

  // Same config, same files.
  const std::string before = slurp(t("out/train.jsonl"));
  ASSERT_EQ(run_seqrec("lcrec-data --config " + t("lcrec.yaml"), dir_).code, 0);
  EXPECT_EQ(slurp(t("out/train.jsonl")), before);
}

TEST_F(LcRecDataCli, WithoutUserTextsSkipsTheirTasksAndWritesEpochFiles) {
  Result r = run_seqrec("lcrec-data --config " + t("lcrec.yaml") + " --set lcrec.user_texts= --set lcrec.epochs=2", dir_);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("lcrec: task itemsearch skipped: no user preference texts"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("lcrec: task preferenceobtain skipped"), std::string::npos) << r.err;
  const json summary = last_json(r.out);
  EXPECT_EQ(summary["skipped_tasks"], json({"itemsearch", "preferenceobtain"}));
  EXPECT_EQ(summary["files"]["train.jsonl"], 24);
  EXPECT_EQ(summary["files"]["train_epoch1.jsonl"], 24);
  const auto e0 = read_lines(t("out/train.jsonl")), e1 = read_lines(t("out/train_epoch1.jsonl"));
  int64_t differ = 0;
  for (size_t k = 0; k < e0.size(); ++k) {
    EXPECT_EQ(e0[k]["target_item"], e1[k]["target_item"]);  // same samples; the response follows the template
    EXPECT_EQ(e0[k]["task"], e1[k]["task"]);
    differ += e0[k]["template"] != e1[k]["template"];
  }
  EXPECT_GT(differ, 0);  // templates are drawn afresh per epoch
}

TEST_F(LcRecDataCli, BadInputsFailWithTheirNames) {
  json index = json::parse(slurp(t("index.json")));
  index.erase("3");
  dir_.write("index_bad.json", index.dump());
  Result r = run_seqrec("lcrec-data --config " + t("lcrec.yaml") + " --set lcrec.index=" + t("index_bad.json"), dir_);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("DataError: " + t("index_bad.json") + ": has 5 items, the prepared data has 6 (rows 0..5); no code for item row 3 (dense item 4)"), std::string::npos)
      << r.err;

  r = run_seqrec("lcrec-data --config " + t("lcrec.yaml") + " --set lcrec.max_his_lenn=3", dir_);
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("lcrec.max_his_lenn: unknown key (did you mean 'max_his_len'?)"), std::string::npos) << r.err;

  std::filesystem::create_directories(t("mine"));
  dir_.write("mine/keep.txt", "not seqrec's");
  r = run_seqrec("lcrec-data --config " + t("lcrec.yaml") + " --out " + t("mine"), dir_);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("refusing to write into it"), std::string::npos) << r.err;
  EXPECT_EQ(slurp(t("mine/keep.txt")), "not seqrec's");
  EXPECT_FALSE(std::filesystem::exists(t("mine/train.jsonl")));

  dir_.write("user_bad.json", R"({"user_explicit_preference": {"u9": ["x"]}})");
  r = run_seqrec("lcrec-data --config " + t("lcrec.yaml") + " --set lcrec.user_texts=" + t("user_bad.json"), dir_);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find(t("user_bad.json") + ": user_explicit_preference.\"u9\": unknown user id 'u9'"), std::string::npos)
      << r.err;
}

// The whole LC-Rec chain from the CLI: lcrec-data -> finetune (stories260K + the code tokens) ->
// eval --checkpoint <the exported folder> under the generative protocol.
TEST_F(LcRecDataCli, TunedModelEvaluatesGenerativelyFromTheCli) {
  const std::string stories = SEQREC_SOURCE_DIR "/../shared/models/stories260K/hf";
  if (!std::filesystem::exists(stories + "/config.json")) GTEST_SKIP() << "no " << stories;
  Result r = run_seqrec("lcrec-data --config " + t("lcrec.yaml"), dir_);
  ASSERT_EQ(r.code, 0) << r.err;
  r = run_seqrec("finetune --config " + t("lcrec.yaml") + " --set finetune.model=" + stories +
                     " --set finetune.train_file=" + t("out/train.jsonl") + " --set finetune.valid_file=" +
                     t("out/valid.jsonl") + " --set finetune.index_file=" + t("index.json") +
                     " --set finetune.out_dir=" + t("model") +
                     " --set finetune.epochs=2 --set finetune.batch_size=8 --set finetune.lr=5.0e-3"
                     " --set finetune.max_length=512 --set finetune.threads=1",
                 dir_);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(last_json(r.out)["added_tokens"], 12);  // <a_101>..<a_106>, <b_1>..<b_6>

  // The config comes from the folder (seqrec_finetune.yaml); the protocol defaults to generative.
  r = run_seqrec("eval --checkpoint " + t("model") + " --split test", dir_);
  ASSERT_EQ(r.code, 0) << r.err;
  json m = last_json(r.out);
  EXPECT_EQ(m["protocol"], "generative");
  EXPECT_EQ(m["users"], 3 * 17);  // every test prompt of every template (test_prompt_ids: all)
  // 20 beams, 6 items: under the trie every item comes back, so the target is always in the top 10.
  EXPECT_DOUBLE_EQ(m["hr@10"].get<double>(), 1.0);
  EXPECT_DOUBLE_EQ(m["non_item_share"].get<double>(), 0.0);
  EXPECT_LE(m["ndcg@5_min"].get<double>(), m["ndcg@5"].get<double>());
  EXPECT_GE(m["ndcg@5_max"].get<double>(), m["ndcg@5"].get<double>());
  EXPECT_EQ(lines_of(slurp(t("eval.jsonl"))).size(), 1u);
  // --split valid: lcrec-data's validation prompts (seqrec, target items[-2], 2 templates per user).
  r = run_seqrec("eval --checkpoint " + t("model") + " --split valid", dir_);
  ASSERT_EQ(r.code, 0) << r.err;
  m = last_json(r.out);
  EXPECT_EQ(m["split"], "valid");
  EXPECT_EQ(m["users"], 3 * 2);
  EXPECT_DOUBLE_EQ(m["hr@10"].get<double>(), 1.0);
  // The per-level whitelist allows 6 x 6 pairs for 6 items: at least 14 of the 20 beams are no item.
  r = run_seqrec("eval --checkpoint " + t("model") + " --set eval.constraint=whitelist --set eval.max_users=2", dir_);
  ASSERT_EQ(r.code, 0) << r.err;
  m = last_json(r.out);
  EXPECT_EQ(m["users"], 2 * 17);
  EXPECT_GE(m["non_item_share"].get<double>(), 14.0 / 20);
  // recommend: the first k beams of the test prompt over the user's history (or a given one).
  r = run_seqrec("recommend --checkpoint " + t("model") + " --user u1 --k 3", dir_);
  ASSERT_EQ(r.code, 0) << r.err;
  std::vector<std::string> rows = lines_of(r.out);
  ASSERT_EQ(rows.size(), 4u) << r.out;
  EXPECT_EQ(rows[0], "rank\titem_id\tscore\ttitle");
  for (size_t i = 1; i < rows.size(); ++i) EXPECT_EQ(dense_item_.count(split_tabs(rows[i])[1]), 1u) << rows[i];
  r = run_seqrec("recommend --checkpoint " + t("model") + " --history '101, 102' --k 6", dir_);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(lines_of(r.out).size(), 7u) << r.out;  // all 6 items
  r = run_seqrec("recommend --checkpoint " + t("model") + " --history '101 999'", dir_);
  EXPECT_NE(r.err.find("--history: unknown item id '999'"), std::string::npos) << r.err;
  // A ranking protocol for a generative model is refused, and so is a folder without its config.
  r = run_seqrec("eval --checkpoint " + t("model") + " --set eval.protocol=full", dir_);
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("eval.protocol: 'full': " + t("model") + " is a generative model (LC-Rec)"), std::string::npos)
      << r.err;
  r = run_seqrec("eval --checkpoint " + t("data"), dir_);
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find(t("data") + " is a folder without seqrec_finetune.yaml"), std::string::npos) << r.err;
}

}  // namespace
