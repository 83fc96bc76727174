// Integration tests of the `seqrec` binary: synth -> prepare -> train -> eval -> recommend, and the
// error paths a user meets (exit codes and messages).
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "cli/cli_support.h"
#include "support.h"

namespace {

using seqrec::testing::TempDir;
using namespace seqrec::testing::cli;

class CliTest : public ::testing::Test {
 protected:
  static Result run(const std::string& args) { return run_seqrec(args, *dir_); }

  static std::string t(const std::string& name) { return dir_->file(name); }

  /// demo.yaml, shrunk and redirected into the temp dir.
  static std::string demo_args() {
    std::string a = "--config " + std::string(SEQREC_SOURCE_DIR) + "/configs/demo.yaml";
    for (const std::string& kv : std::vector<std::string>{"synth.num_users=300", "synth.num_items=100", "synth.output=" + t("raw"),
          "prepare.input=" + t("raw/interactions.csv"), "prepare.items=" + t("raw/items.csv"),
          "prepare.output=" + t("data"), "data.dir=" + t("data"), "data.max_seq_len=20", "model.hidden_dim=16",
          "model.num_blocks=1", "train.out_dir=" + t("sasrec"), "train.epochs=10", "train.eval_every=5",
          "train.batch_size=32", "train.lr=0.005", "train.loss.num_negatives=16", "train.threads=1",
          "train.log_every=1000"})
      a += " --set " + kv;
    return a;
  }

  static void SetUpTestSuite() {
    dir_ = new TempDir();
    synth_ = new Result(run("synth " + demo_args()));
    prepare_ = new Result(run("prepare " + demo_args()));
    train_ = new Result(run("train " + demo_args()));
    // most_pop through a config of its own (demo.yaml's model section has SASRec keys).
    dir_->write("pop.yaml",
                "data:\n  dir: " + t("data") + "\n  max_seq_len: 20\nmodel:\n  name: most_pop\ntrain:\n  out_dir: " +
                    t("pop") + "\n  epochs: 1\n  metric: ndcg@10\n  threads: 1\neval:\n  protocol: full\n"
                    "  history_mask: full\n  ks: [1, 5, 10, 20, 50]\n");
    pop_ = new Result(run("train --config " + t("pop.yaml")));
  }
  static void TearDownTestSuite() {
    delete synth_;
    delete prepare_;
    delete train_;
    delete pop_;
    delete dir_;
  }

  static void expect_ok(const Result& r, const char* what) {
    ASSERT_EQ(r.code, 0) << what << " failed\nstdout: " << r.out << "\nstderr: " << r.err;
  }

  static TempDir* dir_;
  static Result *synth_, *prepare_, *train_, *pop_;
};

TempDir* CliTest::dir_ = nullptr;
Result* CliTest::synth_ = nullptr;
Result* CliTest::prepare_ = nullptr;
Result* CliTest::train_ = nullptr;
Result* CliTest::pop_ = nullptr;

TEST_F(CliTest, PipelineTrainsAModelThatBeatsMostPop) {
  expect_ok(*synth_, "synth");
  expect_ok(*prepare_, "prepare");
  auto synth = last_json(synth_->out);
  EXPECT_EQ(synth.at("users").get<int64_t>(), 300);
  auto prep = last_json(prepare_->out);
  EXPECT_EQ(prep.at("users").get<int64_t>(), 300);
  EXPECT_EQ(prep.at("has_timestamps").get<bool>(), true);
  EXPECT_GT(prep.at("items_with_text").get<int64_t>(), 0);
  expect_ok(*train_, "train");
  expect_ok(*pop_, "train most_pop");
  for (const char* f : {"sasrec/best.safetensors", "sasrec/last.safetensors", "sasrec/config.yaml",
                        "sasrec/metrics.jsonl", "pop/best.safetensors"})
    EXPECT_TRUE(std::filesystem::exists(t(f))) << f;

  auto mine = last_json(train_->out);
  auto pop = last_json(pop_->out);
  ASSERT_TRUE(mine.contains("hr@10")) << train_->out;
  ASSERT_TRUE(pop.contains("hr@10")) << pop_->out;
  EXPECT_EQ(mine.at("split"), "test");
  EXPECT_EQ(mine.at("protocol"), "full");
  EXPECT_EQ(mine.at("users"), pop.at("users"));
  std::cerr << "[cli] test hr@10: sasrec " << mine.at("hr@10") << " most_pop " << pop.at("hr@10") << "\n";
  EXPECT_GT(mine.at("hr@10").get<double>(), pop.at("hr@10").get<double>() + 0.1)
      << "sasrec " << mine.dump() << "\nmost_pop " << pop.dump();

  // eval of the best checkpoint (config found next to it) reproduces the train's test line.
  Result ev = run("eval --checkpoint " + t("sasrec/best.safetensors") + " --split test");
  expect_ok(ev, "eval");
  auto ej = last_json(ev.out);
  ASSERT_TRUE(ej.contains("hr@10")) << ev.out;
  EXPECT_DOUBLE_EQ(ej.at("hr@10").get<double>(), mine.at("hr@10").get<double>());
  EXPECT_EQ(ej.at("users"), mine.at("users"));
  // The table on stderr lists metrics by family, then by cut-off as a number (not hr@10 before hr@5).
  std::vector<std::string> table;
  for (const auto& line : lines_of(ev.err))
    if (line.rfind("hr@", 0) == 0 || line.rfind("ndcg@", 0) == 0 || line.rfind("mrr", 0) == 0)
      table.push_back(line.substr(0, line.find(' ')));
  EXPECT_EQ(table, (std::vector<std::string>{"hr@1", "hr@5", "hr@10", "hr@20", "hr@50", "ndcg@1", "ndcg@5", "ndcg@10",
                                             "ndcg@20", "ndcg@50", "mrr"}))
      << ev.err;
  Result ev_pop = run("eval --checkpoint " + t("pop/best.safetensors") + " --split valid");
  expect_ok(ev_pop, "eval most_pop");
  Result ev_valid = run("eval --checkpoint " + t("sasrec/best.safetensors") + " --split valid");
  expect_ok(ev_valid, "eval valid");
  EXPECT_GT(last_json(ev_valid.out).at("hr@10").get<double>(), last_json(ev_pop.out).at("hr@10").get<double>());
}

TEST_F(CliTest, RecommendForAUserAndForAHistory) {
  expect_ok(*train_, "train");
  auto users = lines_of(slurp(t("data/users.tsv")));
  ASSERT_FALSE(users.empty());
  const std::string user = split_tabs(users[0]).at(1);
  Result r = run("recommend --checkpoint " + t("sasrec/best.safetensors") + " --user " + user);
  expect_ok(r, "recommend --user");
  auto lines = lines_of(r.out);
  ASSERT_EQ(lines.size(), 11u) << r.out;  // header + k=10
  EXPECT_EQ(lines[0], "rank\titem_id\tscore\ttitle");
  double prev = 1e30;
  std::set<std::string> ids;
  for (size_t i = 1; i < lines.size(); ++i) {
    auto f = split_tabs(lines[i]);
    ASSERT_GE(f.size(), 3u) << lines[i];
    EXPECT_EQ(f[0], std::to_string(i));
    const double score = std::stod(f[2]);
    EXPECT_LE(score, prev);
    prev = score;
    ids.insert(f[1]);
  }
  EXPECT_EQ(ids.size(), 10u);

  auto items = lines_of(slurp(t("data/items.tsv")));
  ASSERT_GE(items.size(), 4u);
  const std::string a = split_tabs(items[1]).at(1), b = split_tabs(items[2]).at(1);
  Result h = run("recommend --checkpoint " + t("sasrec/best.safetensors") + " --history '" + a + "," + b + "' --k 5");
  expect_ok(h, "recommend --history");
  auto hl = lines_of(h.out);
  ASSERT_EQ(hl.size(), 6u) << h.out;
  for (size_t i = 1; i < hl.size(); ++i) {
    auto f = split_tabs(hl[i]);
    EXPECT_NE(f.at(1), a);
    EXPECT_NE(f.at(1), b);
    EXPECT_FALSE(f.at(3).empty()) << "synthetic items have titles: " << hl[i];
  }
}

TEST_F(CliTest, UnknownConfigKeySuggestsAName) {
  expect_ok(*prepare_, "prepare");
  Result r = run("train " + demo_args() + " --set model.hiden_dim=16 --set train.out_dir=" + t("typo"));
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_NE(r.err.find("did you mean"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("hidden_dim"), std::string::npos) << r.err;
}

/// The shipped synth.mode configs run (shrunk), and an option of another mode is refused by name.
/// A first word that is no command is refused by name, with or without --help (it used to print
/// the main help with exit 0).
TEST_F(CliTest, UnknownCommandIsRefusedByName) {
  for (const std::string args : {"no-such-command --help", "no-such-command", "trian --config x.yaml"}) {
    Result r = run(args);
    EXPECT_EQ(r.code, 2) << args;
    const std::string word = args.substr(0, args.find(' ') == std::string::npos ? args.size() : args.find(' '));
    EXPECT_NE(r.err.find("error: unknown command '" + word + "' (commands: "), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("train"), std::string::npos) << r.err;
  }
  Result r = run("--help");
  EXPECT_EQ(r.code, 0);
  EXPECT_NE(r.out.find("Subcommands:"), std::string::npos) << r.out;
}

TEST_F(CliTest, SynthModeConfigsRunAndOtherModesOptionsAreRefused) {
  const std::string cfg = std::string(SEQREC_SOURCE_DIR) + "/configs/";
  Result bursty = run("synth --config " + cfg + "time_bias/hstu_no_time.yaml --set synth.num_users=20 --out " + t("bursty"));
  expect_ok(bursty, "synth bursty");
  EXPECT_EQ(last_json(bursty.out).at("users").get<int64_t>(), 20);
  EXPECT_GE(last_json(bursty.out).at("events").get<int64_t>(), 20 * 50);
  Result lt = run("synth --config " + cfg + "persrec/synth_long.yaml --set synth.num_users=3 --out " + t("long"));
  expect_ok(lt, "synth long_term");
  EXPECT_GE(last_json(lt.out).at("events").get<int64_t>(), 3 * 1500);
  Result bad = run("synth --config " + cfg + "time_bias/hstu.yaml --set synth.recent_window=50 --out " + t("bad"));
  EXPECT_EQ(bad.code, 2) << bad.err;
  EXPECT_NE(bad.err.find("synth.recent_window: is only read by synth.mode long_term, not bursty"), std::string::npos)
      << bad.err;
  Result mode = run("synth --set synth.mode=longterm --out " + t("bad"));
  EXPECT_EQ(mode.code, 2) << mode.err;
  EXPECT_NE(mode.err.find("synth.mode: 'longterm' is not one of: default, long_term, bursty"), std::string::npos)
      << mode.err;
  EXPECT_FALSE(std::filesystem::exists(t("bad")));
}

TEST_F(CliTest, MalformedCsvRowNamesFileAndLine) {
  const std::string bad = dir_->write("bad.csv", "item_id,user_id,timestamp\ni1,u1,1\ni2,u1\ni3,u1,3\n");
  Result r = run("prepare --input " + bad + " --out " + t("bad_data"));
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_NE(r.err.find("bad.csv:3:"), std::string::npos) << r.err;
  EXPECT_FALSE(std::filesystem::exists(t("bad_data")));
}

TEST_F(CliTest, EvalOnTruncatedCheckpointFailsClearly) {
  expect_ok(*train_, "train");
  const std::string bytes = slurp(t("sasrec/best.safetensors"));
  ASSERT_GT(bytes.size(), 100u);
  {
    std::ofstream out(t("sasrec/cut.safetensors"), std::ios::binary);
    out << bytes.substr(0, bytes.size() / 2);
  }
  Result r = run("eval --checkpoint " + t("sasrec/cut.safetensors"));
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("cut.safetensors"), std::string::npos) << r.err;
  // A clear message: the error class and the file (the safetensors reader says what is cut short).
  EXPECT_NE(r.err.find("CheckpointError"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("terminate called"), std::string::npos) << r.err;
  EXPECT_EQ(r.out.find("hr@10"), std::string::npos);
}

TEST_F(CliTest, HoldoutOneTrainsOnValidAndRefusesAValidationEval) {
  expect_ok(*prepare_, "prepare");
  const std::string args = demo_args() + " --set data.holdout=1 --set train.epochs=2 --set train.eval_every=1 --set train.out_dir=";
  Result r = run("train " + args + t("gr"));
  expect_ok(r, "train data.holdout=1");
  EXPECT_NE(r.err.find("no validation split (data.holdout 1)"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("split=valid"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("[eval] epoch 2 split=test"), std::string::npos) << r.err;
  // The test line printed is that of the last epoch's model, which eval reproduces.
  Result ev = run("eval --checkpoint " + t("gr/last.safetensors") + " --split test");
  expect_ok(ev, "eval test");
  EXPECT_DOUBLE_EQ(last_json(ev.out).at("ndcg@10").get<double>(), last_json(r.out).at("ndcg@10").get<double>());
  Result valid = run("eval --checkpoint " + t("gr/best.safetensors") + " --split valid");
  EXPECT_EQ(valid.code, 2) << valid.err;
  EXPECT_NE(valid.err.find("data.holdout is 1, so the validation item was trained on"), std::string::npos) << valid.err;
  Result bad = run("train " + args + t("gr3") + " --set data.holdout=3");
  EXPECT_EQ(bad.code, 2) << bad.err;
  EXPECT_NE(bad.err.find("data.holdout: must be 2 (valid and test held out) or 1 (test only), not 3"), std::string::npos)
      << bad.err;
  EXPECT_FALSE(std::filesystem::exists(t("gr3/best.safetensors")));
}

TEST_F(CliTest, RecommendUnknownUser) {
  expect_ok(*train_, "train");
  Result r = run("recommend --checkpoint " + t("sasrec/best.safetensors") + " --user no_such_user_42");
  EXPECT_NE(r.code, 0);
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("unknown user id"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("no_such_user_42"), std::string::npos) << r.err;
  // LSVCR's flags are refused on other models, not ignored.
  r = run("recommend --checkpoint " + t("sasrec/best.safetensors") + " --user u1 --video 3");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("--video is for LSVCR checkpoints (comments of a video), and " + t("sasrec/best.safetensors") +
                       " is not one"), std::string::npos) << r.err;
}

TEST_F(CliTest, PersonalizedHstuTrainsCompressesAndEvaluatesFromItsCache) {
  expect_ok(*prepare_, "prepare");
  // PerSRec on the demo data: window 20 = 14 old + 6 recent slots, 2 user tokens.
  const std::string args = "--config " + std::string(SEQREC_SOURCE_DIR) + "/configs/persrec/demo.yaml --set data.dir=" +
                           t("data") + " --set data.max_seq_len=20 --set model.hidden_dim=16 --set model.num_blocks=2" +
                           " --set model.personalized.pretrain_item_num=14 --set model.personalized.recent_item_num=6" +
                           " --set model.personalized.number_of_user_tokens=2 --set train.epochs=2" +
                           " --set train.eval_every=1 --set train.threads=1 --set train.loss.num_negatives=16" +
                           " --set train.out_dir=" + t("persrec");
  Result train = run("train " + args);
  expect_ok(train, "train persrec");
  const std::string ckpt = " --checkpoint " + t("persrec/best.safetensors");
  Result plain = run("eval" + ckpt + " --split test");
  expect_ok(plain, "eval without a cache");
  Result comp = run("compress" + ckpt + " --split test --out " + t("cache_test") + " --users-per-shard 100");
  expect_ok(comp, "compress");
  auto info = last_json(comp.out);
  EXPECT_EQ(info.at("users").get<int64_t>(), last_json(plain.out).at("users").get<int64_t>());
  // Per user: 2 layers x (keys + values) x 2 tokens x 16 floats, distances and times, id and hash.
  EXPECT_EQ(info.at("bytes_per_user").get<int64_t>(), 2 * 2 * 2 * 16 * 4 + 2 * 8 * 2 + 16);
  EXPECT_TRUE(std::filesystem::exists(t("cache_test/shard-00002.safetensors")));
  Result cached = run("eval" + ckpt + " --split test --token-cache " + t("cache_test"));
  expect_ok(cached, "eval from the cache");
  for (const char* m : {"ndcg@10", "hr@10", "mrr"})
    EXPECT_NEAR(last_json(cached.out).at(m).get<double>(), last_json(plain.out).at(m).get<double>(), 1e-9) << m;
  // Each line names what produced it, in eval.jsonl too: the checkpoint, and the cache when one was used.
  EXPECT_EQ(last_json(cached.out).at("token_cache").get<std::string>(), t("cache_test"));
  EXPECT_FALSE(last_json(plain.out).contains("token_cache"));
  EXPECT_EQ(last_json(plain.out).at("checkpoint").get<std::string>(), t("persrec/best.safetensors"));
  EXPECT_EQ(last_json(slurp(t("persrec/eval.jsonl"))), last_json(cached.out));
  // The window cut applies to eval too: with every user's first 4 events only, the test item is
  // the 4th, and the metrics change.
  Result cut = run("eval" + ckpt + " --split test --set data.item_end_position=4");
  expect_ok(cut, "eval with a window cut");
  EXPECT_NE(last_json(cut.out).at("ndcg@10").get<double>(), last_json(plain.out).at("ndcg@10").get<double>());
  // PerSRec's train_feat_max_length: training reads the last N training items of each user (the
  // run says so), and a value below one window and its target is refused by name.
  Result feat = run("train " + args + " --set train.epochs=1 --set data.train_feat_max_length=21 --set train.out_dir=" +
                    t("persrec_feat"));
  expect_ok(feat, "train with train_feat_max_length");
  EXPECT_NE(feat.err.find("data.train_feat_max_length 21: training on the last 21 items of each training part"),
            std::string::npos) << feat.err;
  Result short_feat = run("train " + args + " --set data.train_feat_max_length=20 --set train.out_dir=" + t("persrec_f2"));
  EXPECT_EQ(short_feat.code, 2) << short_feat.err;
  EXPECT_NE(short_feat.err.find("train_feat_max_length: must be 0 (off) or at least max_seq_len + 1 = 21"),
            std::string::npos) << short_feat.err;
  // A cache is tied to its split and to its weights.
  Result valid = run("eval" + ckpt + " --split valid --token-cache " + t("cache_test"));
  EXPECT_EQ(valid.code, 1);
  EXPECT_NE(valid.err.find("compressed for split 'test', not 'valid'"), std::string::npos) << valid.err;
  Result other = run("eval --checkpoint " + t("persrec/last.safetensors") + " --split test --token-cache " + t("cache_test"));
  if (other.code != 0) {  // last != best when the best epoch was the first
    EXPECT_NE(other.err.find("compressed with other weights"), std::string::npos) << other.err;
  }
  // compress refuses to replace a folder seqrec did not write, and a model without user tokens.
  std::filesystem::create_directories(t("mine"));
  dir_->write("mine/notes.txt", "keep me");
  Result foreign = run("compress" + ckpt + " --split test --out " + t("mine"));
  EXPECT_NE(foreign.code, 0);
  EXPECT_NE(foreign.err.find("is not a token cache seqrec wrote"), std::string::npos) << foreign.err;
  EXPECT_TRUE(std::filesystem::exists(t("mine/notes.txt")));
  Result again = run("compress" + ckpt + " --split test --out " + t("cache_test"));  // its own: replaced
  expect_ok(again, "compress again");
  EXPECT_FALSE(std::filesystem::exists(t("cache_test/shard-00002.safetensors")));
  Result sasrec = run("compress --checkpoint " + t("sasrec/best.safetensors") + " --out " + t("c2"));
  EXPECT_EQ(sasrec.code, 2);
  EXPECT_NE(sasrec.err.find("has no user tokens"), std::string::npos) << sasrec.err;
}

TEST_F(CliTest, PersonalizedLlamaIdEvaluatesFromItsCacheAsWithout) {
  expect_ok(*prepare_, "prepare");
  const std::string args = "--config " + std::string(SEQREC_SOURCE_DIR) + "/configs/persrec/demo_llama_id.yaml" +
                           " --set data.dir=" + t("data") + " --set data.max_seq_len=20 --set model.hidden_dim=16" +
                           " --set model.personalized.pretrain_item_num=14 --set model.personalized.recent_item_num=6" +
                           " --set model.personalized.number_of_user_tokens=2 --set train.epochs=1" +
                           " --set train.threads=1 --set train.loss.num_negatives=16 --set train.out_dir=" + t("pl");
  expect_ok(run("train " + args), "train llama_id with user tokens");
  const std::string ckpt = " --checkpoint " + t("pl/best.safetensors");
  Result plain = run("eval" + ckpt + " --split test");
  expect_ok(plain, "eval without a cache");
  Result comp = run("compress" + ckpt + " --split test --out " + t("pl_cache"));
  expect_ok(comp, "compress");
  // Per user: 2 layers x (keys + values) x 2 tokens x 16 floats (2 kv heads of 8), distances and
  // times, id and hash.
  EXPECT_EQ(last_json(comp.out).at("bytes_per_user").get<int64_t>(), 2 * 2 * 2 * 16 * 4 + 2 * 8 * 2 + 16);
  Result cached = run("eval" + ckpt + " --split test --token-cache " + t("pl_cache"));
  expect_ok(cached, "eval from the cache");
  for (const char* m : {"ndcg@10", "hr@10", "mrr"})
    EXPECT_NEAR(last_json(cached.out).at(m).get<double>(), last_json(plain.out).at(m).get<double>(), 1e-9) << m;
}

TEST_F(CliTest, ReportPagesTheTrainedRunsWithCharts) {
  expect_ok(*train_, "train");
  expect_ok(*pop_, "most_pop");
  Result r = run("report " + t("sasrec") + " " + t("pop") + " --out " + t("report"));
  expect_ok(r, "report");
  const std::string page = slurp(t("report/report.md"));
  EXPECT_NE(page.find("## Test metrics, protocol `full`, split test"), std::string::npos) << page;
  EXPECT_NE(page.find("| sasrec |"), std::string::npos) << page;
  EXPECT_NE(page.find("| pop |"), std::string::npos) << page;
  EXPECT_NE(page.find("| hr@1 | hr@5 | hr@10 | hr@20 | hr@50 |"), std::string::npos) << "numeric order of k\n" << page;
  EXPECT_TRUE(std::filesystem::exists(t("report/test_full.svg")));
  EXPECT_TRUE(std::filesystem::exists(t("report/sasrec_metrics.svg")));
  Result missing = run("report " + t("no_run") + " --out " + t("report2"));
  EXPECT_EQ(missing.code, 1);
  EXPECT_NE(missing.err.find("no_run: not a run folder"), std::string::npos) << missing.err;
  EXPECT_FALSE(std::filesystem::exists(t("report2")));
}

}  // namespace
