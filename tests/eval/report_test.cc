// seqrec report: metric ordering, the metrics.jsonl reader and its errors, the page and its charts,
// and that it never replaces a file it did not write.
#include "seqrec/eval/report.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "seqrec/common/error.h"
#include "seqrec/common/fs.h"
#include "seqrec/eval/svg_chart.h"
#include "support.h"

namespace seqrec::eval {
namespace {

using seqrec::testing::TempDir;

size_t count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

TEST(Report, MetricNamesSortByFamilyThenNumericK) {
  std::vector<std::string> names = {"ndcg@10", "hr@10", "mrr", "hr@5", "hr@50", "ndcg@5", "hr@1", "ndcg@1", "users_x"};
  std::sort(names.begin(), names.end(), metric_name_less);
  EXPECT_EQ(names, (std::vector<std::string>{"hr@1", "hr@5", "hr@10", "hr@50", "ndcg@1", "ndcg@5", "ndcg@10", "mrr",
                                             "users_x"}));
}

TEST(Report, NiceTicksAreRoundAndCoverTheRange) {
  EXPECT_EQ(nice_ticks(0.0, 1.0), (std::vector<double>{0.0, 0.2, 0.4, 0.6, 0.8, 1.0}));
  const auto t = nice_ticks(0.0712, 0.1034);  // step 0.01 (raw 0.0064 -> 0.01)
  EXPECT_NEAR(t.front(), 0.07, 1e-12);
  EXPECT_NEAR(t.back(), 0.11, 1e-12);
  EXPECT_EQ(t.size(), 5u);
  const auto one = nice_ticks(5.0, 5.0);  // one value: a range around it
  EXPECT_LE(one.front(), 5.0);
  EXPECT_GE(one.back(), 5.0);
  EXPECT_GE(one.size(), 2u);
}

TEST(Report, ReaderErrorsNameTheFileAndLine) {
  TempDir dir;
  ASSERT_THROWS_WITH(read_run_log(dir.file("nope")), "nope: not a run folder");
  std::filesystem::create_directories(dir.file("run"));
  ASSERT_THROWS_WITH(read_run_log(dir.file("run")), "run/metrics.jsonl: missing");
  dir.write("run/metrics.jsonl", "");
  ASSERT_THROWS_WITH(read_run_log(dir.file("run")), "run/metrics.jsonl: empty");
  dir.write("run/metrics.jsonl", "{\"epoch\":1,\"split\":\"valid\",\"ndcg@10\":0.1}\n{\"epoch\":2,\"split\":\n");
  ASSERT_THROWS_WITH(read_run_log(dir.file("run")), "run/metrics.jsonl:2: not a JSON line");
  dir.write("run/metrics.jsonl", "{\"epoch\":\"one\",\"split\":\"valid\"}\n");
  ASSERT_THROWS_WITH(read_run_log(dir.file("run")), "run/metrics.jsonl:1: field 'epoch' must be an integer");
  dir.write("run/metrics.jsonl", "{\"epoch\":1,\"ndcg@10\":0.1}\n");
  ASSERT_THROWS_WITH(read_run_log(dir.file("run")), "run/metrics.jsonl:1: no 'split' field");
}

// Two runs of the same protocol: a holdout-2 run (valid curve, duplicated epoch 2 from a resume,
// training lines) and a second run; the page's table, its column order and the charts' points.
TEST(Report, PageTablesAndChartsFromTwoRuns) {
  TempDir dir;
  std::filesystem::create_directories(dir.file("a/sasrec"));
  std::filesystem::create_directories(dir.file("b/sasrec"));
  dir.write("a/sasrec/metrics.jsonl",
            "{\"epoch\":1,\"split\":\"train\",\"loss\":0.9,\"lr\":0.001}\n"
            "{\"epoch\":1,\"split\":\"valid\",\"protocol\":\"full\",\"users\":10,\"ndcg@10\":0.10,\"hr@10\":0.2}\n"
            "{\"epoch\":2,\"split\":\"train\",\"loss\":0.7,\"lr\":0.001}\n"
            "{\"epoch\":2,\"split\":\"valid\",\"protocol\":\"full\",\"users\":10,\"ndcg@10\":0.11,\"hr@10\":0.2}\n"
            "{\"epoch\":2,\"split\":\"valid\",\"protocol\":\"full\",\"users\":10,\"ndcg@10\":0.15,\"hr@10\":0.3}\n"
            "{\"epoch\":2,\"split\":\"test\",\"protocol\":\"full\",\"users\":10,\"hr@10\":0.3,\"hr@5\":0.25,"
            "\"ndcg@10\":0.14,\"mrr\":0.12}\n");
  dir.write("b/sasrec/metrics.jsonl",
            "{\"epoch\":3,\"split\":\"test\",\"protocol\":\"full\",\"users\":10,\"hr@10\":0.4,\"hr@5\":0.35,"
            "\"ndcg@10\":0.2,\"mrr\":0.18}\n");
  std::vector<RunLog> runs = {read_run_log(dir.file("a/sasrec")), read_run_log(dir.file("b/sasrec/"))};
  ASSERT_EQ(runs[0].lines.size(), 6u);
  EXPECT_EQ(runs[0].final_test()->values.at("mrr"), 0.12);
  ReportOptions options;
  options.out_dir = dir.file("out");
  const ReportSummary summary = write_report(runs, options);
  const std::string page = read_file(summary.page);
  // Same folder name twice: the runs are told apart by their parent folder.
  EXPECT_NE(page.find("| a/sasrec | 2 | 10 | 0.2500 | 0.3000 | 0.1400 | 0.1200 |"), std::string::npos) << page;
  EXPECT_NE(page.find("| b/sasrec | 3 | 10 | 0.3500 | 0.4000 | 0.2000 | 0.1800 |"), std::string::npos) << page;
  EXPECT_NE(page.find("| run | epoch | users | hr@5 | hr@10 | ndcg@10 | mrr |"), std::string::npos) << page;
  EXPECT_NE(page.find("## Test metrics, protocol `full`, split test"), std::string::npos);
  // The resumed epoch 2 appears once, with its last values.
  EXPECT_NE(page.find("| 2 | 0.1500 | 0.3000 |"), std::string::npos) << page;
  EXPECT_EQ(page.find("| 2 | 0.1100 |"), std::string::npos) << page;
  // Charts: test bars (2 metrics x 2 runs), a_sasrec's metrics (2 series of 2 points), its loss and lr.
  std::vector<std::string> names;
  for (const auto& c : summary.charts) names.push_back(c.substr(c.rfind('/') + 1));
  EXPECT_EQ(names, (std::vector<std::string>{"test_full.svg", "a_sasrec_metrics.svg", "a_sasrec_loss.svg",
                                             "a_sasrec_lr.svg"}));
  const std::string bars = read_file(dir.file("out/test_full.svg"));
  EXPECT_EQ(count(bars, "<rect x="), 4u + 2u + 1u) << "4 bars, 2 legend swatches, the frame";
  const std::string curves = read_file(dir.file("out/a_sasrec_metrics.svg"));
  EXPECT_EQ(count(curves, "<polyline"), 2u);
  EXPECT_EQ(count(curves, "<circle"), 4u);
  EXPECT_NE(page.find("![a/sasrec metrics by epoch](a_sasrec_metrics.svg)"), std::string::npos);
  // b has no evaluation during training.
  EXPECT_NE(page.find("No evaluation during training."), std::string::npos);
}

// An LSVCR run charts its own selection metrics (ndcg@5 of each task) by default, prints its sample
// counts as integers, and a run whose evaluations lack the asked-for metrics says so.
TEST(Report, LsvcrRunsChartTheirOwnMetrics) {
  TempDir dir;
  std::filesystem::create_directories(dir.file("lsvcr"));
  const std::string tasks = "\"video_ndcg@5\":0.1,\"comment_ndcg@5\":0.2,\"video_samples\":500.0,\"comment_samples\":480.0}";
  dir.write("lsvcr/metrics.jsonl", "{\"epoch\":2,\"split\":\"valid\",\"protocol\":\"lsvcr\",\"users\":500," + tasks + "\n"
                                   "{\"epoch\":4,\"split\":\"valid\",\"protocol\":\"lsvcr\",\"users\":500," + tasks + "\n"
                                   "{\"epoch\":4,\"split\":\"test\",\"protocol\":\"lsvcr\",\"users\":500," + tasks + "\n");
  ReportOptions options;
  options.out_dir = dir.file("out");
  const ReportSummary summary = write_report({read_run_log(dir.file("lsvcr"))}, options);
  const std::string page = read_file(summary.page);
  EXPECT_NE(page.find("| epoch (valid) | video_ndcg@5 | comment_ndcg@5 |"), std::string::npos) << page;
  EXPECT_NE(page.find("| lsvcr | 4 | 500 | 0.2000 | 480 | 0.1000 | 500 |"), std::string::npos) << page;
  EXPECT_EQ(summary.charts.size(), 2u);  // the test bars and the curves
  options.curve_metrics = {"ndcg@10"};
  options.out_dir = dir.file("out2");
  const std::string asked = read_file(write_report({read_run_log(dir.file("lsvcr"))}, options).page);
  EXPECT_NE(asked.find("Its evaluations carry none of ndcg@10 (choose with --metrics)."), std::string::npos) << asked;
}

// Two trainings appended to one folder (a fresh `train` into the same out_dir): only the last is
// reported; a resume's duplicated epoch does not count as a new training.
TEST(Report, OnlyTheLastTrainingOfAFolderIsReported) {
  TempDir dir;
  std::filesystem::create_directories(dir.file("run"));
  auto line = [](int epoch, const char* split, double v) {
    return "{\"epoch\":" + std::to_string(epoch) + ",\"split\":\"" + split +
           "\",\"protocol\":\"full\",\"users\":5,\"ndcg@10\":" + std::to_string(v) + "}\n";
  };
  dir.write("run/metrics.jsonl", line(5, "valid", 0.1) + line(10, "valid", 0.2) + line(10, "test", 0.3) +
                                     "{\"epoch\":1,\"split\":\"train\",\"loss\":1.5}\n" + line(5, "valid", 0.4) +
                                     line(5, "valid", 0.45) + line(5, "test", 0.5));
  const RunLog run = read_run_log(dir.file("run"));
  EXPECT_EQ(run.trainings, 2);
  ASSERT_EQ(run.lines.size(), 4u);
  EXPECT_EQ(run.lines[0].split, "train");
  EXPECT_EQ(run.final_test()->values.at("ndcg@10"), 0.5);
  ReportOptions options;
  options.out_dir = dir.file("out");
  const std::string page = read_file(write_report({run}, options).page);
  EXPECT_NE(page.find("holds 2 trainings into this folder; this report shows the last"), std::string::npos);
  EXPECT_NE(page.find("| 5 | 0.4500 |"), std::string::npos) << page;
  EXPECT_EQ(page.find("| 10 |"), std::string::npos) << page;
}

TEST(Report, NeverReplacesAFileItDidNotWrite) {
  TempDir dir;
  std::filesystem::create_directories(dir.file("run"));
  dir.write("run/metrics.jsonl", "{\"epoch\":1,\"split\":\"test\",\"protocol\":\"full\",\"users\":3,\"ndcg@10\":0.5}\n");
  ReportOptions options;
  options.out_dir = dir.file("out");
  write_report({read_run_log(dir.file("run"))}, options);
  write_report({read_run_log(dir.file("run"))}, options);  // its own files: replaced
  dir.write("out/test_full.svg", "my drawing");
  ASSERT_THROWS_WITH(write_report({read_run_log(dir.file("run"))}, options),
                     "out/test_full.svg: exists and was not written by seqrec report");
  EXPECT_EQ(read_file(dir.file("out/test_full.svg")), "my drawing");
  std::filesystem::remove(dir.file("out/test_full.svg"));
  dir.write("out/report.md", "# my notes\n");
  ASSERT_THROWS_WITH(write_report({read_run_log(dir.file("run"))}, options),
                     "out/report.md: exists and was not written by seqrec report");
  EXPECT_EQ(read_file(dir.file("out/report.md")), "# my notes\n");
  EXPECT_FALSE(path_exists(dir.file("out/test_full.svg"))) << "nothing is written when one file may not be";
}

}  // namespace
}  // namespace seqrec::eval
