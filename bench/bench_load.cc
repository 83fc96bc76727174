// Checkpoint-loading memory benchmark. `bench_load write DIR [hidden] [layers]` writes a random
// LLaMA-shaped Hugging Face folder; `bench_load load DIR` loads it in a fresh process and prints the
// file size, the parameter bytes and the process's peak RSS split into anonymous and file-backed
// memory (the mapping), as one JSON line.
#include <torch/torch.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <sys/stat.h>

#include "seqrec/llm/decoder_lm.h"
#include "seqrec/train/checkpoint.h"

using namespace seqrec;

static int64_t status_kb(const char* key) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(key, 0) == 0) return std::stoll(line.substr(std::string(key).size()));
  return -1;
}

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: bench_load write|load DIR [hidden] [layers]\n");
    return 2;
  }
  const std::string mode = argv[1], dir = argv[2];
  if (mode == "write") {
    llm::DecoderConfig c;
    c.hidden_size = argc > 3 ? std::stoll(argv[3]) : 1024;
    c.num_layers = argc > 4 ? std::stoll(argv[4]) : 16;
    c.num_heads = c.hidden_size / 64;
    c.num_kv_heads = c.num_heads / 4;
    c.head_dim = 64;
    c.intermediate_size = c.hidden_size * 8 / 3;
    c.vocab_size = 32000;
    c.tie_word_embeddings = false;
    llm::DecoderLm lm(c);
    mkdir(dir.c_str(), 0755);
    nlohmann::json j = {{"model_type", "llama"}, {"vocab_size", c.vocab_size}, {"hidden_size", c.hidden_size},
                        {"intermediate_size", c.intermediate_size}, {"num_hidden_layers", c.num_layers},
                        {"num_attention_heads", c.num_heads}, {"num_key_value_heads", c.num_kv_heads},
                        {"head_dim", c.head_dim}, {"tie_word_embeddings", false}};
    std::ofstream(dir + "/config.json") << j.dump();
    train::save_tensors(dir + "/model.safetensors", train::model_state(*lm), {{"format", "pt"}});
    return 0;
  }
  struct stat st;
  stat((dir + "/model.safetensors").c_str(), &st);
  const int64_t before_kb = status_kb("VmRSS:");
  llm::DecoderLm lm = llm::load_decoder_lm(dir);
  int64_t param_bytes = 0;
  for (const auto& p : lm->parameters()) param_bytes += p.numel() * p.element_size();
  std::printf("{\"file_mb\":%.1f,\"param_mb\":%.1f,\"rss_before_mb\":%.1f,\"peak_rss_mb\":%.1f,\"rss_anon_mb\":%.1f,"
              "\"rss_file_mb\":%.1f}\n",
              st.st_size / 1048576.0, param_bytes / 1048576.0, before_kb / 1024.0, status_kb("VmHWM:") / 1024.0,
              status_kb("RssAnon:") / 1024.0, status_kb("RssFile:") / 1024.0);
  return 0;
}
