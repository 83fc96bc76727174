// LC-Rec inference throughput: users/s of constrained beam search (20 beams, 20 returned, code
// length + 1 new tokens) on a tiny random LLaMA whose vocabulary grew by the code tokens, for
// batches of prompts (one left-padded prefill, caches reordered by beam). Prints one JSON line per
// (constraint, batch size).
// Usage: bench_generation [--items N] [--users U] [--batches 1,8] [--prompt-len T] [--hidden D]
//        [--layers L] [--vocab V] [--levels M] [--codebook C] [--beams K] [--threads N] [--device cpu|cuda]
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "seqrec/common/allocator.h"
#include "seqrec/llm/decoder_lm.h"
#include "seqrec/semantic_id/constrained_beam.h"

using namespace seqrec;
using Clock = std::chrono::steady_clock;

namespace {

struct Args {
  int64_t items = 5000, users = 32, prompt_len = 96, hidden = 128, layers = 2, vocab = 32000;
  int64_t levels = 4, codebook = 256, beams = 20, threads = 2;
  std::vector<int64_t> batches = {1, 8};
  std::string device = "cpu";
};

std::vector<int64_t> parse_list(const std::string& s) {
  std::vector<int64_t> out;
  std::stringstream in(s);
  for (std::string part; std::getline(in, part, ',');) out.push_back(std::stoll(part));
  return out;
}

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--items") a.items = std::stoll(v);
    else if (k == "--users") a.users = std::stoll(v);
    else if (k == "--batches") a.batches = parse_list(v);
    else if (k == "--prompt-len") a.prompt_len = std::stoll(v);
    else if (k == "--hidden") a.hidden = std::stoll(v);
    else if (k == "--layers") a.layers = std::stoll(v);
    else if (k == "--vocab") a.vocab = std::stoll(v);
    else if (k == "--levels") a.levels = std::stoll(v);
    else if (k == "--codebook") a.codebook = std::stoll(v);
    else if (k == "--beams") a.beams = std::stoll(v);
    else if (k == "--threads") a.threads = std::stoll(v);
    else if (k == "--device") a.device = v;
    else std::fprintf(stderr, "bench_generation: unknown flag %s (ignored)\n", k.c_str());
  }
  return a;
}

// Distinct random codes for items 1..N over the code tokens [vocab, vocab + M*C).
std::vector<std::vector<int64_t>> random_codes(const Args& a, std::mt19937_64& rng) {
  std::set<std::vector<int64_t>> seen;
  std::vector<std::vector<int64_t>> codes(1);
  while (static_cast<int64_t>(codes.size()) <= a.items) {
    std::vector<int64_t> code;
    for (int64_t l = 0; l < a.levels; ++l) code.push_back(a.vocab + l * a.codebook + static_cast<int64_t>(rng() % a.codebook));
    if (seen.insert(code).second) codes.push_back(code);
  }
  return codes;
}

}  // namespace

int main(int argc, char** argv) {
  ensure_passive_openmp(argv);
  tune_allocator();
  const Args a = parse(argc, argv);
  torch::set_num_threads(static_cast<int>(a.threads));
  torch::manual_seed(0);
  llm::DecoderConfig c;
  c.vocab_size = a.vocab;
  c.hidden_size = a.hidden;
  c.intermediate_size = a.hidden * 8 / 3;
  c.num_layers = a.layers;
  c.num_heads = std::max<int64_t>(1, a.hidden / 32);
  c.num_kv_heads = c.num_heads;
  c.head_dim = a.hidden / c.num_heads;
  c.eos_token_id = 2;
  llm::DecoderLm lm(c);
  llm::resize_token_embeddings(*lm, a.vocab + a.levels * a.codebook);  // LC-Rec adds its code tokens
  lm->to(torch::Device(a.device));
  lm->eval();
  std::mt19937_64 rng(1);
  semantic_id::PrefixTrie trie(random_codes(a, rng), c.eos_token_id);
  std::vector<std::vector<int64_t>> prompts;
  for (int64_t u = 0; u < a.users; ++u) {
    std::vector<int64_t> p = {1};
    const int64_t len = a.prompt_len - 8 + static_cast<int64_t>(rng() % 16);  // lengths differ: padding
    while (static_cast<int64_t>(p.size()) < len) p.push_back(3 + static_cast<int64_t>(rng() % (a.vocab - 3)));
    prompts.push_back(p);
  }
  for (auto constraint : {semantic_id::CodeConstraint::kTrie, semantic_id::CodeConstraint::kLevelWhitelist}) {
    semantic_id::ItemGenerationOptions o;
    o.num_beams = a.beams;
    o.constraint = constraint;
    semantic_id::ItemGenerator generator(trie, o);
    for (int64_t batch : a.batches) {
      generator.generate(lm, {prompts.begin(), prompts.begin() + std::min(batch, a.users)});  // warm-up
      int64_t non_items = 0, beams = 0;
      const auto start = Clock::now();
      for (int64_t u = 0; u < a.users; u += batch) {
        const auto end = prompts.begin() + std::min(u + batch, a.users);
        for (const auto& r : generator.generate(lm, {prompts.begin() + u, end}))
          for (int64_t item : r.items) {
            non_items += item == semantic_id::kNotAnItem;
            ++beams;
          }
      }
      const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
      std::printf("{\"constraint\":\"%s\",\"batch\":%lld,\"beams\":%lld,\"users\":%lld,\"seconds\":%.3f,"
                  "\"users_per_s\":%.2f,\"non_item_share\":%.4f,\"device\":\"%s\"}\n",
                  constraint == semantic_id::CodeConstraint::kTrie ? "trie" : "whitelist", static_cast<long long>(batch),
                  static_cast<long long>(a.beams), static_cast<long long>(a.users), seconds, a.users / seconds,
                  beams > 0 ? static_cast<double>(non_items) / beams : 0.0, a.device.c_str());
      std::fflush(stdout);
    }
  }
  return 0;
}
