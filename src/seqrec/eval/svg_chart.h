// Small self-contained SVG charts for reports (no plotting dependency): a line chart of series over
// a numeric x axis, and a grouped bar chart.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace seqrec::eval {

/// One line of a line chart: points (x, y) in x order.
struct Series {
  std::string label;
  std::vector<std::pair<double, double>> points;
};

/// A line chart (width x height pixels) with axes, ticks, a legend and a title. Series without
/// points are left out; an empty chart still renders its frame and title.
std::string svg_line_chart(const std::string& title, const std::string& x_label, const std::string& y_label,
                           const std::vector<Series>& series, int width = 640, int height = 360);

/// A grouped bar chart: one group per category, one bar per series in each group (values[s][c]).
std::string svg_bar_chart(const std::string& title, const std::vector<std::string>& categories,
                          const std::vector<std::string>& series_labels,
                          const std::vector<std::vector<double>>& values, int width = 640, int height = 360);

/// "nice" axis ticks covering [lo, hi]: about `count` round steps (1, 2, 2.5 or 5 x 10^k).
std::vector<double> nice_ticks(double lo, double hi, int count = 5);

/// Escapes &, <, >, " for SVG/XML text.
std::string xml_escape(const std::string& s);

}  // namespace seqrec::eval
