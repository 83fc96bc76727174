// Semantic-id tokens, collision statistics and LC-Rec's index.json: round trip, exact bytes, and the
// errors a malformed file gets.
#include "seqrec/semantic_id/item_index.h"

#include <gtest/gtest.h>

#include "seqrec/common/error.h"
#include "seqrec/common/fs.h"
#include "support.h"

namespace seqrec::semantic_id {
namespace {

using seqrec::testing::TempDir;

TEST(ItemIndexTest, TokensFormatAndParseByLevel) {
  EXPECT_EQ(code_token(0, 12), "<a_12>");
  EXPECT_EQ(code_token(3, 0), "<d_0>");
  EXPECT_EQ(code_token(4, 255), "<e_255>");
  EXPECT_EQ(parse_code_token("<b_3>", 1), 3);
  EXPECT_EQ(parse_code_token("<a_0>", 0), 0);
  EXPECT_EQ(parse_code_token("<a_255>", 0), 255);
  EXPECT_EQ(parse_code_token("<b_3>", 0), -1);   // prefix of another level
  EXPECT_EQ(parse_code_token("<a_03>", 0), -1);  // leading zero: a different vocabulary string
  EXPECT_EQ(parse_code_token("<a_>", 0), -1);
  EXPECT_EQ(parse_code_token("<a_1x>", 0), -1);
  EXPECT_EQ(parse_code_token("a_1", 0), -1);
  EXPECT_EQ(parse_code_token("<f_1>", 5), -1);   // no sixth level
}

TEST(ItemIndexTest, CollisionStatsCountSharedTuples) {
  // rows: (1,2) (1,2) (1,3) (1,2) (0,3) -> tuples {(1,2) x3, (1,3), (0,3)}
  const std::vector<int64_t> codes = {1, 2, 1, 2, 1, 3, 1, 2, 0, 3};
  const CollisionStats s = collision_stats(codes, 2);
  EXPECT_EQ(s.num_items, 5);
  EXPECT_EQ(s.num_distinct, 3);
  EXPECT_EQ(s.num_groups, 1);
  EXPECT_EQ(s.max_group, 3);
  EXPECT_DOUBLE_EQ(s.rate(), 2.0 / 5.0);
  const auto groups = collision_groups(codes, 2);
  ASSERT_EQ(groups.size(), 1u);
  EXPECT_EQ(groups[0], (std::vector<int64_t>{0, 1, 3}));
  EXPECT_EQ(used_codes_per_level(codes, 2), (std::vector<int64_t>{2, 2}));
  EXPECT_DOUBLE_EQ(collision_stats({0, 1, 2}, 1).rate(), 0.0);
}

TEST(ItemIndexTest, CollisionGroupsAreOrderedByFirstRow) {
  const std::vector<int64_t> codes = {5, 7, 7, 5, 9, 7};  // one level
  const auto groups = collision_groups(codes, 1);
  ASSERT_EQ(groups.size(), 2u);
  EXPECT_EQ(groups[0], (std::vector<int64_t>{0, 3}));
  EXPECT_EQ(groups[1], (std::vector<int64_t>{1, 2, 5}));
}

TEST(ItemIndexTest, WritesPythonJsonDumpBytesAndReadsThemBack) {
  TempDir dir;
  ItemIndex index;
  index.num_levels = 3;
  index.codes = {12, 3, 0, 1, 255, 77};
  const std::string path = dir.file("Beauty.index.json");
  write_index_json(path, index);
  EXPECT_EQ(read_file(path), R"({"0": ["<a_12>", "<b_3>", "<c_0>"], "1": ["<a_1>", "<b_255>", "<c_77>"]})");
  IndexFileReport report;
  const ItemIndex back = read_index_json(path, 2, &report);
  EXPECT_EQ(back.num_levels, 3);
  EXPECT_EQ(back.codes, index.codes);
  EXPECT_EQ(report.collisions.num_distinct, 2);
  EXPECT_EQ(back.row_text(1), "<a_1><b_255><c_77>");
  EXPECT_EQ(back.item_texts(), (std::vector<std::string>{"", "<a_12><b_3><c_0>", "<a_1><b_255><c_77>"}));
  EXPECT_EQ(back.item_codes(2)[1], 255);  // dense item 2 = row 1
}

TEST(ItemIndexTest, ReadsKeysInAnyOrderAndReportsCollisions) {
  TempDir dir;
  const std::string path =
      dir.write("x.index.json", R"({"2": ["<a_1>", "<b_1>"], "0": ["<a_1>", "<b_1>"], "1": ["<a_0>", "<b_4>"]})");
  IndexFileReport report;
  const ItemIndex index = read_index_json(path, -1, &report);
  EXPECT_EQ(index.codes, (std::vector<int64_t>{1, 1, 0, 4, 1, 1}));
  EXPECT_EQ(report.collisions.num_groups, 1);
  EXPECT_EQ(report.collisions.max_group, 2);
}

TEST(ItemIndexTest, MalformedFilesNameTheFileAndTheKey) {
  TempDir dir;
  auto read = [&](const std::string& text, int64_t expected = -1) {
    read_index_json(dir.write("bad.index.json", text), expected);
  };
  const std::string f = dir.file("bad.index.json");
  ASSERT_THROWS_WITH(read("{\"0\": [\"<a_1>\"]"), f + ": not valid JSON");
  ASSERT_THROWS_WITH(read("[1, 2]"), f + ": expected a JSON object");
  ASSERT_THROWS_WITH(read("{}"), f + ": no items");
  ASSERT_THROWS_WITH(read(R"({"0": ["<a_1>"], "0": ["<a_2>"]})"), f + ": key \"0\" appears more than once");
  ASSERT_THROWS_WITH(read(R"({"0": ["<a_1>"], "2": ["<a_2>"]})"), f + ": key \"2\": row out of range; 2 items need keys 0..1");
  ASSERT_THROWS_WITH(read(R"({"0": ["<a_1>"], "x": ["<a_2>"]})"), f + ": key \"x\": keys must be item rows");
  ASSERT_THROWS_WITH(read(R"({"0": ["<a_1>"], "01": ["<a_2>"]})"), f + ": key \"01\"");
  ASSERT_THROWS_WITH(read(R"({"0": ["<a_1>", "<b_2>"], "1": ["<a_2>"]})"),
                     f + ": key \"1\": has 1 levels, earlier items have 2");
  ASSERT_THROWS_WITH(read(R"({"0": ["<a_1>", "<c_2>"]})"), f + ": key \"0\": token 1 is \"<c_2>\", expected <b_12>-style");
  ASSERT_THROWS_WITH(read(R"({"0": ["<a_1>", 7]})"), f + ": key \"0\": token 1 is 7");
  ASSERT_THROWS_WITH(read(R"({"0": []})"), f + ": key \"0\": expected a list of 1..5 tokens");
  ASSERT_THROWS_WITH(read(R"({"0": "<a_1>"})"), f + ": key \"0\": expected a list");
  ASSERT_THROWS_WITH(read(R"({"0": ["<a_1>"], "1": ["<a_2>"]})", 3), f + ": has 2 items, the prepared data has 3");
  ASSERT_THROWS_WITH(read_index_json(dir.file("missing.json")), "cannot open " + dir.file("missing.json"));
}

}  // namespace
}  // namespace seqrec::semantic_id
