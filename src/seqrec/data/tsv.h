// Splitting one line of a tab-separated file (prepare's id maps, item tables, LSVCR's inputs).
#pragma once

#include <string_view>
#include <vector>

namespace seqrec::data {

/// Splits a TSV line on tabs, keeping empty fields (a missing title is an empty field). The views
/// point into `line`.
inline std::vector<std::string_view> split_tabs(std::string_view line) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (true) {
    const size_t k = line.find('\t', i);
    if (k == std::string_view::npos) {
      out.push_back(line.substr(i));
      return out;
    }
    out.push_back(line.substr(i, k - i));
    i = k + 1;
  }
}

}  // namespace seqrec::data
