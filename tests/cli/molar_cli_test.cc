// Molar end to end from the CLI: synth renders item pictures, prepare tokenises the titles, an ID
// model (SASRec) is trained, Molar trains on text + pictures (a scratch vision tower) with
// post-alignment to the frozen SASRec, and eval of its checkpoint reproduces the test line; the
// same with a Qwen2-VL tower read from a Hugging Face folder. A missing picture stops training with
// the item named.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cli/cli_support.h"
#include "llm/tokenizer_fixtures.h"
#include "support.h"

namespace {

using seqrec::testing::TempDir;
using namespace seqrec::testing::cli;

TEST(MolarCli, PicturesAndPostAlignmentTrainAndEvalReproduces) {
  TempDir dir;
  auto t = [&](const std::string& name) { return dir.file(name); };
  std::filesystem::create_directories(t("tok"));
  dir.write("tok/tokenizer.json", seqrec::testing::tiny_byte_level().dump());
  const std::string common =
      "synth:\n  num_users: 120\n  num_items: 40\n  num_clusters: 4\n  max_seq_len: 20\n  image_size: 16\n  seed: 5\n  output: " + t("raw") + "\n"
      "prepare:\n  input: " + t("raw/interactions.csv") + "\n  format: csv\n  items: " + t("raw/items.csv") +
      "\n  items_format: table\n  output: " + t("data") + "\n"
      "  item_text: {tokenizer: " + t("tok") + ", text_keys: [title], max_text_length: 16, prompt: ''}\n"
      "data:\n  dir: " + t("data") + "\n  max_seq_len: 8\n"
      "eval:\n  protocol: full\n  history_mask: full\n  ks: [5, 10]\n";
  dir.write("sasrec.yaml", common +
            "model: {name: sasrec, hidden_dim: 16, num_blocks: 1, num_heads: 1, dropout: 0.1}\n"
            "train:\n  out_dir: " + t("sasrec") + "\n  epochs: 1\n  batch_size: 32\n  threads: 1\n  log_every: 1000\n"
            "  metric: ndcg@10\n");
  dir.write("molar.yaml", common +
            "model:\n  name: molar\n  inputs: both\n"
            "  item_llm: {config: {vocab_size: 263, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 1, "
            "num_attention_heads: 4}}\n"
            "  user_llm: {config: {vocab_size: 1, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 1, "
            "num_attention_heads: 4}}\n"
            "  image:\n    folder: " + t("raw/images") + "\n"
            "    vision: {config: {hidden_size: 16, intermediate_size: 32, num_hidden_layers: 1, "
            "num_attention_heads: 2, image_size: 16, patch_size: 8}}\n"
            "  post_alignment: {id_checkpoint: " + t("sasrec/best.safetensors") + ", alpha: 0.1, tau: 0.07, id_dim: 16}\n"
            "train:\n  out_dir: " + t("molar") + "\n  epochs: 1\n  batch_size: 32\n  lr: 0.003\n  threads: 1\n"
            "  log_every: 1000\n  metric: ndcg@10\n  loss: {name: bce}\n");
  const std::string cfg = "--config " + t("molar.yaml");
  Result synth = run_seqrec("synth " + cfg, dir);
  ASSERT_EQ(synth.code, 0) << synth.err;
  ASSERT_TRUE(std::filesystem::exists(t("raw/images/i40.png")));
  ASSERT_EQ(run_seqrec("prepare " + cfg, dir).code, 0);
  Result id = run_seqrec("train --config " + t("sasrec.yaml"), dir);
  ASSERT_EQ(id.code, 0) << id.err;
  Result train = run_seqrec("train " + cfg, dir);
  ASSERT_EQ(train.code, 0) << train.err;
  EXPECT_NE(train.err.find("post-alignment with the frozen ID model"), std::string::npos) << train.err;
  auto mine = last_json(train.out);
  ASSERT_TRUE(mine.contains("ndcg@10")) << train.out;
  Result ev = run_seqrec("eval --checkpoint " + t("molar/best.safetensors") + " --split test", dir);
  ASSERT_EQ(ev.code, 0) << ev.err;
  EXPECT_NEAR(last_json(ev.out).at("ndcg@10").get<double>(), mine.at("ndcg@10").get<double>(), 1e-6);

  // Qwen2-VL's tower from a Hugging Face folder (the reference fixture: its merger's 12-wide tokens
  // through the projector; 16-pixel pictures resized to 28, one merged token each), pictures only.
  std::string qwen = slurp(t("molar.yaml"));
  const std::string scratch = "vision: {config: {hidden_size: 16, intermediate_size: 32, num_hidden_layers: 1, "
                              "num_attention_heads: 2, image_size: 16, patch_size: 8}}";
  ASSERT_NE(qwen.find(scratch), std::string::npos);
  qwen.replace(qwen.find(scratch), scratch.size(),
               "vision: {pretrained: " SEQREC_SOURCE_DIR "/tests/fixtures/vision/qwen2_vl, image_size: 28}");
  dir.write("molar_qwen.yaml", qwen);
  Result q = run_seqrec("train --config " + t("molar_qwen.yaml") + " --set model.inputs=image --set train.out_dir=" +
                            t("molar_qwen"), dir);
  ASSERT_EQ(q.code, 0) << q.err;
  Result qev = run_seqrec("eval --checkpoint " + t("molar_qwen/best.safetensors") + " --split test", dir);
  ASSERT_EQ(qev.code, 0) << qev.err;
  EXPECT_NEAR(last_json(qev.out).at("ndcg@10").get<double>(), last_json(q.out).at("ndcg@10").get<double>(), 1e-6);
  Result odd = run_seqrec("train --config " + t("molar_qwen.yaml") + " --set model.image.vision.image_size=30" +
                              " --set train.out_dir=" + t("molar_q2"), dir);
  EXPECT_EQ(odd.code, 2) << odd.err;
  EXPECT_NE(odd.err.find("model.image.vision.image_size: 30 is not a multiple of patch_size x spatial_merge_size = 28"),
            std::string::npos) << odd.err;
  Result clip = run_seqrec("train " + cfg + " --set model.image.vision.image_size=32 --set train.out_dir=" + t("molar_c2"), dir);
  EXPECT_EQ(clip.code, 2) << clip.err;
  EXPECT_NE(clip.err.find("model.image.vision.image_size: 32: a clip_vision_model tower reads 16-pixel pictures only"),
            std::string::npos) << clip.err;

  std::filesystem::remove(t("raw/images/i7.png"));
  Result missing = run_seqrec("train " + cfg + " --set train.out_dir=" + t("molar2"), dir);
  EXPECT_NE(missing.code, 0);
  EXPECT_NE(missing.err.find("(raw id 'i7'): no image"), std::string::npos) << missing.err;
  EXPECT_NE(missing.err.find("allow_missing"), std::string::npos) << missing.err;
}

// molar-data from the CLI: both mixtures from a prepared store with descriptions, a config with a
// data: section of other keys (other commands' settings stay allowed), image_to_text refused with
// exit 2, and a file it did not write left alone.
TEST(MolarCli, MolarDataWritesTheMixturesAndRefusesWhatItCannot) {
  TempDir dir;
  auto t = [&](const std::string& name) { return dir.file(name); };
  dir.write("c.yaml",
            "synth:\n  num_users: 60\n  num_items: 30\n  num_clusters: 3\n  max_seq_len: 12\n  image_size: 8\n"
            "  seed: 3\n  output: " + t("raw") + "\n"
            "prepare:\n  input: " + t("raw/interactions.csv") + "\n  format: csv\n  items: " + t("raw/items.csv") +
            "\n  items_format: table\n  output: " + t("data") + "\n"
            "data:\n  dir: " + t("data") + "\n  max_seq_len: 8\n"
            "molar_data:\n  out: " + t("mix.jsonl") + "\n  examples_per_task: 25\n");
  const std::string cfg = "--config " + t("c.yaml");
  ASSERT_EQ(run_seqrec("synth " + cfg, dir).code, 0);
  ASSERT_EQ(run_seqrec("prepare " + cfg, dir).code, 0);
  Result r = run_seqrec("molar-data " + cfg, dir);
  ASSERT_EQ(r.code, 0) << r.err;
  auto summary = last_json(r.out);
  EXPECT_EQ(summary.at("examples").at("attributes_to_description").get<int>(), 25);
  EXPECT_EQ(summary.at("examples").at("behaviour_to_next_item").get<int>(), 25);
  std::ifstream in(t("mix.jsonl"));
  std::string line;
  int lines = 0;
  while (std::getline(in, line)) {
    auto j = nlohmann::json::parse(line);
    const std::string prompt = j.at("prompt");
    EXPECT_TRUE(prompt.rfind("Below are the attributes", 0) == 0 || prompt.rfind("A user interacted", 0) == 0) << line;
    EXPECT_FALSE(j.at("response").get<std::string>().empty()) << line;
    ++lines;
  }
  EXPECT_EQ(lines, 50);
  Result it = run_seqrec("molar-data " + cfg + " --set molar_data.tasks=[image_to_text]", dir);
  EXPECT_EQ(it.code, 2);
  EXPECT_NE(it.err.find("molar_data.tasks: image_to_text needs image soft tokens"), std::string::npos) << it.err;
  dir.write("mine.jsonl", "keep me\n");
  Result foreign = run_seqrec("molar-data " + cfg + " -o " + t("mine.jsonl"), dir);
  EXPECT_NE(foreign.code, 0);
  EXPECT_NE(foreign.err.find("mine.jsonl: exists and was not written by seqrec molar-data"), std::string::npos)
      << foreign.err;
}

}  // namespace
