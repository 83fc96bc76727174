// bench_tokenizer: encode throughput of the tokenizer.json BPE (Qwen) on item titles.
//
//   bench_tokenizer TOKENIZER_DIR [--target-mb N] [CORPUS...]
//
// A corpus file is read by its shape: a .tsv with a "title" column gives that column, a MovieLens
// movies.dat (id::title::genres, ISO-8859-1) gives its titles, anything else gives its lines. The
// titles are repeated until the corpus reaches --target-mb (default 5), then each title is encoded
// on its own (as item texts are) five times with the word cache on and five times with it off; the
// output is one JSON line with the median MB/s and tokens/s of each.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "seqrec/llm/bpe_tokenizer.h"
#include "seqrec/llm/tokenizer.h"

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string latin1_to_utf8(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (c < 0x80) {
      out += static_cast<char>(c);
    } else {
      out += static_cast<char>(0xC0 | (c >> 6));
      out += static_cast<char>(0x80 | (c & 0x3F));
    }
  }
  return out;
}

std::vector<std::string> read_texts(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(path + ": cannot open");
  std::vector<std::string> texts;
  std::string line;
  if (ends_with(path, ".tsv")) {
    std::getline(in, line);
    std::vector<std::string> header;
    std::stringstream hs(line);
    for (std::string f; std::getline(hs, f, '\t');) header.push_back(f);
    const auto col = std::find(header.begin(), header.end(), "title") - header.begin();
    if (col == static_cast<long>(header.size())) throw std::runtime_error(path + ": no title column");
    while (std::getline(in, line)) {
      std::stringstream ls(line);
      std::string f;
      for (long i = 0; i <= col && std::getline(ls, f, '\t'); ++i) {
      }
      if (!f.empty()) texts.push_back(f);
    }
  } else if (ends_with(path, "movies.dat")) {
    while (std::getline(in, line)) {
      const size_t a = line.find("::"), b = line.rfind("::");
      if (a != std::string::npos && b > a) texts.push_back(latin1_to_utf8(line.substr(a + 2, b - a - 2)));
    }
  } else {
    while (std::getline(in, line)) {
      if (!line.empty()) texts.push_back(line);
    }
  }
  return texts;
}

struct Run {
  double mb_per_s, tokens_per_s;
};

Run time_once(const seqrec::llm::Tokenizer& tok, const std::vector<std::string>& corpus, size_t bytes) {
  const auto t0 = std::chrono::steady_clock::now();
  size_t tokens = 0;
  for (const std::string& text : corpus) tokens += tok.encode(text).size();
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return {bytes / 1e6 / s, tokens / s};
}

Run median_of_5(seqrec::llm::Tokenizer& tok, seqrec::llm::BpeTokenizer* bpe, bool cache,
                const std::vector<std::string>& corpus, size_t bytes) {
  std::vector<Run> runs;
  for (int i = 0; i < 5; ++i) {
    if (bpe != nullptr) bpe->set_cache_enabled(cache);  // also empties the cache: each run starts cold
    runs.push_back(time_once(tok, corpus, bytes));
  }
  std::sort(runs.begin(), runs.end(), [](const Run& a, const Run& b) { return a.mb_per_s < b.mb_per_s; });
  return runs[2];
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: bench_tokenizer TOKENIZER_DIR [--target-mb N] [CORPUS...]\n";
    return 2;
  }
  try {
    const std::string dir = argv[1];
    double target_mb = 5;
    std::vector<std::string> files;
    for (int i = 2; i < argc; ++i) {
      const std::string a = argv[i];
      if (a == "--target-mb" && i + 1 < argc) {
        target_mb = std::atof(argv[++i]);
      } else {
        files.push_back(a);
      }
    }
    if (files.empty()) {
      std::cerr << "bench_tokenizer: give corpus files, e.g. .../amazon-beauty/beauty_items.tsv "
                   ".../ml-1m/movies.dat\n";
      return 2;
    }
    std::vector<std::string> titles;
    for (const auto& f : files) {
      auto t = read_texts(f);
      titles.insert(titles.end(), t.begin(), t.end());
    }
    if (titles.empty()) throw std::runtime_error("the corpus is empty");
    std::vector<std::string> corpus;
    size_t bytes = 0;
    while (bytes < target_mb * 1e6) {
      for (const auto& t : titles) {
        corpus.push_back(t);
        bytes += t.size();
      }
    }

    const auto t0 = std::chrono::steady_clock::now();
    auto tok = seqrec::llm::load_tokenizer(dir);
    const double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    auto* bpe = dynamic_cast<seqrec::llm::BpeTokenizer*>(tok.get());

    const Run cached = median_of_5(*tok, bpe, true, corpus, bytes);
    nlohmann::json out = {{"tokenizer", dir},
                          {"load_s", load_s},
                          {"texts", corpus.size()},
                          {"unique_texts", titles.size()},
                          {"mb", bytes / 1e6},
                          {"mb_per_s", cached.mb_per_s},
                          {"tokens_per_s", cached.tokens_per_s}};
    if (bpe != nullptr) {
      const Run uncached = median_of_5(*tok, bpe, false, corpus, bytes);
      out["mb_per_s_no_cache"] = uncached.mb_per_s;
      out["tokens_per_s_no_cache"] = uncached.tokens_per_s;
      bpe->set_cache_enabled(true);
    }
    std::cout << out.dump() << std::endl;
  } catch (const std::exception& e) {
    std::cerr << "bench_tokenizer: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
