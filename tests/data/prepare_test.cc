// Tests of prepare (readers, filters, id mapping, outputs, failures) and of ItemCatalog/UserMap.
#include "seqrec/data/prepare.h"

#include <filesystem>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "seqrec/common/error.h"
#include "seqrec/common/fs.h"
#include "seqrec/data/interaction_store.h"
#include "seqrec/data/item_catalog.h"
#include "seqrec/data/parquet.h"
#include "seqrec/data/parquet_writer.h"
#include "seqrec/data/synthetic_scale.h"
#include "support.h"

namespace seqrec::data {
namespace {

using seqrec::testing::TempDir;
using Seqs = std::vector<std::vector<int32_t>>;

Seqs sequences(const InteractionStore& s) {
  Seqs out;
  for (int64_t u = 0; u < s.num_users(); ++u) {
    const auto items = s.items(u);
    out.emplace_back(items.begin(), items.end());
  }
  return out;
}

std::vector<std::vector<int64_t>> times(const InteractionStore& s) {
  std::vector<std::vector<int64_t>> out;
  for (int64_t u = 0; u < s.num_users(); ++u) {
    const auto ts = s.timestamps(u);
    out.emplace_back(ts.begin(), ts.end());
  }
  return out;
}

PrepareOptions options_for(const std::string& input, InputFormat format, const TempDir& dir) {
  PrepareOptions o;
  o.input = input;
  o.format = format;
  o.output = dir.file("out");
  return o;
}

/// Entries of a directory (names), to check that nothing is left behind.
std::vector<std::string> listing(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    names.push_back(e.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

TEST(Prepare, ParsesFormatNames) {
  EXPECT_EQ(parse_input_format("csv", "p"), InputFormat::kCsv);
  EXPECT_EQ(parse_input_format("movielens_dat", "p"), InputFormat::kMovieLensDat);
  EXPECT_EQ(parse_input_format("movielens_csv", "p"), InputFormat::kMovieLensCsv);
  EXPECT_EQ(parse_input_format("sasrec_pairs", "p"), InputFormat::kSasrecPairs);
  EXPECT_EQ(parse_input_format("user_sequences", "p"), InputFormat::kUserSequences);
  EXPECT_EQ(parse_input_format("parquet", "p"), InputFormat::kParquet);
  ASSERT_THROWS_WITH(parse_input_format("orc", "prepare.format"),
                     "prepare.format: expected one of csv, parquet, movielens_dat");
  EXPECT_EQ(parse_item_format("none", "p"), ItemFormat::kNone);
  EXPECT_EQ(parse_item_format("table", "p"), ItemFormat::kTable);
  EXPECT_EQ(parse_item_format("movielens_dat", "p"), ItemFormat::kMovieLensDat);
  ASSERT_THROWS_WITH(parse_item_format("xml", "prepare.items_format"), "got 'xml'");
}

TEST(Prepare, CsvWithCustomSeparatorAndColumns) {
  TempDir dir;
  // Non-integer ids: dense ids follow first appearance. Timestamps out of file order.
  const std::string in = dir.write("data.csv",
                                   "when;who;what\n"
                                   "30;bob;x\n"
                                   "10;bob;y\n"
                                   "5;amy;z\n"
                                   "20;bob;z\n");
  PrepareOptions o = options_for(in, InputFormat::kCsv, dir);
  o.sep = ";";
  o.user_col = "who";
  o.item_col = "what";
  o.time_col = "when";
  const PrepareReport r = prepare(o);
  EXPECT_EQ(r.rows_read, 4);
  EXPECT_EQ(r.num_users, 2);
  EXPECT_EQ(r.num_items, 3);
  EXPECT_EQ(r.num_events, 4);
  EXPECT_TRUE(r.has_timestamps);
  const auto s = InteractionStore::open(o.output + "/interactions.bin");
  EXPECT_TRUE(s.has_timestamps());
  // bob=0, amy=1; x=1, y=2, z=3. bob sorted by time: y(10) z(20) x(30).
  EXPECT_EQ(sequences(s), (Seqs{{2, 3, 1}, {3}}));
  EXPECT_EQ(times(s), (std::vector<std::vector<int64_t>>{{10, 20, 30}, {5}}));
  EXPECT_EQ(read_file(o.output + "/users.tsv"), "0\tbob\n1\tamy\n");
  EXPECT_EQ(read_file(o.output + "/items.tsv"), "item_id\traw_id\n1\tx\n2\ty\n3\tz\n");
}

TEST(Prepare, CsvTabSeparatorWithoutTimestamps) {
  TempDir dir;
  const std::string in = dir.write("data.tsv", "user_id\titem_id\nA\tp\nA\tq\nB\tp\n");
  PrepareOptions o = options_for(in, InputFormat::kCsv, dir);
  o.sep = "\\t";  // as written in a YAML config
  o.time_col = "";
  const PrepareReport r = prepare(o);
  EXPECT_FALSE(r.has_timestamps);
  const auto s = InteractionStore::open(o.output + "/interactions.bin");
  EXPECT_FALSE(s.has_timestamps());
  EXPECT_EQ(sequences(s), (Seqs{{1, 2}, {1}}));
}

TEST(Prepare, CsvMissingColumn) {
  TempDir dir;
  const std::string in = dir.write("cols.csv", "item_id,user,timestamp\n1,2,3\n");
  PrepareOptions o = options_for(in, InputFormat::kCsv, dir);
  ASSERT_THROWS_WITH(prepare(o), "cols.csv:1: expected a column named 'user_id'");
}

TEST(Prepare, HllmCsvStableSortOnEqualTimestamps) {
  TempDir dir;
  // HLLM layout. User 7: items 30 and 10 share timestamp 100 and keep their file order.
  const std::string in = dir.write("hllm.csv",
                                   "item_id,user_id,timestamp\n"
                                   "30,7,100\n"
                                   "10,7,100\n"
                                   "20,7,50\n"
                                   "40,7,100\n"
                                   "10,3,1\n");
  const auto events = read_events(options_for(in, InputFormat::kCsv, dir), nullptr);
  ASSERT_EQ(events.size(), 5u);
  EXPECT_EQ(events[0].item, "30");
  EXPECT_EQ(events[0].user, "7");
  EXPECT_EQ(events[0].timestamp, 100);
  EXPECT_EQ(events[4].order, 4);

  PrepareOptions o = options_for(in, InputFormat::kCsv, dir);
  prepare(o);
  const auto s = InteractionStore::open(o.output + "/interactions.bin");
  // Numeric ids: users 3->0, 7->1; items 10->1, 20->2, 30->3, 40->4.
  EXPECT_EQ(sequences(s), (Seqs{{1}, {2, 3, 1, 4}}));
  EXPECT_EQ(times(s)[1], (std::vector<int64_t>{50, 100, 100, 100}));
  EXPECT_EQ(read_file(o.output + "/users.tsv"), "0\t3\n1\t7\n");
}

TEST(Prepare, StableSortOnManyEqualTimestamps) {
  TempDir dir;
  // Enough events that an unstable sort (introsort beyond 16 elements) would reorder ties:
  // item k has timestamp k % 3, so the expected order is by (k % 3, k).
  std::string csv = "user_id,item_id,timestamp\n";
  const int n = 60;
  for (int k = n; k >= 1; --k) csv += "u," + std::to_string(k) + "," + std::to_string(k % 3) + "\n";
  PrepareOptions o = options_for(dir.write("ties.csv", csv), InputFormat::kCsv, dir);
  prepare(o);
  const auto s = InteractionStore::open(o.output + "/interactions.bin");
  std::vector<int32_t> want;
  for (int r = 0; r < 3; ++r) {
    for (int k = n; k >= 1; --k) {
      if (k % 3 == r) want.push_back(k);  // numeric ids: dense id == raw id here
    }
  }
  EXPECT_EQ(sequences(s), (Seqs{want}));
}

TEST(Prepare, MovieLensDat) {
  TempDir dir;
  const std::string in = dir.write("ratings.dat",
                                   "1::1193::5::978300760\n"
                                   "1::661::3::978302109\n"
                                   "1::914::3::978301968\n"
                                   "2::1357::5::978298709\n");
  PrepareOptions o = options_for(in, InputFormat::kMovieLensDat, dir);
  const PrepareReport r = prepare(o);
  EXPECT_TRUE(r.has_timestamps);
  EXPECT_EQ(r.num_users, 2);
  EXPECT_EQ(r.num_items, 4);
  const auto s = InteractionStore::open(o.output + "/interactions.bin");
  // Items 661->1, 914->2, 1193->3, 1357->4; user 1 by time: 1193, 914, 661.
  EXPECT_EQ(sequences(s), (Seqs{{3, 2, 1}, {4}}));
  EXPECT_EQ(times(s)[0], (std::vector<int64_t>{978300760, 978301968, 978302109}));
}

TEST(Prepare, MovieLensDatBadTimestamp) {
  TempDir dir;
  const std::string in = dir.write("ratings.dat", "1::1::5::1\n\n1::2::5::2\n1::3::5::3\n1::4::4::abc\n");
  ASSERT_THROWS_WITH(prepare(options_for(in, InputFormat::kMovieLensDat, dir)),
                     "ratings.dat:5: expected integer timestamp, got 'abc'");
  EXPECT_FALSE(path_exists(dir.file("out")));
}

TEST(Prepare, MovieLensCsv) {
  TempDir dir;
  const std::string in = dir.write("ratings.csv",
                                   "userId,movieId,rating,timestamp\r\n"
                                   "1,2,3.5,1112486027\r\n"
                                   "1,29,3.5,1112484676\r\n"
                                   "2,2,4.0,1112484819\r\n");
  PrepareOptions o = options_for(in, InputFormat::kMovieLensCsv, dir);
  const PrepareReport r = prepare(o);
  EXPECT_TRUE(r.has_timestamps);
  const auto s = InteractionStore::open(o.output + "/interactions.bin");
  EXPECT_EQ(sequences(s), (Seqs{{2, 1}, {1}}));
  EXPECT_EQ(read_file(o.output + "/items.tsv"), "item_id\traw_id\n1\t2\n2\t29\n");
}

TEST(Prepare, SasrecPairsKeepFileOrder) {
  TempDir dir;
  const std::string in = dir.write("pairs.txt", "1 3\n1 1\n2 2\n1 2\n2 3\n");
  PrepareOptions o = options_for(in, InputFormat::kSasrecPairs, dir);
  const PrepareReport r = prepare(o);
  EXPECT_FALSE(r.has_timestamps);
  EXPECT_EQ(r.rows_read, 5);
  const auto s = InteractionStore::open(o.output + "/interactions.bin");
  EXPECT_FALSE(s.has_timestamps());
  EXPECT_EQ(sequences(s), (Seqs{{3, 1, 2}, {2, 3}}));
}

TEST(Prepare, UserSequencesWithTabAndHeader) {
  TempDir dir;
  const std::string in = dir.write("seq.tsv",
                                   "user_id\tmovie_ids_in_time_order\n"
                                   "5\t30 10 20\n"
                                   "2\t10 40\n");
  PrepareOptions o = options_for(in, InputFormat::kUserSequences, dir);
  const PrepareReport r = prepare(o);
  EXPECT_EQ(r.rows_read, 2);
  EXPECT_EQ(r.num_events, 5);
  const auto s = InteractionStore::open(o.output + "/interactions.bin");
  // Users 2->0, 5->1; items 10,20,30,40 -> 1..4; order within a line kept.
  EXPECT_EQ(sequences(s), (Seqs{{1, 4}, {3, 1, 2}}));
  EXPECT_EQ(read_file(o.output + "/users.tsv"), "0\t2\n1\t5\n");
}

TEST(Prepare, UserSequencesWithSpacesNoHeader) {
  TempDir dir;
  const std::string in = dir.write("Beauty.txt", "1 1 2 3\n2 4 2\n3 5\n");
  PrepareOptions o = options_for(in, InputFormat::kUserSequences, dir);
  const PrepareReport r = prepare(o);
  EXPECT_EQ(r.num_users, 3);
  EXPECT_EQ(r.num_items, 5);
  const auto s = InteractionStore::open(o.output + "/interactions.bin");
  EXPECT_EQ(sequences(s), (Seqs{{1, 2, 3}, {4, 2}, {5}}));
}

TEST(Prepare, UserSequencesLineWithoutItems) {
  TempDir dir;
  const std::string in = dir.write("seqs.txt", "1 1 2\n2\n");
  ASSERT_THROWS_WITH(prepare(options_for(in, InputFormat::kUserSequences, dir)),
                     "seqs.txt:2: expected at least 2 fields");
}

TEST(Prepare, NonIntegerIdsUseFirstAppearanceAfterFiltering) {
  TempDir dir;
  // "zz" appears first but only once: after the item filter "b" is the first item seen.
  const std::string in = dir.write("p.txt", "u1 zz\nu2 b\nu1 a\nu2 a\nu1 b\n");
  PrepareOptions o = options_for(in, InputFormat::kSasrecPairs, dir);
  o.min_item_interactions = 2;
  prepare(o);
  EXPECT_EQ(read_file(o.output + "/items.tsv"), "item_id\traw_id\n1\tb\n2\ta\n");
  // u2 now has the first kept event.
  EXPECT_EQ(read_file(o.output + "/users.tsv"), "0\tu2\n1\tu1\n");
}

/// u1,u2 form a 2-core on {a,b}; e is rare, so u4 and u5 fall below 2 after the first pass,
/// which in turn leaves c and d with one interaction each: only a second pass removes u3.
const char* const kCoreExample =
    "u1 a\nu1 b\n"
    "u2 a\nu2 b\n"
    "u3 c\nu3 d\n"
    "u4 c\nu4 e\n"
    "u5 d\n";

TEST(Prepare, MinCountFiltersOnePass) {
  TempDir dir;
  const std::string in = dir.write("core.txt", kCoreExample);
  PrepareOptions o = options_for(in, InputFormat::kSasrecPairs, dir);
  o.min_item_interactions = 2;
  o.min_user_interactions = 2;
  const auto kept = filter_events(read_events(o, nullptr), o);
  std::vector<std::string> got;
  for (const auto& e : kept) got.push_back(e.user + ":" + e.item);
  // Items counted on the raw data (e dropped), then users (u4, u5 dropped); c and d survive.
  EXPECT_EQ(got, (std::vector<std::string>{"u1:a", "u1:b", "u2:a", "u2:b", "u3:c", "u3:d"}));
  EXPECT_EQ(kept[4].order, 4);  // original row order is preserved

  const PrepareReport r = prepare(o);
  EXPECT_EQ(r.num_users, 3);
  EXPECT_EQ(r.num_items, 4);
}

TEST(Prepare, KcoreNeedsSeveralPasses) {
  TempDir dir;
  const std::string in = dir.write("core.txt", kCoreExample);
  PrepareOptions o = options_for(in, InputFormat::kSasrecPairs, dir);
  o.min_item_interactions = 2;
  o.min_user_interactions = 2;
  o.kcore = true;
  const auto kept = filter_events(read_events(o, nullptr), o);
  std::vector<std::string> got;
  for (const auto& e : kept) got.push_back(e.user + ":" + e.item);
  EXPECT_EQ(got, (std::vector<std::string>{"u1:a", "u1:b", "u2:a", "u2:b"}));

  const PrepareReport r = prepare(o);
  EXPECT_EQ(r.num_users, 2);
  EXPECT_EQ(r.num_items, 2);
  EXPECT_EQ(read_file(o.output + "/users.tsv"), "0\tu1\n1\tu2\n");
}

TEST(Prepare, EmptyAfterFiltering) {
  TempDir dir;
  const std::string in = dir.write("few.txt", "1 1\n2 2\n");
  PrepareOptions o = options_for(in, InputFormat::kSasrecPairs, dir);
  o.min_user_interactions = 5;
  ASSERT_THROWS_WITH(prepare(o), "no interactions left after filtering");
  EXPECT_EQ(listing(dir.path()), (std::vector<std::string>{"few.txt"}));
}

TEST(Prepare, MalformedRowNamesFileAndLine) {
  TempDir dir;
  const std::string in = dir.write("bad.csv", "item_id,user_id,timestamp\n1,1,5\n2,1\n3,1,7\n");
  ASSERT_THROWS_WITH(prepare(options_for(in, InputFormat::kCsv, dir)),
                     "bad.csv:3: expected 3 fields, got 2");
  // Nothing is left behind: no output, no temp dir.
  EXPECT_EQ(listing(dir.path()), (std::vector<std::string>{"bad.csv"}));
}

TEST(Prepare, SkipBadRowsCounts) {
  TempDir dir;
  const std::string in = dir.write("bad.csv",
                                   "item_id,user_id,timestamp\n"
                                   "1,1,5\n"
                                   "2,1\n"
                                   "3,1,x7\n"
                                   ",1,8\n"
                                   "4,2,9\n");
  PrepareOptions o = options_for(in, InputFormat::kCsv, dir);
  o.skip_bad_rows = true;
  const PrepareReport r = prepare(o);
  EXPECT_EQ(r.rows_skipped, 3);
  EXPECT_EQ(r.rows_read, 2);
  EXPECT_EQ(r.num_events, 2);
  const auto meta = nlohmann::json::parse(read_file(o.output + "/meta.json"));
  EXPECT_EQ(meta["rows_skipped"], 3);
  EXPECT_EQ(meta["num_events"], 2);
  EXPECT_EQ(meta["has_timestamps"], true);
}

TEST(Prepare, FailureKeepsOldOutputAndLeavesNoTemp) {
  TempDir dir;
  const std::string good = dir.write("good.txt", "1 1\n1 2\n");
  PrepareOptions o = options_for(good, InputFormat::kSasrecPairs, dir);
  prepare(o);
  const std::string before = read_file(o.output + "/users.tsv");

  // A missing item table fails after the interactions were read.
  o.items = dir.file("missing_items.tsv");
  o.items_format = ItemFormat::kTable;
  EXPECT_THROW(prepare(o), Error);
  EXPECT_EQ(read_file(o.output + "/users.tsv"), before);
  EXPECT_EQ(listing(dir.path()), (std::vector<std::string>{"good.txt", "out"}));
}

TEST(Prepare, ReplacesEarlierOutput) {
  TempDir dir;
  PrepareOptions o = options_for(dir.write("a.txt", "1 1\n1 2\n"), InputFormat::kSasrecPairs, dir);
  prepare(o);
  o.input = dir.write("b.txt", "7 1\n8 1\n9 1\n");
  const PrepareReport r = prepare(o);
  EXPECT_EQ(r.num_users, 3);
  EXPECT_EQ(UserMap::load(o.output).num_users(), 3);
  EXPECT_EQ(listing(dir.path()), (std::vector<std::string>{"a.txt", "b.txt", "out"}));
}

TEST(Prepare, RefusesToReplaceUnrelatedDirectory) {
  TempDir dir;
  PrepareOptions o = options_for(dir.write("a.txt", "1 1\n"), InputFormat::kSasrecPairs, dir);
  make_dirs(o.output);
  dir.write("out/precious.txt", "keep me");
  ASSERT_THROWS_WITH(prepare(o), "prepare.output");
  EXPECT_EQ(read_file(dir.file("out/precious.txt")), "keep me");
}

// Issue 21, defect 1: a folder holding a file named meta.json (or interactions.bin) was taken for
// an earlier output and deleted whole, with everything else in it.
TEST(PrepareOwnership, RefusesAFolderWithAForeignMetaJsonAndKeepsEveryFile) {
  TempDir dir;
  PrepareOptions o = options_for(dir.write("a.txt", "1 1\n"), InputFormat::kSasrecPairs, dir);
  make_dirs(o.output);
  dir.write("out/meta.json", "{\"mine\": true}");
  dir.write("out/precious.txt", "keep me");
  ASSERT_THROWS_WITH(prepare(o), o.output);
  ASSERT_THROWS_WITH(prepare(o), "seqrec did not write");
  EXPECT_EQ(read_file(dir.file("out/precious.txt")), "keep me");
  EXPECT_EQ(read_file(dir.file("out/meta.json")), "{\"mine\": true}");
  EXPECT_EQ(listing(dir.path()), (std::vector<std::string>{"a.txt", "out"}));
}

TEST(PrepareOwnership, RefusesToReplaceItsOwnOutputOnceAForeignFileWasAdded) {
  TempDir dir;
  PrepareOptions o = options_for(dir.write("a.txt", "1 1\n1 2\n"), InputFormat::kSasrecPairs, dir);
  prepare(o);
  dir.write("out/notes.txt", "my notes");
  ASSERT_THROWS_WITH(prepare(o), "notes.txt");
  EXPECT_EQ(read_file(dir.file("out/notes.txt")), "my notes");
  EXPECT_TRUE(path_exists(o.output + "/interactions.bin"));
}

// Issue 21, defect 2: the old store was removed before the new one was renamed in. A run killed
// mid-swap leaves the old store beside its name; the next run puts it back, then replaces it.
TEST(PrepareOwnership, ASwapInterruptedByACrashIsRecoveredByTheNextRun) {
  TempDir dir;
  PrepareOptions o = options_for(dir.write("a.txt", "1 1\n1 2\n"), InputFormat::kSasrecPairs, dir);
  prepare(o);
  // What a run with pid 9999999 (dead) left after moving the old store aside.
  std::filesystem::rename(o.output, o.output + ".old.9999999");
  o.input = dir.write("b.txt", "7 1\n8 1\n9 1\n");
  EXPECT_EQ(prepare(o).num_users, 3);
  EXPECT_EQ(UserMap::load(o.output).num_users(), 3);
  EXPECT_EQ(listing(dir.path()), (std::vector<std::string>{"a.txt", "b.txt", "out"}));
}

// Issue 21, defect 5: temp folders of killed runs stayed forever.
TEST(PrepareOwnership, TempFoldersOfDeadRunsAreRemovedAndLiveOnesKept) {
  TempDir dir;
  PrepareOptions o = options_for(dir.write("a.txt", "1 1\n"), InputFormat::kSasrecPairs, dir);
  make_dirs(o.output + ".tmp.9999999");  // above any pid_max (2^22): dead
  dir.write("out.tmp.9999999/interactions.bin", "partial");
  make_dirs(o.output + ".tmp.1");  // pid 1 lives
  dir.write("out.tmpfoo", "not our pattern");
  prepare(o);
  EXPECT_EQ(listing(dir.path()), (std::vector<std::string>{"a.txt", "out", "out.tmp.1", "out.tmpfoo"}));
}

// Issue 21, defect 10: "a\tb" and "a b" were both written as "a b" to users.tsv.
TEST(Prepare, IdsWithTabsOrLineBreaksAreRefused) {
  TempDir dir;
  const std::string in = dir.write("tab.csv", "item_id,user_id,timestamp\n1,\"a\tb\",5\n2,a b,6\n");
  ASSERT_THROWS_WITH(prepare(options_for(in, InputFormat::kCsv, dir)), in + ": user id 'a\\tb' contains a tab");
  const std::string cr = dir.write("cr.csv", "item_id,user_id,timestamp\n\"x\ry\",u,5\n");
  ASSERT_THROWS_WITH(prepare(options_for(cr, InputFormat::kCsv, dir)), "item id 'x\\ry' contains a tab or a line break");
  EXPECT_FALSE(path_exists(dir.file("out")));
}

// Issue 21, defect 7: prepare.input=/dev/zero read without end.
TEST(Prepare, DevicesAndFoldersAreNotInputFiles) {
  TempDir dir;
  ASSERT_THROWS_WITH(prepare(options_for("/dev/zero", InputFormat::kCsv, dir)), "/dev/zero: is a device");
  make_dirs(dir.file("folder"));
  ASSERT_THROWS_WITH(prepare(options_for(dir.file("folder"), InputFormat::kSasrecPairs, dir)), "folder: is a directory");
  EXPECT_FALSE(path_exists(dir.file("out")));
}

// Issue 21, defect 9: a non-UTF-8 input path failed with a JSON exception after all the work.
TEST(Prepare, NonUtf8InputPathIsWrittenToMetaJson) {
  TempDir dir;
  const std::string in = dir.write("caf\xe9.txt", "1 1\n1 2\n");
  PrepareOptions o = options_for(in, InputFormat::kSasrecPairs, dir);
  EXPECT_EQ(prepare(o).num_events, 2);
  const auto meta = nlohmann::json::parse(read_file(o.output + "/meta.json"));
  EXPECT_NE(meta["options"]["input"].get<std::string>().find("caf\xef\xbf\xbd.txt"), std::string::npos);
}

TEST(Prepare, ItemTableTsv) {
  TempDir dir;
  const std::string in = dir.write("seq.txt", "1 2 1\n2 3\n");
  const std::string items = dir.write("items.tsv",
                                      "item_id\tasin\ttitle\n"
                                      "1\tB001\tRed Lipstick\n"
                                      "2\tB002\t\n"
                                      "9\tB009\tNot in the data\n");
  PrepareOptions o = options_for(in, InputFormat::kUserSequences, dir);
  o.items = items;
  o.items_format = ItemFormat::kTable;
  const PrepareReport r = prepare(o);
  EXPECT_EQ(r.items_with_text, 2);
  EXPECT_EQ(read_file(o.output + "/items.tsv"),
            "item_id\traw_id\tasin\ttitle\n"
            "1\t1\tB001\tRed Lipstick\n"
            "2\t2\tB002\t\n"
            "3\t3\t\t\n");
}

TEST(Prepare, ItemTableCsvQuotedFieldsAreSanitised) {
  TempDir dir;
  const std::string in = dir.write("pairs.txt", "u a\nu b\n");
  const std::string items = dir.write("items.csv",
                                      "title,id,tag\n"
                                      "\"Shoes, \"\"red\"\"\tbig\",a,x\n"
                                      "Hat,b,y\n");
  PrepareOptions o = options_for(in, InputFormat::kSasrecPairs, dir);
  o.items = items;
  o.items_format = ItemFormat::kTable;
  o.items_sep = ",";
  o.item_id_col = "id";
  prepare(o);
  EXPECT_EQ(read_file(o.output + "/items.tsv"),
            "item_id\traw_id\ttitle\ttag\n"
            "1\ta\tShoes, \"red\" big\tx\n"
            "2\tb\tHat\ty\n");
}

// Found by fuzz/fuzz_interactions: a quoted CSV id was interned as a view into the splitter's
// scratch buffer, which the next line reuses (heap-use-after-free; ids read back as later ones).
TEST(Prepare, QuotedCsvIdsKeepTheirOwnText) {
  TempDir dir;
  const std::string text =
      "user_id,item_id,timestamp\n"
      "\"u,1\",\"i,1\",10\n"
      "\"u,2\",\"i \"\"2\"\"\",11\n"
      "u3,i3,12\n"
      "\"u,1\",i3,13\n";
  PrepareOptions o = options_for(dir.write("q.csv", text), InputFormat::kCsv, dir);
  o.threads = 1;
  for (const auto& events : {read_events(o, nullptr), parse_events(text, o, nullptr)}) {
    ASSERT_EQ(events.size(), 4u);
    EXPECT_EQ(events[0].user, "u,1");
    EXPECT_EQ(events[0].item, "i,1");
    EXPECT_EQ(events[1].user, "u,2");
    EXPECT_EQ(events[1].item, "i \"2\"");
    EXPECT_EQ(events[2].user, "u3");
    EXPECT_EQ(events[2].item, "i3");
    EXPECT_EQ(events[3].user, "u,1");
    EXPECT_EQ(events[3].item, "i3");
  }
}

TEST(Prepare, ParseEventsMatchesReadEventsAndNamesTheInput) {
  TempDir dir;
  const std::string text = "1::10::5::100\n2::11::3::101\n";
  PrepareOptions o = options_for(dir.write("ratings.dat", text), InputFormat::kMovieLensDat, dir);
  PrepareReport from_file, from_text;
  const auto a = read_events(o, &from_file);
  const auto b = parse_events(text, o, &from_text);
  ASSERT_EQ(a.size(), 2u);
  ASSERT_EQ(b.size(), 2u);
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].user, b[i].user);
    EXPECT_EQ(a[i].item, b[i].item);
    EXPECT_EQ(a[i].timestamp, b[i].timestamp);
  }
  EXPECT_EQ(from_text.rows_read, 2);
  ASSERT_THROWS_WITH(parse_events("1::2::5::x\n", o, nullptr), "ratings.dat:1: expected integer timestamp");
  o.format = InputFormat::kParquet;
  ASSERT_THROWS_WITH(parse_events(text, o, nullptr), "prepare.format: parse_events reads text formats only");
}

TEST(Prepare, ItemTableBadRow) {
  TempDir dir;
  const std::string in = dir.write("pairs.txt", "u 1\n");
  PrepareOptions o = options_for(in, InputFormat::kSasrecPairs, dir);
  o.items = dir.write("items.tsv", "item_id\ttitle\n1\tA\textra\n");
  o.items_format = ItemFormat::kTable;
  ASSERT_THROWS_WITH(prepare(o), "items.tsv:2: expected 2 fields, got 3");
  EXPECT_FALSE(path_exists(o.output));
}

TEST(Prepare, MoviesDatLatin1) {
  TempDir dir;
  const std::string in = dir.write("ratings.dat", "1::73::5::10\n1::2::4::20\n");
  const std::string movies = dir.write("movies.dat",
                                       "2::Jumanji (1995)::Adventure|Children's|Fantasy\n"
                                       "73::Mis\xe9rables, Les (1995)::Drama|Musical\n"
                                       "99::Unused (1990)::Drama\n");
  PrepareOptions o = options_for(in, InputFormat::kMovieLensDat, dir);
  o.items = movies;
  o.items_format = ItemFormat::kMovieLensDat;
  const PrepareReport r = prepare(o);
  EXPECT_EQ(r.items_with_text, 2);
  EXPECT_EQ(read_file(o.output + "/items.tsv"),
            "item_id\traw_id\ttitle\tgenres\n"
            "1\t2\tJumanji (1995)\tAdventure|Children's|Fantasy\n"
            "2\t73\tMis\xc3\xa9rables, Les (1995)\tDrama|Musical\n");
}

TEST(Prepare, MetaJson) {
  TempDir dir;
  PrepareOptions o = options_for(dir.write("p.txt", "1 1\n1 2\n2 2\n"), InputFormat::kSasrecPairs, dir);
  o.min_item_interactions = 1;
  prepare(o);
  const auto meta = nlohmann::json::parse(read_file(o.output + "/meta.json"));
  EXPECT_EQ(meta["num_users"], 2);
  EXPECT_EQ(meta["num_items"], 2);
  EXPECT_EQ(meta["num_events"], 3);
  EXPECT_EQ(meta["has_timestamps"], false);
  EXPECT_EQ(meta["rows_skipped"], 0);
  EXPECT_EQ(meta["options"]["format"], "sasrec_pairs");
  EXPECT_EQ(meta["options"]["min_item_interactions"], 1);
}

TEST(ItemCatalog, LoadsPrepareOutput) {
  TempDir dir;
  const std::string in = dir.write("ratings.dat", "10::73::5::10\n10::2::4::20\n11::2::3::5\n");
  PrepareOptions o = options_for(in, InputFormat::kMovieLensDat, dir);
  o.items = dir.write("movies.dat", "2::Jumanji (1995)::Adventure\n73::Heat (1995)::Action|Crime\n");
  o.items_format = ItemFormat::kMovieLensDat;
  prepare(o);

  const ItemCatalog cat = ItemCatalog::load(o.output);
  EXPECT_EQ(cat.num_items(), 2);
  EXPECT_EQ(cat.columns(), (std::vector<std::string>{"title", "genres"}));
  EXPECT_EQ(cat.find("73"), 2);
  EXPECT_EQ(cat.find("2"), 1);
  EXPECT_EQ(cat.find("nope"), -1);
  EXPECT_EQ(cat.raw_id(2), "73");
  EXPECT_EQ(cat.title(2), "Heat (1995)");
  EXPECT_EQ(cat.field(1, "genres"), "Adventure");
  EXPECT_EQ(cat.field(1, "missing"), "");
  EXPECT_THROW(cat.raw_id(3), std::out_of_range);

  const UserMap users = UserMap::load(o.output);
  EXPECT_EQ(users.num_users(), 2);
  EXPECT_EQ(users.raw_id(0), "10");
  EXPECT_EQ(users.find("11"), 1);
  EXPECT_EQ(users.find("12"), -1);
}

TEST(ItemCatalog, WithoutTextColumns) {
  TempDir dir;
  PrepareOptions o = options_for(dir.write("p.txt", "1 5\n"), InputFormat::kSasrecPairs, dir);
  prepare(o);
  const ItemCatalog cat = ItemCatalog::load(o.output);
  EXPECT_EQ(cat.num_items(), 1);
  EXPECT_TRUE(cat.columns().empty());
  EXPECT_EQ(cat.title(1), "");
}

TEST(ItemCatalog, MalformedFile) {
  TempDir dir;
  dir.write("items.tsv", "item_id\traw_id\ttitle\n1\ta\tA\n3\tc\tC\n");
  ASSERT_THROWS_WITH(ItemCatalog::load(dir.path()), "items.tsv:3: expected item id 2");
  dir.write("items.tsv", "id\traw\n");
  ASSERT_THROWS_WITH(ItemCatalog::load(dir.path()), "items.tsv:1: expected header");
  dir.write("users.tsv", "0\ta\n1\tb\textra\n");
  ASSERT_THROWS_WITH(UserMap::load(dir.path()), "users.tsv:2: expected 2 fields, got 3");
}

}  // namespace
}  // namespace seqrec::data

namespace seqrec::data {
namespace {

/// Every file of a prepared directory, by name.
std::map<std::string, std::string> prepared_files(const std::string& dir) {
  std::map<std::string, std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    out[e.path().filename().string()] = read_file(e.path().string());
  }
  return out;
}

/// 30,000 rows over 2,000 users: string and integer ids mixed (some not canonical, "007"), shuffled
/// timestamps with ties, a few rows of each user scattered through the file.
std::string mixed_csv(uint64_t seed, int rows) {
  std::string s = "user_id,item_id,timestamp\n";
  uint64_t x = seed;
  auto next = [&] {
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    return x >> 33;
  };
  for (int r = 0; r < rows; ++r) {
    const uint64_t u = next() % 2000;
    const uint64_t i = next() % 900;
    std::string user = u % 7 == 0 ? "user" + std::to_string(u) : std::to_string(u * 31);
    std::string item = i % 50 == 0 ? "00" + std::to_string(i) : std::to_string(i + 100000000 * (i % 3 == 0));
    s += user + "," + item + "," + std::to_string(next() % 500) + "\n";
  }
  return s;
}

TEST(PrepareScale, OutputsAreByteIdenticalWhateverThreadsAndMemoryCap) {
  TempDir dir;
  const std::string in = dir.write("mixed.csv", mixed_csv(7, 30000));
  std::map<std::string, std::string> reference;  // files of the first run
  struct Run { int64_t threads, memory_mb, min_count; bool kcore; };
  for (const bool filtered : {false, true}) {
    reference.clear();
    for (const Run run : {Run{1, 0, 0, false}, Run{2, 0, 0, false}, Run{5, 0, 0, false},
                          Run{3, 1, 0, false}}) {
      PrepareOptions o = options_for(in, InputFormat::kCsv, dir);
      o.threads = run.threads;
      o.memory_limit_mb = run.memory_mb;  // 1 MB: events spill and the store is built in buckets
      if (filtered) {
        o.min_item_interactions = 25;
        o.min_user_interactions = 10;
        o.kcore = true;
      }
      o.output = dir.file("out_" + std::to_string(run.threads) + "_" + std::to_string(run.memory_mb));
      const PrepareReport r = prepare(o);
      EXPECT_EQ(r.rows_read, 30000);
      auto files = prepared_files(o.output);
      if (reference.empty()) {
        reference = files;
        EXPECT_EQ(files.size(), 5u);  // 4 outputs + the ownership marker
      } else {
        ASSERT_EQ(files.size(), reference.size());
        for (const auto& [name, content] : reference) {
          EXPECT_TRUE(files[name] == content) << name << " differs: threads " << run.threads
                                              << ", memory " << run.memory_mb << " MB";
        }
      }
    }
  }
}

TEST(PrepareScale, MatchesAHandComputedStoreForMixedIds) {
  TempDir dir;
  // Integer ids sort numerically ("007" after "7": same value, text decides); a string id makes
  // the items ordered by first appearance. Timestamps sort each user's events stably.
  const std::string in = dir.write("m.csv",
                                   "user_id,item_id,timestamp\n"
                                   "10,b,5\n"
                                   "007,a,1\n"
                                   "7,b,2\n"
                                   "10,c,5\n"
                                   "100000000,a,0\n"
                                   "10,a,4\n");
  PrepareOptions o = options_for(in, InputFormat::kCsv, dir);
  o.threads = 3;
  prepare(o);
  EXPECT_EQ(read_file(o.output + "/users.tsv"), "0\t007\n1\t7\n2\t10\n3\t100000000\n");
  EXPECT_EQ(read_file(o.output + "/items.tsv"), "item_id\traw_id\n1\tb\n2\ta\n3\tc\n");
  const auto s = InteractionStore::open(o.output + "/interactions.bin");
  EXPECT_EQ(sequences(s), (Seqs{{2}, {1}, {2, 1, 3}, {2}}));
  EXPECT_EQ(times(s), (std::vector<std::vector<int64_t>>{{1}, {2}, {4, 5, 5}, {0}}));
}

TEST(PrepareScale, FirstMalformedRowIsReportedWithItsLineWhateverThreads) {
  TempDir dir;
  std::string text = mixed_csv(3, 5000);
  // Break line 3001 (header is line 1) and line 4000.
  auto line_start = [&](int line) {
    size_t pos = 0;
    for (int l = 1; l < line; ++l) pos = text.find('\n', pos) + 1;
    return pos;
  };
  text.insert(line_start(4000), "x,y,z,w\n");
  text.insert(line_start(3001), "1,2,noon\n");
  const std::string in = dir.write("bad.csv", text);
  for (int64_t threads : {1, 4}) {
    PrepareOptions o = options_for(in, InputFormat::kCsv, dir);
    o.threads = threads;
    ASSERT_THROWS_WITH(prepare(o), "bad.csv:3001: expected integer timestamp, got 'noon'");
    o.skip_bad_rows = true;
    const PrepareReport r = prepare(o);
    EXPECT_EQ(r.rows_skipped, 2);
    EXPECT_EQ(r.rows_read, 5000);
  }
}

}  // namespace
}  // namespace seqrec::data

namespace seqrec::data {
namespace {

using parquet::Column;
using parquet::PhysicalType;
using parquet::WriteColumn;
using parquet::WriteType;

Column int_column(std::vector<int64_t> values) {
  Column c;
  c.physical = PhysicalType::kInt64;
  c.num_rows = static_cast<int64_t>(values.size());
  c.ints = std::move(values);
  return c;
}

Column string_column(const std::vector<std::string>& values) {
  Column c;
  c.physical = PhysicalType::kByteArray;
  c.byte_offsets.push_back(0);
  for (const auto& v : values) {
    c.bytes.insert(c.bytes.end(), v.begin(), v.end());
    c.byte_offsets.push_back(static_cast<int64_t>(c.bytes.size()));
  }
  c.num_rows = static_cast<int64_t>(values.size());
  return c;
}

/// The rows of mixed_csv() as Parquet (string user ids, string item ids as the CSV has them,
/// int64 timestamps), several row groups.
std::string mixed_parquet(const TempDir& dir, const std::string& csv_text, int64_t row_group_rows) {
  std::vector<std::string> users, items;
  std::vector<int64_t> ts;
  std::istringstream in(csv_text);
  std::string line;
  std::getline(in, line);  // header
  while (std::getline(in, line)) {
    const size_t a = line.find(','), b = line.rfind(',');
    users.push_back(line.substr(0, a));
    items.push_back(line.substr(a + 1, b - a - 1));
    ts.push_back(std::stoll(line.substr(b + 1)));
  }
  const std::string path = dir.file("mixed.parquet");
  parquet::WriterOptions wo;
  wo.row_group_rows = row_group_rows;
  wo.compression = parquet::Compression::kZstd;
  parquet::Writer w(path, {{"user_id", WriteType::kString, false}, {"item_id", WriteType::kString, false},
                           {"timestamp", WriteType::kInt64, false}}, wo);
  w.write({string_column(users), string_column(items), int_column(ts)});
  w.close();
  return path;
}

TEST(PrepareParquet, SameStoreAsTheCsvWhateverThreads) {
  TempDir dir;
  const std::string text = mixed_csv(11, 20000);
  const std::string csv = dir.write("mixed.csv", text);
  const std::string pq = mixed_parquet(dir, text, 3000);
  PrepareOptions o = options_for(csv, InputFormat::kCsv, dir);
  o.output = dir.file("from_csv");
  prepare(o);
  for (int64_t threads : {1, 3}) {
    PrepareOptions p = options_for(pq, InputFormat::kParquet, dir);
    p.threads = threads;
    p.output = dir.file("from_parquet");
    const PrepareReport r = prepare(p);
    EXPECT_EQ(r.rows_read, 20000);
    for (const char* f : {"interactions.bin", "users.tsv", "items.tsv"}) {
      EXPECT_TRUE(read_file(o.output + "/" + f) == read_file(p.output + "/" + f)) << f << ", threads " << threads;
    }
  }
}

TEST(PrepareParquet, IntegerIdsAndListColumnsAsPerSRecStoresThem) {
  TempDir dir;
  // One row per user: user 5 [30, 10], user 2 [10, 10, 20] with list timestamps.
  Column user = int_column({5, 2});
  Column items = int_column({30, 10, 10, 10, 20});
  items.is_list = true;
  items.list_offsets = {0, 2, 5};
  items.num_rows = 2;
  Column stamps = int_column({9, 3, 1, 2, 2});
  stamps.is_list = true;
  stamps.list_offsets = {0, 2, 5};
  stamps.num_rows = 2;
  const std::string path = dir.file("seqs.parquet");
  parquet::Writer w(path, {{"user_id", WriteType::kInt64, false}, {"item_ids", WriteType::kInt64List, false},
                           {"ts", WriteType::kInt64List, false}}, {});
  w.write({user, items, stamps});
  w.close();
  PrepareOptions o = options_for(path, InputFormat::kParquet, dir);
  o.item_col = "item_ids";
  o.time_col = "ts";
  const PrepareReport r = prepare(o);
  EXPECT_EQ(r.rows_read, 2);
  EXPECT_EQ(r.num_events, 5);
  EXPECT_EQ(read_file(o.output + "/users.tsv"), "0\t2\n1\t5\n");
  const auto s = InteractionStore::open(o.output + "/interactions.bin");
  // Items 10 -> 1, 20 -> 2, 30 -> 3; each user's events sorted by time (stable).
  EXPECT_EQ(sequences(s), (Seqs{{1, 1, 2}, {1, 3}}));
  EXPECT_EQ(times(s), (std::vector<std::vector<int64_t>>{{1, 2, 2}, {3, 9}}));
}

TEST(PrepareParquet, BadColumnsAndNullsAreNamed) {
  TempDir dir;
  Column user = int_column({1, 2, 3});
  user.valid = {1, 1, 0};
  Column item = int_column({7, 8, 9});
  Column score;
  score.physical = PhysicalType::kDouble;
  score.reals = {0.5, 1.5, 2.5};
  score.num_rows = 3;
  const std::string path = dir.file("bad.parquet");
  parquet::Writer w(path, {{"user_id", WriteType::kInt64, true}, {"item_id", WriteType::kInt64, false},
                           {"score", WriteType::kDouble, false}}, {});
  w.write({user, item, score});
  w.close();
  PrepareOptions o = options_for(path, InputFormat::kParquet, dir);
  ASSERT_THROWS_WITH(prepare(o), "bad.parquet: expected a column named 'timestamp' (prepare.time_col), got user_id, item_id, score");
  o.time_col = "score";
  ASSERT_THROWS_WITH(prepare(o), "column 'score' (timestamp column): expected an integer column, got DOUBLE");
  o.time_col = "";
  ASSERT_THROWS_WITH(prepare(o), "bad.parquet: row 3: column 'user_id' (user column) is null");
  o.skip_bad_rows = true;
  const PrepareReport r = prepare(o);
  EXPECT_EQ(r.rows_skipped, 1);
  EXPECT_EQ(r.num_events, 2);
  EXPECT_FALSE(r.has_timestamps);
}

}  // namespace
}  // namespace seqrec::data

namespace seqrec::data {
namespace {

/// Random mutations of small CSV and user-sequence files (byte flips, separators, quotes,
/// newlines, truncations, inserted bytes): every run either succeeds or throws seqrec's DataError
/// or ConfigError; no crash, no other exception. A fixed seed, so a failure replays.
TEST(PrepareFuzz, MutatedInputsGiveCleanErrorsOnly) {
  TempDir dir;
  const std::vector<std::pair<InputFormat, std::string>> seeds = {
      {InputFormat::kCsv, "user_id,item_id,timestamp\nu1,\"a,b\",5\n7,12,3\n007,x,\"9\"\n7,12,4\n"},
      {InputFormat::kCsv, mixed_csv(5, 40)},
      {InputFormat::kUserSequences, "user items\n1 2 3 4\n2 3 3\nx y\n"},
      {InputFormat::kMovieLensDat, "1::10::5::978300760\n1::11::3::978300761\n2::10::4::1\n"},
  };
  std::mt19937_64 rng(20261203);
  const char specials[] = {',', '"', '\n', '\r', '\t', ' ', '0', '-', '+', ':', '\0', '\xEF', '\xFF'};
  int ok = 0, errors = 0;
  for (int iter = 0; iter < 3000; ++iter) {
    const auto& [format, base] = seeds[iter % seeds.size()];
    std::string text = base;
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits && !text.empty(); ++e) {
      const size_t at = rng() % text.size();
      switch (rng() % 5) {
        case 0: text[at] = static_cast<char>(rng() & 0xFF); break;
        case 1: text[at] = specials[rng() % sizeof specials]; break;
        case 2: text.insert(at, 1, specials[rng() % sizeof specials]); break;
        case 3: text.resize(at); break;
        case 4: text.erase(at, 1 + rng() % 8); break;
      }
    }
    PrepareOptions o = options_for(dir.write("fuzz.txt", text), format, dir);
    o.skip_bad_rows = rng() % 2 == 0;
    o.threads = 1 + static_cast<int64_t>(rng() % 3);
    o.min_user_interactions = static_cast<int64_t>(rng() % 3);
    try {
      if (iter % 10 == 0) {
        prepare(o);
      } else {
        read_events(o, nullptr);
      }
      ++ok;
    } catch (const DataError&) {
      ++errors;
    } catch (const ConfigError&) {
      ++errors;
    }
  }
  // Both outcomes occur: the mutations are neither all harmless nor all fatal.
  EXPECT_GT(ok, 300);
  EXPECT_GT(errors, 300);
}

}  // namespace
}  // namespace seqrec::data

namespace seqrec::data {
namespace {

TEST(PrepareParquet, ItemTableFromParquetKeepsFlatColumnsAsText) {
  TempDir dir;
  const std::string in = dir.write("events.csv", "user_id,item_id,timestamp\nu1,10,1\nu1,20,2\nu2,10,3\n");
  Column ids = int_column({20, 10, 30, 10});
  Column titles = string_column({"Twenty", "Ten", "Thirty", "Ten again"});
  Column tags = string_column({"b", "", "c", "d"});
  tags.valid = {1, 0, 1, 1};  // item 10 has a null tag
  Column seq = int_column({1, 2});
  seq.is_list = true;
  seq.list_offsets = {0, 1, 1, 2, 2};
  seq.num_rows = 4;
  const std::string items = dir.file("items.parquet");
  parquet::Writer w(items, {{"item_id", WriteType::kInt64, false}, {"title", WriteType::kString, false},
                            {"tag", WriteType::kString, true}, {"seq", WriteType::kInt64List, false}}, {});
  w.write({ids, titles, tags, seq});
  w.close();
  PrepareOptions o = options_for(in, InputFormat::kCsv, dir);
  o.items = items;  // format from the extension
  const PrepareReport r = prepare(o);
  EXPECT_EQ(r.items_with_text, 2);
  // The first row of an id wins; 30 is not in the interactions; the list column is skipped.
  EXPECT_EQ(read_file(o.output + "/items.tsv"), "item_id\traw_id\ttitle\ttag\n1\t10\tTen\t\n2\t20\tTwenty\tb\n");
}

}  // namespace
}  // namespace seqrec::data

namespace seqrec::data {
namespace {

/// synth.mode scale writes the same log as CSV and as Parquet, whatever the threads; both prepare
/// to the same store, with the users and the mean length asked for.
TEST(SynthScale, CsvAndParquetTwinsPrepareToTheSameStore) {
  TempDir dir;
  ScaleSynthOptions s;
  s.num_users = 3000;
  s.num_items = 500;
  s.mean_seq_len = 12;
  s.users_per_chunk = 700;
  s.output = dir.file("log");
  s.threads = 1;
  const int64_t events = generate_scale_log(s);
  const std::string csv1 = read_file(s.output + "/interactions.csv");
  s.threads = 3;
  EXPECT_EQ(generate_scale_log(s), events);
  EXPECT_TRUE(read_file(s.output + "/interactions.csv") == csv1);
  s.format = "parquet";
  EXPECT_EQ(generate_scale_log(s), events);
  EXPECT_NEAR(static_cast<double>(events) / 3000, 12.0, 0.5);

  PrepareOptions a = options_for(s.output + "/interactions.csv", InputFormat::kCsv, dir);
  a.output = dir.file("a");
  PrepareOptions b = options_for(s.output + "/interactions.parquet", InputFormat::kParquet, dir);
  b.output = dir.file("b");
  const PrepareReport ra = prepare(a);
  prepare(b);
  EXPECT_EQ(ra.num_users, 3000);
  EXPECT_EQ(ra.num_events, events);
  for (const char* f : {"interactions.bin", "users.tsv", "items.tsv"}) {
    EXPECT_TRUE(read_file(a.output + "/" + f) == read_file(b.output + "/" + f)) << f;
  }
  s.format = "orc";
  ASSERT_THROWS_WITH(generate_scale_log(s), "synth.format: expected csv or parquet, got 'orc'");
}

}  // namespace
}  // namespace seqrec::data
