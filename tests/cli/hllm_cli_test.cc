// HLLM end to end from the CLI on synthetic data with titles: prepare tokenises the item texts,
// train lowers the nce loss and beats most-popular, eval of the checkpoint reproduces the test line.
#include <gtest/gtest.h>

#include <filesystem>

#include "cli/cli_support.h"
#include "llm/tokenizer_fixtures.h"
#include "support.h"

namespace {

using seqrec::testing::TempDir;
using namespace seqrec::testing::cli;

TEST(HllmCli, SynthPrepareTrainEvalBeatsMostPop) {
  TempDir dir;
  auto t = [&](const std::string& name) { return dir.file(name); };
  std::filesystem::create_directories(t("tok"));
  dir.write("tok/tokenizer.json", seqrec::testing::tiny_byte_level().dump());
  dir.write("hllm.yaml",
            "synth:\n  num_users: 300\n  num_items: 80\n  seed: 5\n  output: " + t("raw") + "\n"
            "prepare:\n  input: " + t("raw/interactions.csv") + "\n  format: csv\n  items: " + t("raw/items.csv") +
            "\n  items_format: table\n  output: " + t("data") + "\n"
            "  item_text: {tokenizer: " + t("tok") + ", text_keys: [title, tag], max_text_length: 20, prompt: ''}\n"
            "data:\n  dir: " + t("data") + "\n  max_seq_len: 10\n"
            "model:\n  name: hllm\n"
            "  item_llm: {config: {vocab_size: 263, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 1, "
            "num_attention_heads: 4}}\n"
            "  user_llm: {config: {vocab_size: 1, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2, "
            "num_attention_heads: 4}}\n"
            "train:\n  out_dir: " + t("hllm") + "\n  epochs: 4\n  batch_size: 32\n  lr: 0.003\n  threads: 1\n"
            "  schedule: cosine\n  warmup_ratio: 0.1\n  log_every: 1000\n  metric: ndcg@10\n"
            "  loss: {name: nce}\n"
            "eval:\n  protocol: full\n  history_mask: full\n  ks: [5, 10, 50]\n");
  dir.write("pop.yaml", "data:\n  dir: " + t("data") + "\n  max_seq_len: 10\nmodel:\n  name: most_pop\ntrain:\n  out_dir: " +
                            t("pop") + "\n  epochs: 1\n  metric: ndcg@10\n  threads: 1\neval:\n  protocol: full\n"
                            "  history_mask: full\n  ks: [5, 10, 50]\n");
  const std::string cfg = "--config " + t("hllm.yaml");
  Result synth = run_seqrec("synth " + cfg, dir);
  ASSERT_EQ(synth.code, 0) << synth.err;
  Result prep = run_seqrec("prepare " + cfg, dir);
  ASSERT_EQ(prep.code, 0) << prep.err;
  EXPECT_NE(prep.err.find("item texts tokenised: 80 items"), std::string::npos) << prep.err;
  ASSERT_TRUE(std::filesystem::exists(t("data/item_tokens.bin")));
  // item_tokens.bin is part of the store: its marker lists it, so prepare may replace the folder
  // (it used to be written after the marker, and a second prepare was refused).
  EXPECT_NE(slurp(t("data/.seqrec-owned")).find("\nitem_tokens.bin\n"), std::string::npos)
      << slurp(t("data/.seqrec-owned"));
  prep = run_seqrec("prepare " + cfg, dir);
  ASSERT_EQ(prep.code, 0) << prep.err;
  Result train = run_seqrec("train " + cfg, dir);
  ASSERT_EQ(train.code, 0) << train.err;
  Result pop = run_seqrec("train --config " + t("pop.yaml"), dir);
  ASSERT_EQ(pop.code, 0) << pop.err;

  // The loss drops: the first epoch's mean loss (its final progress line, "... loss X ... took") is
  // above the last one's.
  std::vector<double> losses;
  for (const auto& line : lines_of(train.err)) {
    if (line.find(" took ") == std::string::npos) continue;
    auto at = line.find(" loss ");
    if (at != std::string::npos) losses.push_back(std::stod(line.substr(at + 6)));
  }
  ASSERT_GE(losses.size(), 2u) << train.err;
  EXPECT_LT(losses.back(), losses.front() - 0.1) << train.err;

  auto mine = last_json(train.out), base = last_json(pop.out);
  ASSERT_TRUE(mine.contains("ndcg@10")) << train.out;
  EXPECT_EQ(mine.at("split"), "test");
  std::cerr << "[hllm cli] test ndcg@10: hllm " << mine.at("ndcg@10") << " most_pop " << base.at("ndcg@10") << "\n";
  EXPECT_GT(mine.at("ndcg@10").get<double>(), base.at("ndcg@10").get<double>() + 0.03)
      << "hllm " << mine.dump() << "\nmost_pop " << base.dump();

  Result ev = run_seqrec("eval --checkpoint " + t("hllm/best.safetensors") + " --split test", dir);
  ASSERT_EQ(ev.code, 0) << ev.err;
  EXPECT_NEAR(last_json(ev.out).at("ndcg@10").get<double>(), mine.at("ndcg@10").get<double>(), 1e-6);
}

}  // namespace
