// Helpers of the CLI integration tests: run the built `seqrec` binary and read what it printed.
#pragma once

#include <nlohmann/json.hpp>
#include <sys/wait.h>

#include <cstdlib>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include "support.h"

namespace seqrec::testing::cli {

struct Result {
  int code = -1;
  std::string out;
  std::string err;
};

inline std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

inline std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) lines.push_back(line);
  return lines;
}

inline std::vector<std::string> split_tabs(const std::string& line) {
  std::vector<std::string> f;
  std::string cur;
  for (char c : line) {
    if (c == '\t') {
      f.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  f.push_back(cur);
  return f;
}

/// Last JSON object line of stdout.
inline nlohmann::json last_json(const std::string& out) {
  auto lines = lines_of(out);
  for (auto it = lines.rbegin(); it != lines.rend(); ++it)
    if (!it->empty() && (*it)[0] == '{') return nlohmann::json::parse(*it);
  return nlohmann::json();
}

/// Runs `seqrec <args>` (one thread), capturing stdout and stderr through files in `dir`.
inline Result run_seqrec(const std::string& args, const TempDir& dir) {
  const std::string out = dir.file("last.stdout"), err = dir.file("last.stderr");
  const std::string cmd = "OMP_NUM_THREADS=1 " + std::string(SEQREC_BINARY) + " " + args + " > " + out + " 2> " + err;
  const int status = std::system(cmd.c_str());
  Result r;
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = slurp(out);
  r.err = slurp(err);
  return r;
}

}  // namespace seqrec::testing::cli
