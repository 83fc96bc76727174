// `seqrec finetune` end to end on tiny JSONL and stories260K, then `seqrec lm generate` on the output.
#include <gtest/gtest.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "cli/cli_support.h"
#include "seqrec/common/fs.h"

namespace seqrec::testing::cli {
namespace {

const std::string kStories = SEQREC_SOURCE_DIR "/../shared/models/stories260K/hf";

TEST(FinetuneCliTest, FinetunesStories260KAndGeneratesTheResponse) {
  if (!path_exists(kStories + "/config.json")) GTEST_SKIP() << "no " << kStories;
  TempDir dir;
  dir.write("train.jsonl", "{\"prompt\": \"Item one is\", \"response\": \"<a_1><b_2>\", \"task\": \"seqrec\"}\n"
                           "{\"prompt\": \"Item two is\", \"response\": \"<a_3><b_4>\", \"task\": \"seqrec\"}\n");
  dir.write("tokens.txt", "<a_1>\n<a_3>\n<b_2>\n<b_4>\n");
  const std::string config = dir.write("ft.yaml", "finetune:\n"
                                                  "  model: " + kStories + "\n"
                                                  "  train_file: " + dir.file("train.jsonl") + "\n"
                                                  "  valid_file: " + dir.file("train.jsonl") + "\n"
                                                  "  added_tokens_file: " + dir.file("tokens.txt") + "\n"
                                                  "  out_dir: " + dir.file("out") + "\n"
                                                  "  epochs: 80\n  batch_size: 1\n  lr: 5.0e-3\n  warmup_ratio: 0.05\n"
                                                  "  packed: false\n  threads: 1\n");
  Result r = run_seqrec("finetune --config " + config + " --set finetune.grad_accum_steps=2 --set finetune.eval_steps=20", dir);
  ASSERT_EQ(r.code, 0) << r.err;
  const auto summary = last_json(r.out);
  EXPECT_EQ(summary["added_tokens"], 4);
  EXPECT_EQ(summary["steps"], 80);  // 2 examples, 1 per micro-batch, 2 micro-batches per step
  EXPECT_LT(summary["best_valid_loss"].get<double>(), 0.1);
  EXPECT_NE(r.err.find("tok/s"), std::string::npos) << r.err;
  EXPECT_TRUE(path_exists(dir.file("out/seqrec_finetune.yaml")));
  // Validated every 20 of 80 steps (one step per epoch); the other 76 epochs end with a training line.
  const auto metric_lines = lines_of(slurp(dir.file("out/metrics.jsonl")));
  EXPECT_EQ(metric_lines.size(), 80u);
  EXPECT_EQ(std::count_if(metric_lines.begin(), metric_lines.end(),
                          [](const std::string& l) { return nlohmann::json::parse(l)["split"] == "valid"; }),
            4);
  // ... which `seqrec report` plots: the validation loss by epoch, the training loss.
  r = run_seqrec("report " + dir.file("out") + " --out " + dir.file("report") + " --metrics valid_loss", dir);
  ASSERT_EQ(r.code, 0) << r.err;
  const std::string page = slurp(dir.file("report/report.md"));
  EXPECT_NE(page.find("| epoch (valid) | valid_loss |"), std::string::npos) << page;
  EXPECT_NE(page.find("\n| 80 | 0.0"), std::string::npos) << page;  // the last validation, loss < 0.1
  EXPECT_TRUE(path_exists(dir.file("report/out_loss.svg")));

  r = run_seqrec("lm generate --model " + dir.file("out") + " --prompt 'Item two is' --max-new-tokens 4", dir);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "Item two is<a_3><b_4>\n");
  // lm: an empty text has nothing to score; a prompt beyond max_position_embeddings is refused.
  r = run_seqrec("lm score --model " + dir.file("out") + " --text ''", dir);
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("--text: nothing to score: it encodes to 1 token(s)"), std::string::npos) << r.err;
  r = run_seqrec("lm generate --model " + dir.file("out") + " --prompt 'Item two is' --max-new-tokens 5000", dir);
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find(" tokens + 5000 new, more than the model's max_position_embeddings (512, "),
            std::string::npos) << r.err;
  // --resume after the last epoch: nothing left to train, the same summary.
  r = run_seqrec("finetune --config " + config + " --set finetune.grad_accum_steps=2 --set finetune.eval_steps=20 --resume", dir);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("80 epochs (80 steps) done"), std::string::npos) << r.err;
  EXPECT_EQ(last_json(r.out)["best_valid_loss"], summary["best_valid_loss"]);

  // Bad input: a malformed line is named, a foreign output folder is left alone.
  dir.write("bad.jsonl", "{\"prompt\": \"a\", \"response\": \"b\"}\n{\"prompt\": \"a\"}\n");
  r = run_seqrec("finetune --config " + config + " --set finetune.train_file=" + dir.file("bad.jsonl"), dir);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("DataError: " + dir.file("bad.jsonl") + ":2: missing field \"response\""), std::string::npos) << r.err;
  r = run_seqrec("finetune --config " + config + " --set finetune.out_dir=" + dir.path() + " --set finetune.epochs=1", dir);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("is not a model folder seqrec exported"), std::string::npos) << r.err;
  r = run_seqrec("finetune --config " + config + " --set finetune.lora.rnak=4", dir);
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("finetune.lora.rnak: unknown key (did you mean 'rank'?)"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace seqrec::testing::cli
