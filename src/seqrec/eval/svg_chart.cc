// SVG charts for reports (see svg_chart.h).
#include "seqrec/eval/svg_chart.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <limits>

namespace seqrec::eval {

namespace {

const char* const kColors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"};
constexpr int kNumColors = sizeof(kColors) / sizeof(kColors[0]);
constexpr int kLeft = 64, kRight = 170, kTop = 34, kBottom = 48;  // plot margins (legend on the right)

std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

std::string px(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", v);
  return buf;
}

std::string header(int width, int height, const std::string& title) {
  return "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + std::to_string(width) + "\" height=\"" +
         std::to_string(height) + "\" viewBox=\"0 0 " + std::to_string(width) + " " + std::to_string(height) +
         "\" font-family=\"sans-serif\" font-size=\"12\">\n<!-- seqrec report -->\n"
         "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
         "<text x=\"" + std::to_string(width / 2) + "\" y=\"20\" text-anchor=\"middle\" font-size=\"14\">" +
         xml_escape(title) + "</text>\n";
}

// Axis frame, horizontal grid and y tick labels for ticks [y0 .. y1]; returns the SVG.
std::string y_axis(const std::vector<double>& ticks, int width, int height, const std::string& y_label) {
  const double plot_h = height - kTop - kBottom, y0 = ticks.front(), y1 = ticks.back();
  std::string s;
  for (double t : ticks) {
    const double y = kTop + plot_h * (1.0 - (t - y0) / (y1 - y0));
    s += "<line x1=\"" + std::to_string(kLeft) + "\" y1=\"" + px(y) + "\" x2=\"" + std::to_string(width - kRight) +
         "\" y2=\"" + px(y) + "\" stroke=\"#e0e0e0\"/>\n";
    s += "<text x=\"" + std::to_string(kLeft - 6) + "\" y=\"" + px(y + 4) + "\" text-anchor=\"end\">" + num(t) +
         "</text>\n";
  }
  s += "<rect x=\"" + std::to_string(kLeft) + "\" y=\"" + std::to_string(kTop) + "\" width=\"" +
       std::to_string(width - kLeft - kRight) + "\" height=\"" + px(plot_h) + "\" fill=\"none\" stroke=\"#444\"/>\n";
  s += "<text x=\"14\" y=\"" + px(kTop + plot_h / 2) + "\" text-anchor=\"middle\" transform=\"rotate(-90 14 " +
       px(kTop + plot_h / 2) + ")\">" + xml_escape(y_label) + "</text>\n";
  return s;
}

std::string legend(const std::vector<std::string>& labels, int width) {
  std::string s;
  for (size_t i = 0; i < labels.size(); ++i) {
    const int y = kTop + 8 + static_cast<int>(i) * 18;
    s += "<rect x=\"" + std::to_string(width - kRight + 12) + "\" y=\"" + std::to_string(y - 9) +
         "\" width=\"12\" height=\"12\" fill=\"" + kColors[i % kNumColors] + "\"/>\n";
    s += "<text x=\"" + std::to_string(width - kRight + 30) + "\" y=\"" + std::to_string(y + 1) + "\">" +
         xml_escape(labels[i]) + "</text>\n";
  }
  return s;
}

}  // namespace

std::string xml_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

std::vector<double> nice_ticks(double lo, double hi, int count) {
  if (!(hi > lo)) {  // one value (or none): a unit-wide range around it
    const double pad = lo == 0.0 ? 1.0 : std::abs(lo) * 0.5;
    lo -= pad;
    hi += pad;
  }
  const double raw = (hi - lo) / std::max(count, 1);
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = 10 * mag;
  for (double m : {1.0, 2.0, 2.5, 5.0, 10.0})
    if (m * mag >= raw * (1 - 1e-9)) {
      step = m * mag;
      break;
    }
  const auto first = static_cast<int64_t>(std::floor(lo / step + 1e-9)),
             last = static_cast<int64_t>(std::ceil(hi / step - 1e-9));
  std::vector<double> ticks;
  for (int64_t i = first; i <= std::max(last, first + 1); ++i) {
    char buf[32];  // i * step to 12 significant digits: 0.6, not 0.6000000000000001
    std::snprintf(buf, sizeof buf, "%.12g", static_cast<double>(i) * step);
    ticks.push_back(std::strtod(buf, nullptr));
  }
  return ticks;
}

std::string svg_line_chart(const std::string& title, const std::string& x_label, const std::string& y_label,
                           const std::vector<Series>& series, int width, int height) {
  double x0 = std::numeric_limits<double>::infinity(), x1 = -x0, ylo = x0, yhi = -x0;
  std::vector<std::string> labels;
  for (const auto& s : series) {
    if (s.points.empty()) continue;
    labels.push_back(s.label);
    for (const auto& [x, y] : s.points) {
      x0 = std::min(x0, x), x1 = std::max(x1, x), ylo = std::min(ylo, y), yhi = std::max(yhi, y);
    }
  }
  if (labels.empty()) x0 = 0, x1 = 1, ylo = 0, yhi = 1;
  if (x1 == x0) x0 -= 1, x1 += 1;
  const std::vector<double> yt = nice_ticks(ylo, yhi), xt = nice_ticks(x0, x1);
  const double plot_w = width - kLeft - kRight, plot_h = height - kTop - kBottom;
  const double xa = xt.front(), xb = xt.back(), ya = yt.front(), yb = yt.back();
  auto sx = [&](double x) { return kLeft + plot_w * (x - xa) / (xb - xa); };
  auto sy = [&](double y) { return kTop + plot_h * (1.0 - (y - ya) / (yb - ya)); };
  std::string s = header(width, height, title) + y_axis(yt, width, height, y_label);
  for (double t : xt)
    s += "<text x=\"" + px(sx(t)) + "\" y=\"" + std::to_string(height - kBottom + 16) + "\" text-anchor=\"middle\">" +
         num(t) + "</text>\n";
  s += "<text x=\"" + px(kLeft + plot_w / 2) + "\" y=\"" + std::to_string(height - 10) + "\" text-anchor=\"middle\">" +
       xml_escape(x_label) + "</text>\n";
  int k = 0;
  for (const auto& ser : series) {
    if (ser.points.empty()) continue;
    const char* color = kColors[k++ % kNumColors];
    std::string pts;
    for (const auto& [x, y] : ser.points) pts += px(sx(x)) + "," + px(sy(y)) + " ";
    s += "<polyline fill=\"none\" stroke=\"" + std::string(color) + "\" stroke-width=\"2\" points=\"" + pts + "\"/>\n";
    for (const auto& [x, y] : ser.points)
      s += "<circle cx=\"" + px(sx(x)) + "\" cy=\"" + px(sy(y)) + "\" r=\"3\" fill=\"" + color + "\"><title>" +
           xml_escape(ser.label) + " " + num(x) + ": " + num(y) + "</title></circle>\n";
  }
  return s + legend(labels, width) + "</svg>\n";
}

std::string svg_bar_chart(const std::string& title, const std::vector<std::string>& categories,
                          const std::vector<std::string>& series_labels,
                          const std::vector<std::vector<double>>& values, int width, int height) {
  double hi = 0.0;
  for (const auto& row : values)
    for (double v : row) hi = std::max(hi, v);
  const std::vector<double> yt = nice_ticks(0.0, hi > 0 ? hi : 1.0);
  const double plot_w = width - kLeft - kRight, plot_h = height - kTop - kBottom, yb = yt.back();
  std::string s = header(width, height, title) + y_axis(yt, width, height, "");
  const auto nc = static_cast<double>(std::max<size_t>(categories.size(), 1));
  const auto ns = static_cast<double>(std::max<size_t>(series_labels.size(), 1));
  const double group = plot_w / nc, bar = group * 0.8 / ns;
  for (size_t c = 0; c < categories.size(); ++c) {
    const double gx = kLeft + group * static_cast<double>(c);
    s += "<text x=\"" + px(gx + group / 2) + "\" y=\"" + std::to_string(height - kBottom + 16) +
         "\" text-anchor=\"middle\">" + xml_escape(categories[c]) + "</text>\n";
    for (size_t k = 0; k < series_labels.size() && k < values.size(); ++k) {
      if (c >= values[k].size()) continue;
      const double v = values[k][c], h = plot_h * v / yb, x = gx + group * 0.1 + bar * static_cast<double>(k);
      s += "<rect x=\"" + px(x) + "\" y=\"" + px(kTop + plot_h - h) + "\" width=\"" + px(bar) + "\" height=\"" +
           px(h) + "\" fill=\"" + kColors[k % kNumColors] + "\"><title>" + xml_escape(series_labels[k]) + " " +
           xml_escape(categories[c]) + ": " + num(v) + "</title></rect>\n";
      s += "<text x=\"" + px(x + bar / 2) + "\" y=\"" + px(kTop + plot_h - h - 3) +
           "\" text-anchor=\"middle\" font-size=\"10\">" + num(std::round(v * 1e4) / 1e4) + "</text>\n";
    }
  }
  return s + legend(series_labels, width) + "</svg>\n";
}

}  // namespace seqrec::eval
