// PerSRec cost benchmark (issue: cached predict vs full history vs recent-only). One process, same
// weights shapes, random weights and histories: P old + R recent items, K user tokens, d, layers.
//
//   bench_persrec [P R K d layers heads users rounds [dump_dir]]   (defaults 1024 256 4 64 16 8 8 5)
//
// With dump_dir, the three models' weights (persrec / full / recent .safetensors) and the histories
// with the four last-position outputs (io.safetensors) are written there first, so that the
// PyTorch reference (bench/persrec_reference.py) can check it computes the same model before it is
// timed on the same shapes (bench/persrec_speed.sh runs both).
// Prints one JSON line per measurement (median over rounds of the per-user time, in ms) and a
// summary line with the ratios, cache bytes per user and training throughput with the segment mask
// (packed kernel, and the dense [B, W, W]-masked path) vs plain causal HSTU of the same width.
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "seqrec/config/config_node.h"
#include "seqrec/models/personalized_hstu.h"
#include "seqrec/models/registry.h"
#include "seqrec/train/checkpoint.h"

using namespace seqrec;

namespace {

double median_ms(int rounds, const std::function<void()>& fn) {
  fn();  // warm-up
  std::vector<double> t;
  for (int r = 0; r < rounds; ++r) {
    auto start = std::chrono::steady_clock::now();
    fn();
    t.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

models::SequenceRecommender build(const std::string& extra, int64_t window, int64_t d, int64_t layers, int64_t heads,
                                  bool jagged = true) {
  config::ConfigNode node = config::ConfigNode::parse(
      "name: hstu\nvariant: hllm\nhidden_dim: " + std::to_string(d) + "\nnum_blocks: " + std::to_string(layers) +
      "\nnum_heads: " + std::to_string(heads) + "\ndropout: 0\njagged_attention: " + (jagged ? "true" : "false") +
      "\n" + extra);
  models::ModelContext ctx{50000, window, {}, ""};
  return models::make_model(node, ctx);
}

// `users` full windows of `width` random items (eval layout: last_only).
data::SequenceBatch histories(int64_t users, int64_t width, bool last_only) {
  data::SequenceBatch b;
  b.item_ids = torch::randint(1, 50001, {users, width}, torch::kLong);
  b.user_ids = torch::arange(users, torch::kLong);
  b.last_only = last_only;
  return b;
}

}  // namespace

int main(int argc, char** argv) {
  auto arg = [&](int i, int64_t def) { return argc > i ? std::stoll(argv[i]) : def; };
  const int64_t p = arg(1, 1024), r = arg(2, 256), k = arg(3, 4), d = arg(4, 64), layers = arg(5, 16),
                heads = arg(6, 8), users = arg(7, 8);
  const int rounds = static_cast<int>(arg(8, 5));
  at::set_num_threads(2);
  torch::manual_seed(0);
  const std::string pz = "personalized:\n  number_of_user_tokens: " + std::to_string(k) +
                         "\n  pretrain_item_num: " + std::to_string(p) + "\n";
  auto persrec = std::dynamic_pointer_cast<models::PersonalizedHstuImpl>(build(pz, p + r, d, layers, heads));
  auto full = build("", p + r, d, layers, heads);        // full-history HSTU over P + R items
  auto recent = build("", r, d, layers, heads);          // recent-only HSTU over R items
  for (auto* m : {static_cast<torch::nn::Module*>(persrec.get()), static_cast<torch::nn::Module*>(full.get()),
                  static_cast<torch::nn::Module*>(recent.get())})
    m->eval();
  auto window = histories(users, p + r, true);
  auto recent_batch = window;
  recent_batch.item_ids = window.item_ids.narrow(1, p, r).contiguous();
  const double u = static_cast<double>(users);
  double cached_ms = 0, full_ms = 0, recent_ms = 0, uncached_ms = 0, compress_ms = 0;
  int64_t cache_bytes = 0;
  {
    torch::NoGradGuard no_grad;
    models::TokenCache cache = persrec->compress(window);
    if (argc > 9) {
      const std::string dir = argv[9];
      train::save_tensors(dir + "/persrec.safetensors", train::model_state(*persrec), {});
      train::save_tensors(dir + "/full.safetensors", train::model_state(*full), {});
      train::save_tensors(dir + "/recent.safetensors", train::model_state(*recent), {});
      auto last = [&](const torch::Tensor& out) { return out.select(1, out.size(1) - 1).contiguous(); };  // [U, D]
      train::save_tensors(dir + "/io.safetensors",
                          {{"items", window.item_ids},
                           {"cached_predict", last(persrec->predict(window, cache))},
                           {"uncached_segment_mask", last(persrec->encode(window))},
                           {"full_history", last(full->encode(window))},
                           {"recent_only", last(recent->encode(recent_batch))}},
                          {});
    }
    for (size_t l = 0; l < cache.keys.size(); ++l) cache_bytes += cache.keys[l][0].nbytes() + cache.values[l][0].nbytes();
    cache_bytes += cache.distances[0].nbytes() + cache.timestamps[0].nbytes() + 16;
    compress_ms = median_ms(rounds, [&] { persrec->compress(window); }) / u;
    cached_ms = median_ms(rounds, [&] { persrec->predict(window, cache); }) / u;
    uncached_ms = median_ms(rounds, [&] { persrec->encode(window); }) / u;
    full_ms = median_ms(rounds, [&] { full->encode(window); }) / u;
    recent_ms = median_ms(rounds, [&] { recent->encode(recent_batch); }) / u;
  }
  std::printf("{\"what\":\"inference_ms_per_user\",\"P\":%ld,\"R\":%ld,\"K\":%ld,\"d\":%ld,\"layers\":%ld,\"users\":%ld,"
              "\"cached_predict\":%.3f,\"uncached_segment_mask\":%.3f,\"full_history\":%.3f,\"recent_only\":%.3f,"
              "\"compress\":%.3f,\"cache_bytes_per_user\":%ld,\"full_over_cached\":%.2f}\n",
              long(p), long(r), long(k), long(d), long(layers), long(users), cached_ms, uncached_ms, full_ms, recent_ms,
              compress_ms, long(cache_bytes), full_ms / cached_ms);
  std::fflush(stdout);
  // Training throughput (forward + backward of the summed outputs), sequences/s.
  auto dense = std::dynamic_pointer_cast<models::PersonalizedHstuImpl>(build(pz, p + r, d, layers, heads, false));
  auto plain = build("", p + r + k, d, layers, heads);  // plain causal HSTU, same inserted width
  auto train_batch = histories(users, p + r, false);
  // The dense path keeps [B, H, W, W] scores per layer for backward: one user keeps it in memory.
  auto dense_batch = histories(1, p + r, false);
  auto plain_batch = histories(users, p + r + k, false);
  auto step = [](models::SequenceRecommenderImpl& m, const data::SequenceBatch& b) {
    m.zero_grad();
    m.encode(b).sum().backward();
  };
  for (auto* m : {static_cast<torch::nn::Module*>(persrec.get()), static_cast<torch::nn::Module*>(dense.get()),
                  static_cast<torch::nn::Module*>(plain.get())})
    m->train();
  const double seg = u / median_ms(rounds, [&] { step(*persrec, train_batch); }) * 1e3;
  const double dense_seq = 1.0 / median_ms(std::max(1, rounds / 2), [&] { step(*dense, dense_batch); }) * 1e3;
  const double causal = u / median_ms(rounds, [&] { step(*plain, plain_batch); }) * 1e3;
  std::printf("{\"what\":\"training_seq_per_s\",\"segment_mask_packed\":%.2f,\"segment_mask_dense\":%.2f,"
              "\"plain_causal\":%.2f,\"packed_over_causal\":%.3f}\n",
              seg, dense_seq, causal, seg / causal);
  return 0;
}
