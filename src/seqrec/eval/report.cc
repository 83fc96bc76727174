// `seqrec report` (see report.h).
#include "seqrec/eval/report.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "seqrec/common/error.h"
#include "seqrec/common/fs.h"
#include "seqrec/eval/svg_chart.h"

namespace seqrec::eval {

namespace {

constexpr const char* kMarker = "<!-- seqrec report -->";

// (family rank, family, k) of a metric name such as "ndcg@10".
struct MetricKey {
  int rank;
  std::string family;
  double k;
};

MetricKey metric_key(const std::string& name) {
  const auto at = name.find('@');
  MetricKey key{4, name.substr(0, at), -1.0};
  if (at != std::string::npos) {
    try {
      key.k = std::stod(name.substr(at + 1));
    } catch (const std::exception&) {
      key.family = name;  // "x@y" with a non-numeric y: ordered as a plain name
    }
  }
  static const char* const kFamilies[] = {"hr", "recall", "ndcg", "mrr"};
  for (int i = 0; i < 4; ++i)
    if (key.family == kFamilies[i]) key.rank = i;
  return key;
}

std::string fixed4(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4f", v);
  return buf;
}

// The metrics charted for runs of `protocol`: the ones asked for, else the protocol's own.
std::vector<std::string> charted_metrics(const ReportOptions& options, const std::string& protocol) {
  if (!options.curve_metrics.empty()) return options.curve_metrics;
  if (protocol == "lsvcr") return {"video_ndcg@5", "comment_ndcg@5"};
  return {"ndcg@10", "hr@10"};
}

// The protocol of a run's evaluations ("" when it has none).
std::string run_protocol(const RunLog& r) {
  for (const auto& line : r.lines)
    if (line.split != "train" && !line.protocol.empty()) return line.protocol;
  return "";
}

// A value of the tables: counts (LSVCR's *_samples) as integers, metrics with 4 decimals.
std::string table_value(const std::string& name, double v) {
  const bool count = name.size() > 8 && name.compare(name.size() - 8, 8, "_samples") == 0 && v == std::floor(v);
  return count ? std::to_string(static_cast<int64_t>(v)) : fixed4(v);
}


std::string file_stem(const std::string& s) {
  std::string out;
  for (char c : s) out += (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.') ? c : '_';
  return out;
}

std::string strip_slashes(std::string p) {
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  return p;
}

std::string base_name(const std::string& p) {
  const auto slash = p.rfind('/');
  return slash == std::string::npos ? p : p.substr(slash + 1);
}

// Labels runs by folder name, then by the last two path parts, then with a counter.
void name_runs(std::vector<RunLog>& runs) {
  std::map<std::string, int> count;
  for (auto& r : runs) ++count[r.name = base_name(strip_slashes(r.dir))];
  for (auto& r : runs) {
    if (count[r.name] < 2) continue;
    const std::string d = strip_slashes(r.dir), parent = d.substr(0, d.size() - r.name.size());
    r.name = base_name(strip_slashes(parent)) + "/" + r.name;
  }
  std::map<std::string, int> seen;
  for (auto& r : runs)
    if (++seen[r.name] > 1) r.name += " #" + std::to_string(seen[r.name]);
}

// Evaluation lines during training, by split (valid, or test under holdout 1), the last line of an
// epoch kept when a resumed run logged it twice; the final test line is left out.
std::map<std::string, std::map<int64_t, const MetricsLine*>> curves(const RunLog& run) {
  std::map<std::string, std::map<int64_t, const MetricsLine*>> by_split;
  const MetricsLine* final_line = run.final_test();
  for (const auto& line : run.lines)
    if (&line != final_line && line.split != "train") by_split[line.split][line.epoch] = &line;
  return by_split;
}

// Refuses to replace a file that no earlier report wrote.
void check_replaceable(const std::string& path) {
  if (!path_exists(path)) return;
  std::ifstream in(path);
  std::string head(256, '\0');
  in.read(head.data(), static_cast<std::streamsize>(head.size()));
  head.resize(static_cast<size_t>(in.gcount()));
  if (head.find(kMarker) == std::string::npos)
    throw DataError(path + ": exists and was not written by seqrec report; not replacing it (choose another --out)");
}

}  // namespace

bool metric_name_less(const std::string& a, const std::string& b) {
  const MetricKey x = metric_key(a), y = metric_key(b);
  if (x.rank != y.rank) return x.rank < y.rank;
  if (x.family != y.family) return x.family < y.family;
  if (x.k != y.k) return x.k < y.k;
  return a < b;
}

const MetricsLine* RunLog::final_test() const {
  for (auto it = lines.rbegin(); it != lines.rend(); ++it)
    if (it->split == "test") return &*it;
  return nullptr;
}

RunLog read_run_log(const std::string& run_dir) {
  RunLog run;
  run.dir = run_dir;
  const std::string path = strip_slashes(run_dir) + "/metrics.jsonl";
  if (!is_directory(run_dir)) throw DataError(run_dir + ": not a run folder (no such directory)");
  if (!path_exists(path)) throw DataError(path + ": missing (is " + run_dir + " a `seqrec train` output folder?)");
  std::istringstream in(read_file(path));
  std::string text;
  for (int64_t number = 1; std::getline(in, text); ++number) {
    if (text.empty()) continue;
    const std::string where = path + ":" + std::to_string(number);
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(text);
    } catch (const std::exception& e) {
      throw DataError(where + ": not a JSON line (" + std::string(e.what()) + ")");
    }
    if (!j.is_object()) throw DataError(where + ": not a JSON object");
    MetricsLine line;
    for (const auto& [key, value] : j.items()) {
      if (key == "split" || key == "protocol") {
        if (!value.is_string()) throw DataError(where + ": field '" + key + "' must be a string");
        (key == "split" ? line.split : line.protocol) = value.get<std::string>();
      } else if (key == "epoch" || key == "users") {
        if (!value.is_number_integer()) throw DataError(where + ": field '" + key + "' must be an integer");
        (key == "epoch" ? line.epoch : line.users) = value.get<int64_t>();
      } else if (value.is_number()) {
        line.values[key] = value.get<double>();
      }
    }
    if (line.split.empty()) throw DataError(where + ": no 'split' field");
    run.lines.push_back(std::move(line));
  }
  if (run.lines.empty()) throw DataError(path + ": empty (the run has not evaluated anything yet)");
  // Before 2026-12-03 a fresh `train` into a used folder appended to its metrics.jsonl (today it
  // starts the file anew): in such files a training starts where, right after a test line, an
  // evaluation goes back in epochs. Only the last training is reported.
  size_t start = 0;
  std::map<std::string, int64_t> last_epoch;  // per evaluated split
  std::string previous;                       // split of the previous evaluation line
  for (size_t i = 0; i < run.lines.size(); ++i) {
    const MetricsLine& line = run.lines[i];
    if (line.split == "train") continue;
    const auto it = last_epoch.find(line.split);
    if (previous == "test" && it != last_epoch.end() && line.epoch < it->second) {
      start = i;
      ++run.trainings;
      last_epoch.clear();
    }
    last_epoch[line.split] = line.epoch;
    previous = line.split;
  }
  // Training lines of the last training precede its first evaluation.
  while (start > 0 && run.lines[start - 1].split == "train") --start;
  run.lines.erase(run.lines.begin(), run.lines.begin() + static_cast<std::ptrdiff_t>(start));
  return run;
}

ReportSummary write_report(std::vector<RunLog> runs, const ReportOptions& options) {
  if (runs.empty()) throw DataError("report: no runs given");
  name_runs(runs);
  const std::string out = strip_slashes(options.out_dir);
  std::vector<std::pair<std::string, std::string>> files;  // (file name, content)
  std::string page = std::string(kMarker) + "\n# seqrec report\n\nRuns: ";
  for (size_t i = 0; i < runs.size(); ++i) page += (i ? ", `" : "`") + runs[i].dir + "`";
  page += "\n";

  // Test metrics side by side, grouped by protocol (numbers of different protocols do not compare).
  std::map<std::string, std::vector<const RunLog*>> by_protocol;
  for (const auto& r : runs)
    if (r.final_test()) by_protocol[r.final_test()->protocol].push_back(&r);
  for (const auto& [protocol, group] : by_protocol) {
    std::set<std::string, decltype(&metric_name_less)> names(&metric_name_less);
    for (const RunLog* r : group)
      for (const auto& [name, v] : r->final_test()->values) names.insert(name);
    page += "\n## Test metrics, protocol `" + protocol + "`, split test\n\n| run | epoch | users |";
    for (const auto& n : names) page += " " + n + " |";
    page += "\n|---|---|---|";
    for (size_t i = 0; i < names.size(); ++i) page += "---|";
    page += "\n";
    for (const RunLog* r : group) {
      const MetricsLine& t = *r->final_test();
      page += "| " + r->name + " | " + std::to_string(t.epoch) + " | " + std::to_string(t.users) + " |";
      for (const auto& n : names) {
        const auto it = t.values.find(n);
        page += " " + (it == t.values.end() ? std::string("") : table_value(n, it->second)) + " |";
      }
      page += "\n";
    }
    std::vector<std::string> shown, labels;
    for (const auto& m : charted_metrics(options, protocol))
      if (names.count(m)) shown.push_back(m);
    if (shown.empty()) continue;
    std::vector<std::vector<double>> values;
    for (const RunLog* r : group) {
      labels.push_back(r->name);
      std::vector<double> row;
      for (const auto& m : shown) {
        const auto it = r->final_test()->values.find(m);
        row.push_back(it == r->final_test()->values.end() ? 0.0 : it->second);
      }
      values.push_back(row);
    }
    const std::string chart = "test_" + file_stem(protocol) + ".svg";
    files.emplace_back(chart, svg_bar_chart("test, protocol " + protocol, shown, labels, values));
    page += "\n![test metrics, protocol " + protocol + "](" + chart + ")\n";
  }

  // Per run: metrics by epoch, and the training loss / learning rate when logged.
  for (const auto& r : runs) {
    page += "\n## Run " + r.name + " (`" + r.dir + "`)\n";
    if (r.trainings > 1)
      page += "\n`metrics.jsonl` holds " + std::to_string(r.trainings) +
              " trainings into this folder; this report shows the last.\n";
    std::vector<Series> series;
    std::string table;
    const std::vector<std::string> metrics = charted_metrics(options, run_protocol(r));
    for (const auto& [split, epochs] : curves(r)) {
      for (const auto& m : metrics) {
        Series s{m + " (" + split + ")", {}};
        for (const auto& [epoch, line] : epochs) {
          const auto it = line->values.find(m);
          if (it != line->values.end()) s.points.emplace_back(static_cast<double>(epoch), it->second);
        }
        if (!s.points.empty()) series.push_back(std::move(s));
      }
      table += "\n| epoch (" + split + ") |";
      std::string rule = "\n|---|";
      for (const auto& m : metrics) table += " " + m + " |", rule += "---|";
      table += rule + "\n";
      for (const auto& [epoch, line] : epochs) {
        table += "| " + std::to_string(epoch) + " |";
        for (const auto& m : metrics) {
          const auto it = line->values.find(m);
          table += " " + (it == line->values.end() ? std::string("") : fixed4(it->second)) + " |";
        }
        table += "\n";
      }
    }
    if (!series.empty()) {
      const std::string chart = file_stem(r.name) + "_metrics.svg";
      files.emplace_back(chart, svg_line_chart(r.name + ": metrics by epoch", "epoch", "", series));
      page += "\n![" + r.name + " metrics by epoch](" + chart + ")\n" + table;
    } else if (curves(r).empty()) {
      page += "\nNo evaluation during training.\n";
    } else {
      std::string listed;
      for (const auto& m : metrics) listed += (listed.empty() ? "" : ", ") + m;
      page += "\nIts evaluations carry none of " + listed + " (choose with --metrics).\n";
    }
    for (const char* key : {"loss", "lr"}) {
      Series s{key, {}};
      for (const auto& line : r.lines)
        if (line.split == "train" && line.values.count(key))
          s.points.emplace_back(static_cast<double>(line.epoch), line.values.at(key));
      if (s.points.empty()) continue;
      const std::string name = std::string(key) == "loss" ? "training loss" : "learning rate";
      const std::string chart = file_stem(r.name) + "_" + key + ".svg";
      files.emplace_back(chart, svg_line_chart(r.name + ": " + name + " by epoch", "epoch", key, {s}));
      page += "\n![" + r.name + " " + name + "](" + chart + ")\n";
    }
  }

  // Nothing is written unless every file may be.
  ReportSummary summary;
  summary.page = out + "/report.md";
  check_replaceable(summary.page);
  for (const auto& [name, content] : files) check_replaceable(out + "/" + name);
  make_dirs(out);
  for (const auto& [name, content] : files) {
    write_file_atomic(out + "/" + name, content);
    summary.charts.push_back(out + "/" + name);
  }
  write_file_atomic(summary.page, page);
  return summary;
}

}  // namespace seqrec::eval
