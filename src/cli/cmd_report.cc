// seqrec report RUN_DIR... --out DIR: a Markdown page with SVG charts of training runs (LibTorch-free).
#include <cstdio>

#include "cli/commands.h"
#include "seqrec/common/log.h"
#include "seqrec/eval/report.h"

namespace seqrec::cli {

int run_report(const CliArgs& args) {
  std::vector<eval::RunLog> runs;
  for (const auto& dir : args.run_dirs) runs.push_back(eval::read_run_log(dir));
  eval::ReportOptions options;
  options.out_dir = args.out;
  if (!args.report_metrics.empty()) options.curve_metrics = args.report_metrics;
  const eval::ReportSummary summary = eval::write_report(std::move(runs), options);
  log_info("report: %zu run(s), %zu chart(s) -> %s", args.run_dirs.size(), summary.charts.size(),
           summary.page.c_str());
  std::printf("{\"page\":\"%s\",\"charts\":%zu}\n", summary.page.c_str(), summary.charts.size());
  return 0;
}

}  // namespace seqrec::cli
