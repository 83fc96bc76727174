// HLLM item-LLM throughput: item texts/s and tokens/s of the item tower, packed (block-diagonal
// causal attention over one row) vs padded (a left-padded batch), forward and forward+backward, and
// the time to embed the whole catalogue (what each evaluation does). The forward and train-step
// timings run in the config's train.precision (fp32 | bf16; the catalogue pass is evaluation: fp32).
// Usage: bench_item_llm --config FILE [--set k=v ...] [--items N] [--reps R]
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "seqrec/common/allocator.h"
#include "seqrec/common/random.h"
#include "seqrec/config/config_node.h"
#include "seqrec/config/options.h"
#include "seqrec/data/interaction_store.h"
#include "seqrec/data/item_text.h"
#include "seqrec/llm/precision.h"
#include "seqrec/models/hllm.h"
#include "seqrec/models/registry.h"

using namespace seqrec;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Median seconds of fn over reps runs (after a warm-up run).
template <typename Fn>
double median_seconds(int reps, Fn&& fn) {
  fn();
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    auto a = Clock::now();
    fn();
    t.push_back(seconds_since(a));
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  ensure_passive_openmp(argv);
  tune_allocator();
  std::string config_file;
  std::vector<std::string> overrides;
  int64_t n_items = 512, reps = 5;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--config") config_file = argv[i + 1];
    else if (a == "--set") overrides.push_back(argv[i + 1]);
    else if (a == "--items") n_items = std::stoll(argv[i + 1]);
    else if (a == "--reps") reps = std::stoll(argv[i + 1]);
  }
  config::ConfigNode root = config::load_config(config_file, overrides);
  auto data_opts = config::read_data_options(root.child("data"));
  const config::Precision precision = config::read_train_options(root.child("train")).precision;
  auto store = data::InteractionStore::open(data_opts.dir + "/interactions.bin");
  auto tokens = data::ItemTokens::load(data_opts.dir + "/item_tokens.bin");
  torch::set_num_threads(2);
  models::ModelContext ctx{store.num_items(), data_opts.max_seq_len, {}, data_opts.dir};
  // The same model with packed or padded item batches (weights from the same seed).
  auto build = [&](bool packed) {
    auto o = overrides;
    o.push_back(std::string("model.packed_items=") + (packed ? "true" : "false"));
    torch::manual_seed(1);
    auto m = std::dynamic_pointer_cast<models::HllmImpl>(
        models::make_model(config::load_config(config_file, o).child("model"), ctx));
    if (m) llm::set_training_precision(*m, precision, torch::kCPU, "train.precision");
    return m;
  };
  if (!build(true)) {
    std::fprintf(stderr, "bench_item_llm: the config's model is not hllm\n");
    return 2;
  }
  // A fixed random sample of items, as a training step draws them.
  Rng rng(7);
  std::vector<int64_t> ids;
  int64_t tokens_total = 0;
  for (int64_t i = 0; i < n_items; ++i) {
    ids.push_back(1 + static_cast<int64_t>(rng.below(store.num_items())));
    tokens_total += tokens.tokens(ids.back()).size() + 1;  // + the [ITEM] slot
  }
  for (bool packed : {true, false}) {
    auto m = build(packed);
    m->train();
    const double fwd = median_seconds(static_cast<int>(reps), [&] {
      torch::NoGradGuard no_grad;
      m->embed_items(ids);
    });
    const double fwd_bwd = median_seconds(static_cast<int>(reps), [&] { m->embed_items(ids).sum().backward(); });
    std::printf("{\"precision\":\"%s\",\"mode\":\"%s\",\"items\":%ld,\"tokens\":%ld,\"fwd_texts_per_s\":%.0f,\"fwd_tokens_per_s\":%.0f,"
                "\"train_texts_per_s\":%.0f,\"train_tokens_per_s\":%.0f}\n",
                config::name(precision).c_str(), packed ? "packed" : "padded", long(n_items), long(tokens_total), n_items / fwd, tokens_total / fwd,
                n_items / fwd_bwd, tokens_total / fwd_bwd);
  }
  auto model = build(true);
  model->eval();
  auto t0 = Clock::now();
  model->all_item_embeddings();
  std::printf("{\"catalogue_items\":%ld,\"catalogue_seconds\":%.2f}\n", long(store.num_items()), seconds_since(t0));
  return 0;
}
