// LSVCR two-behaviour data: the TSV reader (errors with file:line), the store round trip, the
// per-task split and the synthetic generator's structure.
#include "seqrec/data/lsvcr_data.h"

#include <gtest/gtest.h>

#include <fstream>
#include <iterator>

#include "seqrec/common/error.h"
#include "seqrec/data/item_catalog.h"
#include "seqrec/data/lsvcr_synth.h"
#include "support.h"

namespace seqrec::data {
namespace {

using seqrec::testing::TempDir;

std::string slurp_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

void write_input(const TempDir& dir, const std::string& comments) {
  dir.write("videos.tsv", "video_id\ttitle\nva\tcooking pasta\nvb\tsoccer goals\n");
  dir.write("comments.tsv", comments);
  dir.write("video_history.tsv", "user_id\tvideo_id\ttimestamp\nu1\tvb\t20\nu1\tva\t10\nu2\tva\t5\n");
  dir.write("comment_history.tsv", "user_id\tcomment_id\ttimestamp\nu1\tc2\t15\nu3\tc1\t7\n");
}

TEST(LsvcrDataTest, PrepareMapsIdsSortsHistoriesAndRoundTrips) {
  TempDir in, out;
  write_input(in, "comment_id\tvideo_id\ttext\nc1\tvb\tgreat goal\nc2\tva\tyummy\nc3\tvb\toffside\n");
  const LsvcrPrepareReport r = prepare_lsvcr(in.path(), out.path());
  EXPECT_EQ(r.num_users, 3);
  EXPECT_EQ(r.num_videos, 2);
  EXPECT_EQ(r.num_comments, 3);
  EXPECT_EQ(r.num_video_events, 3);
  EXPECT_EQ(r.num_comment_events, 2);
  const LsvcrStore s = LsvcrStore::load(out.file(kLsvcrStoreFile));
  EXPECT_EQ(s.comment_video, (std::vector<int64_t>{0, 2, 1, 2}));
  EXPECT_EQ(s.video_hot_comment, (std::vector<int64_t>{0, 2, 1}));  // first listed comment
  EXPECT_EQ(s.video_comments[2], (std::vector<int64_t>{1, 3}));
  ASSERT_EQ(s.num_users(), 3);
  EXPECT_EQ(s.video_histories[0].ids, (std::vector<int64_t>{1, 2}));  // sorted by time
  EXPECT_EQ(s.video_histories[0].timestamps, (std::vector<int64_t>{10, 20}));
  EXPECT_EQ(s.comment_histories[0].ids, (std::vector<int64_t>{2}));
  EXPECT_TRUE(s.video_histories[2].ids.empty());  // u3 only commented
  EXPECT_EQ(s.comment_histories[2].ids, (std::vector<int64_t>{1}));
  // users.tsv as every prepared store has it (UserMap reads it: recommend --user); the header line
  // the LSVCR stores had before is still read.
  EXPECT_EQ(slurp_file(out.file("users.tsv")), "0\tu1\n1\tu2\n2\tu3\n");
  EXPECT_EQ(UserMap::load(out.path()).find("u3"), 2);
  out.write("users.tsv", "user\traw_id\n0\tu1\n1\tu2\n");
  EXPECT_EQ(UserMap::load(out.path()).find("u2"), 1);
}

/// The output is owned as prepare's store is: a marker lists what prepare wrote, a second run
/// replaces it, and a folder holding anything else is refused and left as it was.
TEST(LsvcrDataTest, PrepareReplacesOnlyItsOwnOutput) {
  TempDir in, out;
  write_input(in, "comment_id\tvideo_id\ttext\nc1\tvb\tgreat goal\nc2\tva\tyummy\n");
  const std::string dir = out.file("data");
  prepare_lsvcr(in.path(), dir);
  EXPECT_EQ(slurp_file(dir + "/.seqrec-owned"),
            "seqrec-owned lsvcr-store\ncomments\n" + std::string(kLsvcrStoreFile) + "\nusers.tsv\nvideos\n");
  write_input(in, "comment_id\tvideo_id\ttext\nc1\tvb\tgreat goal\nc2\tva\tyummy\nc3\tva\tmore\n");
  EXPECT_EQ(prepare_lsvcr(in.path(), dir).num_comments, 3);  // replaced
  out.write("data/notes.txt", "mine");
  ASSERT_THROWS_WITH(prepare_lsvcr(in.path(), dir), "prepare.output: expected a new folder, an empty one or an "
                                                     "earlier lsvcr prepare output, but " + dir + "/notes.txt");
  EXPECT_EQ(slurp_file(dir + "/notes.txt"), "mine");
  EXPECT_EQ(LsvcrStore::load(dir + "/" + kLsvcrStoreFile).num_comments, 3);
}

TEST(LsvcrDataTest, CommentOnUnknownVideoIsRejectedWithFileAndLine) {
  TempDir in, out;
  write_input(in, "comment_id\tvideo_id\ttext\nc1\tvb\tok\nc2\tvz\tno such video\n");
  ASSERT_THROWS_WITH(prepare_lsvcr(in.path(), out.path()), in.file("comments.tsv") + ":3: comment 'c2' is on unknown video 'vz'");
  EXPECT_THROW(prepare_lsvcr(in.path(), out.path()), DataError);
}

TEST(LsvcrDataTest, MalformedLinesNameFileAndLine) {
  TempDir in, out;
  write_input(in, "comment_id\tvideo_id\ttext\nc1\tvb\tok\nc2\tva\n");
  ASSERT_THROWS_WITH(prepare_lsvcr(in.path(), out.path()), "comments.tsv:3: expected 3 tab-separated fields, got 2");
  write_input(in, "comment_id\tvideo_id\ttext\nc1\tvb\tok\nc1\tva\tagain\n");
  ASSERT_THROWS_WITH(prepare_lsvcr(in.path(), out.path()), "comments.tsv:3: duplicate comment id 'c1'");
  write_input(in, "comment_id\tvideo_id\ttext\nc1\tvb\tok\nc2\tva\tx\n");
  in.write("comment_history.tsv", "user_id\tcomment_id\ttimestamp\nu1\tc9\t15\n");
  ASSERT_THROWS_WITH(prepare_lsvcr(in.path(), out.path()), "comment_history.tsv:2: unknown comment 'c9'");
  in.write("comment_history.tsv", "user_id\tcomment_id\ttimestamp\nu1\tc2\tnoon\n");
  ASSERT_THROWS_WITH(prepare_lsvcr(in.path(), out.path()), "comment_history.tsv:2: expected an integer timestamp, got 'noon'");
  in.write("comment_history.tsv", "user\tcomment\ttime\n");
  ASSERT_THROWS_WITH(prepare_lsvcr(in.path(), out.path()), "comment_history.tsv:1: expected header 'user_id<TAB>comment_id<TAB>timestamp'");
}

TEST(LsvcrDataTest, LoadRejectsForeignAndTruncatedFiles) {
  TempDir dir;
  const std::string bad = dir.write("x.bin", "not a store at all");
  ASSERT_THROWS_WITH(LsvcrStore::load(bad), "not an lsvcr store");
  LsvcrStore s;
  s.num_videos = 1;
  s.comment_video = {0};
  s.video_hot_comment = {0, 0};
  s.video_histories = {LsvcrHistory{{1}, {3}}};
  s.comment_histories = {LsvcrHistory{}};
  s.save(dir.file("s.bin"));
  std::ifstream f(dir.file("s.bin"), std::ios::binary);
  std::string content((std::istreambuf_iterator<char>(f)), {});
  dir.write("t.bin", content.substr(0, content.size() - 4));
  ASSERT_THROWS_WITH(LsvcrStore::load(dir.file("t.bin")), "truncated lsvcr store");
  EXPECT_EQ(LsvcrStore::load(dir.file("s.bin")).video_histories[0].ids, (std::vector<int64_t>{1}));
  // An array length whose byte size wraps around 2^64 (2^61 * 8) is truncation, not a huge allocation.
  std::string wrap = content.substr(0, 8 * 4);  // magic, version, num_videos, num_comments
  const int64_t huge = int64_t{1} << 61;
  wrap.append(reinterpret_cast<const char*>(&huge), 8);
  dir.write("wrap.bin", wrap);
  ASSERT_THROWS_WITH(LsvcrStore::load(dir.file("wrap.bin")), "truncated lsvcr store (array of 2305843009213693952 at byte 40)");
}

/// One user: videos 1..5 at t = 10, 20, .., 50; comment sessions on videos 1 (two comments), 2, 3, 4.
LsvcrStore hand_store() {
  LsvcrStore s;
  s.num_videos = 5;
  s.num_comments = 8;
  s.comment_video = {0, 1, 1, 2, 2, 3, 3, 4, 4};
  s.video_hot_comment = {0, 1, 3, 5, 7, 0};
  s.video_comments = {{}, {1, 2}, {3, 4}, {5, 6}, {7, 8}, {}};
  s.video_histories = {LsvcrHistory{{1, 2, 3, 4, 5}, {10, 20, 30, 40, 50}}};
  s.comment_histories = {LsvcrHistory{{1, 2, 3, 6, 8}, {11, 12, 21, 31, 41}}};
  return s;
}

TEST(LsvcrDataTest, SplitHoldsOutTheLastTwoTargetsOfEachTask) {
  const LsvcrSplits sp = split_lsvcr(hand_store());
  ASSERT_EQ(sp.test.video.size(), 1u);
  EXPECT_EQ(sp.test.video[0].target_video, 5);
  EXPECT_EQ(sp.test.video[0].video_end, 4);
  EXPECT_EQ(sp.test.video[0].comment_end, 5);  // all comments are before t = 50
  EXPECT_EQ(sp.valid.video[0].target_video, 4);
  ASSERT_EQ(sp.test.comment.size(), 1u);  // sessions: {1,2}@v1, {3}@v2, {6}@v3, {8}@v4
  EXPECT_EQ(sp.test.comment[0].target_video, 4);
  EXPECT_EQ(sp.test.comment[0].positive_comments, (std::vector<int64_t>{8}));
  EXPECT_EQ(sp.test.comment[0].comment_end, 4);
  EXPECT_EQ(sp.test.comment[0].video_end, 4);  // videos up to t = 41 (v4 watched at 40)
  EXPECT_EQ(sp.valid.comment[0].target_video, 3);
  // Cut at the first held-out event: the valid session starts at t = 31, before the valid video (40).
  ASSERT_EQ(sp.train.video.size(), 2u);  // targets v2 (t 20), v3 (t 30); v1 has no history at all
  EXPECT_EQ(sp.train.video[0].target_video, 2);
  EXPECT_EQ(sp.train.video[0].comment_end, 2);
  EXPECT_EQ(sp.train.video[1].target_video, 3);
  ASSERT_EQ(sp.train.comment.size(), 2u);
  EXPECT_EQ(sp.train.comment[0].positive_comments, (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(sp.train.comment[0].video_end, 1);
  EXPECT_EQ(sp.train.comment[0].comment_end, 0);
  EXPECT_EQ(sp.train.comment[1].target_video, 2);
}

TEST(LsvcrDataTest, SynthHasStructuredCommentSectionsAndSeveralPositives) {
  TempDir raw, out;
  LsvcrSynthOptions o;
  o.num_users = 60;
  o.num_videos = 40;
  o.num_topics = 4;
  o.output = raw.path();
  const LsvcrSynthReport r = generate_lsvcr_synthetic(o);
  EXPECT_GT(r.num_comment_events, 0);
  prepare_lsvcr(raw.path(), out.path());
  const LsvcrStore s = LsvcrStore::load(out.file(kLsvcrStoreFile));
  EXPECT_EQ(s.num_videos, 40);
  EXPECT_EQ(s.num_comments, r.num_comments);
  for (int64_t v = 1; v <= s.num_videos; ++v) {
    EXPECT_GE(s.video_comments[v].size(), 20u);
    EXPECT_LE(s.video_comments[v].size(), 200u);
  }
  const LsvcrSplits sp = split_lsvcr(s);
  EXPECT_GT(sp.test.video.size(), 40u);
  EXPECT_GT(sp.test.comment.size(), 20u);
  size_t multi = 0;
  for (const auto& x : sp.train.comment) multi += x.positive_comments.size() > 1;
  EXPECT_GT(multi, sp.train.comment.size() / 4);
  // Deterministic for a seed.
  TempDir again;
  o.output = again.path();
  generate_lsvcr_synthetic(o);
  std::ifstream a(raw.file("comment_history.tsv")), b(again.file("comment_history.tsv"));
  EXPECT_EQ(std::string((std::istreambuf_iterator<char>(a)), {}), std::string((std::istreambuf_iterator<char>(b)), {}));
}

TEST(LsvcrDataTest, SynthValidatesItsOptions) {
  LsvcrSynthOptions o;
  o.output = "/nonexistent";
  o.max_comments = 5;
  ASSERT_THROWS_WITH(validate(o), "synth.max_comments: must be >= synth.min_comments");
  o = LsvcrSynthOptions{};
  o.output = "/nonexistent";
  o.style_share = 1.5;
  ASSERT_THROWS_WITH(validate(o), "synth.style_share: must be in [0, 1]");
}

}  // namespace
}  // namespace seqrec::data
