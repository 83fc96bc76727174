// LSVCR from the CLI: synth -> prepare (and its file:line error) -> train stage 1 -> stage 2 from it
// through train.init_from, on tiny sizes; random text embeddings stand in for embed-items' output.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <set>

#include "cli/cli_support.h"
#include "cli/lsvcr_cli_support.h"
#include "seqrec/common/fs.h"
#include "seqrec/data/item_catalog.h"
#include "seqrec/data/lsvcr_data.h"
#include "seqrec/train/checkpoint.h"

namespace seqrec::testing::cli {
namespace {

const std::string kStories = SEQREC_SOURCE_DIR "/../shared/models/stories260K/hf";

// The synthetic config on make_small_lsvcr_data's store, with tiny towers.
std::string small_run_args(const TempDir& dir) {
  return "--config " + std::string(SEQREC_SOURCE_DIR) + "/configs/lsvcr/synthetic.yaml --set data.dir=" + dir.file("data") +
         " --set lsvcr.video_title_emb=" + dir.file("v.safetensors") + " --set lsvcr.comment_emb=" + dir.file("c.safetensors") +
         " --set model.max_history=6 --set model.max_position=12 --set model.hidden_dim=16 --set model.ffn_dim=32"
         " --set model.text_hidden_dim=16 --set model.text_dim=16 --set train.batch_size=64 --set train.threads=1";
}

TEST(LsvcrCliTest, PrepareNamesTheFileAndLineOfACommentOnAnUnknownVideo) {
  TempDir dir;
  dir.write("videos.tsv", "video_id\ttitle\nv1\ta\n");
  dir.write("comments.tsv", "comment_id\tvideo_id\ttext\nc1\tv1\tok\nc2\tv7\tbad\n");
  dir.write("video_history.tsv", "user_id\tvideo_id\ttimestamp\n");
  dir.write("comment_history.tsv", "user_id\tcomment_id\ttimestamp\n");
  const Result r = run_seqrec("prepare --set prepare.format=lsvcr --input " + dir.path() + " --out " + dir.file("out"), dir);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find(dir.file("comments.tsv") + ":3: comment 'c2' is on unknown video 'v7'"), std::string::npos) << r.err;
}

TEST(LsvcrCliTest, SynthPrepareAlignAndFinetuneFromTheAlignedModel) {
  if (!path_exists(kStories + "/config.json")) GTEST_SKIP() << "no " << kStories;
  TempDir dir;
  make_small_lsvcr_data(dir);
  if (HasFatalFailure()) return;
  const std::string common = small_run_args(dir);
  Result r = run_seqrec("train " + common + " --set lsvcr.stage=align --set lsvcr.align.llm=" + kStories +
                     " --set lsvcr.align.max_steps=2 --set lsvcr.align.max_prompt_tokens=64 --set train.batch_size=4"
                     " --set train.out_dir=" + dir.file("align"),
                 dir);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_GT(last_json(r.out)["tokens_per_s"].get<double>(), 0.0);
  ASSERT_TRUE(path_exists(dir.file("align/sr_model.safetensors")));
  r = run_seqrec("train " + common + " --set train.epochs=1 --set train.eval_every=1 --set train.out_dir=" + dir.file("s2") +
                     " --set train.init_from.checkpoint=" + dir.file("align/sr_model.safetensors"),
                 dir);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("init_from " + dir.file("align/sr_model.safetensors") + ": 127 tensors loaded; missing (kept as initialised): none"),
            std::string::npos) << r.err;
  const auto test = last_json(r.out);
  EXPECT_EQ(test["protocol"], "lsvcr");
  for (const char* k : {"video_ndcg@5", "video_mrr@10", "comment_recall@1", "comment_ndcg@10"}) EXPECT_TRUE(test.contains(k)) << k;
  EXPECT_EQ(lines_of(slurp(dir.file("s2/metrics.jsonl"))).size(), 2u);  // valid, test
  EXPECT_TRUE(path_exists(dir.file("s2/best.safetensors")));
  r = run_seqrec("train " + common + " --set lsvcr.stage=most_pop --set train.out_dir=" + dir.file("pop"), dir);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(last_json(r.out).contains("comment_ndcg@5"));
}

// seqrec eval on a stage 2 checkpoint: from the run's config.yaml, the test line of train and the
// best epoch's validation line again (eval.jsonl names the checkpoint); another store is refused.
TEST(LsvcrCliTest, EvalOfAStageTwoCheckpointRepeatsTrainsLines) {
  TempDir dir;
  make_small_lsvcr_data(dir);
  if (HasFatalFailure()) return;
  const std::string common = small_run_args(dir);
  Result r = run_seqrec("train " + common + " --set train.epochs=2 --set train.eval_every=1 --set train.out_dir=" +
                            dir.file("s2"), dir);
  ASSERT_EQ(r.code, 0) << r.err;
  const auto trained = last_json(r.out);
  const auto lines = lines_of(slurp(dir.file("s2/metrics.jsonl")));
  ASSERT_EQ(lines.size(), 3u);  // valid, valid, test
  const auto logged_test = nlohmann::json::parse(lines[2]);
  const auto best_valid = nlohmann::json::parse(lines[logged_test["epoch"].get<int64_t>() - 1]);
  for (const auto& [split, want] : {std::pair<std::string, nlohmann::json>{"test", trained}, {"valid", best_valid}}) {
    Result e = run_seqrec("eval --checkpoint " + dir.file("s2/best.safetensors") + " --split " + split, dir);
    ASSERT_EQ(e.code, 0) << e.err;
    const auto got = last_json(e.out);
    EXPECT_EQ(got["protocol"], "lsvcr");
    EXPECT_EQ(got["split"], split);
    for (const char* k : {"video_ndcg@5", "video_recall@10", "video_mrr@10", "comment_ndcg@5", "comment_recall@1"})
      EXPECT_DOUBLE_EQ(got.at(k).get<double>(), want.at(k).get<double>()) << split << " " << k;
  }
  EXPECT_EQ(last_json(slurp(dir.file("s2/eval.jsonl")))["checkpoint"], dir.file("s2/best.safetensors"));
  // compress does not take LSVCR models and says so (it used to fail on a missing items.tsv).
  Result no = run_seqrec("compress --out x --checkpoint " + dir.file("s2/best.safetensors"), dir);
  EXPECT_EQ(no.code, 2) << no.err;
  EXPECT_NE(no.err.find("is an LSVCR checkpoint: seqrec compress does not take LSVCR models yet (seqrec eval, recommend "
                        "and serve do)"),
            std::string::npos) << no.err;
  // A store with other videos: refused by name before anything runs.
  Result other = run_seqrec("synth --set synth.mode=lsvcr --set synth.num_users=40 --set synth.num_videos=12 "
                            "--set synth.num_topics=4 --set synth.max_comments=24 --out " + dir.file("raw2"), dir);
  ASSERT_EQ(other.code, 0) << other.err;
  ASSERT_EQ(run_seqrec("prepare --set prepare.format=lsvcr --input " + dir.file("raw2") + " --out " + dir.file("data2"), dir).code, 0);
  Result wrong = run_seqrec("eval --checkpoint " + dir.file("s2/best.safetensors") + " --data " + dir.file("data2"), dir);
  EXPECT_NE(wrong.code, 0);
  EXPECT_NE(wrong.err.find("built for 16 videos, but " + dir.file("data2") + " has 12"), std::string::npos) << wrong.err;
}

/// Raw ids of dense ids, space separated.
std::string raw_ids(const std::vector<int64_t>& ids, const data::ItemCatalog& catalog) {
  std::string out;
  for (int64_t id : ids) out += (out.empty() ? "" : " ") + catalog.raw_id(id);
  return out;
}

/// The id column (second) of recommend's rows, after checking the header and that scores never rise.
std::vector<std::string> ranked_ids(const Result& r, const std::string& header) {
  const auto lines = lines_of(r.out);
  EXPECT_FALSE(lines.empty());
  if (lines.empty()) return {};
  EXPECT_EQ(lines[0], header);
  std::vector<std::string> ids;
  double previous = 1e9;
  for (size_t i = 1; i < lines.size(); ++i) {
    const auto f = split_tabs(lines[i]);
    EXPECT_EQ(f[0], std::to_string(i));
    EXPECT_LE(std::stod(f[2]), previous) << lines[i];
    previous = std::stod(f[2]);
    ids.push_back(f[1]);
  }
  return ids;
}

// seqrec recommend on a stage 2 checkpoint, here one trained from another through train.init_from
// (which eval used to refuse as an unknown key): the next videos of a user, never one watched, the
// same with both histories spelled out; with --video that video's comments less the user's own;
// unknown ids and a mixed request refused by flag.
TEST(LsvcrCliTest, RecommendsNextVideosAndRanksAVideosComments) {
  TempDir dir;
  make_small_lsvcr_data(dir);
  if (HasFatalFailure()) return;
  const std::string common = small_run_args(dir) + " --set train.epochs=1 --set train.eval_every=1";
  ASSERT_EQ(run_seqrec("train " + common + " --set train.out_dir=" + dir.file("s0"), dir).code, 0);
  Result r = run_seqrec("train " + common + " --set train.out_dir=" + dir.file("s2") +
                            " --set train.init_from.checkpoint=" + dir.file("s0/best.safetensors"), dir);
  ASSERT_EQ(r.code, 0) << r.err;
  const std::string ckpt = " --checkpoint " + dir.file("s2/best.safetensors");
  r = run_seqrec("eval" + ckpt, dir);
  EXPECT_EQ(r.code, 0) << r.err;

  const data::LsvcrStore store = data::LsvcrStore::load(dir.file("data/lsvcr.bin"));
  const data::ItemCatalog videos = data::ItemCatalog::load(dir.file("data/videos"));
  const data::ItemCatalog comments = data::ItemCatalog::load(dir.file("data/comments"));
  const std::string user = data::UserMap::load(dir.file("data")).raw_id(0);
  const std::vector<int64_t>& watched = store.video_histories[0].ids;
  const std::vector<int64_t>& engaged = store.comment_histories[0].ids;
  ASSERT_FALSE(engaged.empty());

  const Result by_user = run_seqrec("recommend" + ckpt + " --user " + user + " --k 100", dir);
  ASSERT_EQ(by_user.code, 0) << by_user.err;
  const auto next = ranked_ids(by_user, "rank\tvideo_id\tscore\ttitle");
  ASSERT_GE(next.size(), 2u);
  const std::set<int64_t> seen(watched.begin(), watched.end());
  EXPECT_EQ(next.size(), static_cast<size_t>(store.num_videos) - seen.size());
  for (int64_t v : seen) EXPECT_EQ(std::count(next.begin(), next.end(), videos.raw_id(v)), 0) << "watched " << v;
  const Result spelled = run_seqrec("recommend" + ckpt + " --history '" + raw_ids(watched, videos) +
                                        "' --comment-history '" + raw_ids(engaged, comments) + "' --k 100", dir);
  ASSERT_EQ(spelled.code, 0) << spelled.err;
  EXPECT_EQ(spelled.out, by_user.out);
  const Result videos_only = run_seqrec("recommend" + ckpt + " --history '" + raw_ids(watched, videos) + "' --k 100", dir);
  ASSERT_EQ(videos_only.code, 0) << videos_only.err;
  EXPECT_NE(videos_only.out, by_user.out);  // the comment history is read

  int64_t video = 1;  // the largest comment section
  for (int64_t v = 1; v <= store.num_videos; ++v)
    if (store.video_comments[v].size() > store.video_comments[video].size()) video = v;
  const Result ranked = run_seqrec("recommend" + ckpt + " --user " + user + " --video " + videos.raw_id(video) + " --k 1000", dir);
  ASSERT_EQ(ranked.code, 0) << ranked.err;
  const auto got = ranked_ids(ranked, "rank\tcomment_id\tscore\ttext");
  std::set<std::string> want;
  for (int64_t c : store.video_comments[video])
    if (std::find(engaged.begin(), engaged.end(), c) == engaged.end()) want.insert(comments.raw_id(c));
  EXPECT_EQ(std::set<std::string>(got.begin(), got.end()), want);
  EXPECT_EQ(got.size(), want.size());

  for (const auto& [args, message] : std::vector<std::pair<std::string, std::string>>{
           {" --user " + user + " --video nope", "--video: unknown video id 'nope' (not in " + dir.file("data/videos/items.tsv")},
           {" --history nope", "--history: unknown id 'nope'"},
           {" --user " + user + " --comment-history " + comments.raw_id(1), "give exactly one of --user RAW_ID or --history"},
           {" --user nobody", "--user: unknown user id 'nobody'"}}) {
    const Result bad = run_seqrec("recommend" + ckpt + args, dir);
    EXPECT_EQ(bad.code, 2) << args;
    EXPECT_NE(bad.err.find(message), std::string::npos) << bad.err;
  }
}

}  // namespace
}  // namespace seqrec::testing::cli
