// `seqrec report`: a Markdown page with SVG charts from the metrics.jsonl of one or more training
// runs (LibTorch-free). Per run: the monitored metrics by epoch (and the training loss and learning
// rate when the run logged them); across runs: the test metrics side by side, as a table and as
// bar charts, each naming its protocol and split.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace seqrec::eval {

/// Orders metric names for people: by family (hr, recall, ndcg, mrr, then the rest
/// alphabetically), then by cut-off k numerically (hr@1 < hr@5 < hr@10 < hr@50).
bool metric_name_less(const std::string& a, const std::string& b);

/// One line of a run's metrics.jsonl: an evaluation (split valid or test) or, when the run logs
/// it, a training epoch (split "train": loss, lr).
struct MetricsLine {
  int64_t epoch = 0;
  std::string split;
  std::string protocol;  ///< empty for training lines
  int64_t users = 0;
  std::map<std::string, double> values;  ///< every other numeric field
};

/// A training run's log.
struct RunLog {
  std::string dir;                 ///< as given
  std::string name;                ///< the run's label in the report (its folder name, made unique)
  std::vector<MetricsLine> lines;  ///< in file order, of the last training in the file
  int64_t trainings = 1;           ///< trainings in the file (older seqrec appended a fresh `train` to a used folder's)
  /// The run's final test line (the last line with split "test"), or nullptr.
  const MetricsLine* final_test() const;
};

/// Reads RUN_DIR/metrics.jsonl, keeping its last training (a new one starts where an evaluation
/// right after a test line goes back in epochs). DataError naming the file (and the line) when it
/// is missing, empty or malformed.
RunLog read_run_log(const std::string& run_dir);

/// Options of a report.
struct ReportOptions {
  std::string out_dir;                                   ///< created if missing
  /// Plotted by epoch and in the test charts; empty: the protocol's own (ndcg@10 and hr@10; LSVCR's
  /// selection metrics video_ndcg@5 and comment_ndcg@5 for protocol lsvcr).
  std::vector<std::string> curve_metrics;
};

/// What write_report wrote.
struct ReportSummary {
  std::string page;                ///< out_dir/report.md
  std::vector<std::string> charts; ///< the SVG files
};

/// Writes out_dir/report.md and its SVG charts (each atomically). Replaces only files that an
/// earlier report wrote (they carry seqrec's marker); any other file of the same name is left alone
/// and the report refused (DataError naming the file).
ReportSummary write_report(std::vector<RunLog> runs, const ReportOptions& options);

}  // namespace seqrec::eval
