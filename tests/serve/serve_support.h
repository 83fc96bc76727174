// Fixtures of the serving tests: a small synthetic prepared store and randomly initialised
// checkpoints (SASRec, HSTU) written to a temp dir once per process.
#pragma once

#include <torch/torch.h>

#include <memory>
#include <string>

#include "seqrec/config/config_node.h"
#include "seqrec/data/item_catalog.h"
#include "seqrec/data/prepare.h"
#include "seqrec/data/synthetic.h"
#include "seqrec/models/registry.h"
#include "seqrec/serve/recommender_service.h"
#include "seqrec/train/checkpoint.h"
#include "support.h"

namespace seqrec::testing::serve {

constexpr int64_t kMaxLen = 20;
inline const char* kSasRecYaml = "name: sasrec\nvariant: gr\nhidden_dim: 16\nnum_blocks: 1\nnum_heads: 2\ndropout: 0.2\n";
inline const char* kLlamaIdYaml = "name: llama_id\nitem_dim: 8\nhidden_dim: 16\nnum_blocks: 1\nnum_heads: 2\n";
inline const char* kHstuYaml = "name: hstu\nvariant: gr\nhidden_dim: 16\nnum_blocks: 1\nnum_heads: 2\ndropout: 0.2\n";

/// The prepared data (200 users, 80 items, timestamps, titles) and checkpoints, made once.
class ServeData {
 public:
  static ServeData& get() {
    static ServeData data;  // made once per test process, its temp dir removed at exit
    return data;
  }
  std::string dir() const { return dir_.file("data"); }
  /// A random-init checkpoint of `yaml` with `seed` (cached by name).
  std::string checkpoint(const std::string& name, const std::string& yaml, uint64_t seed) {
    const std::string path = dir_.file(name + ".safetensors");
    if (!std::filesystem::exists(path)) {
      models::ModelContext ctx;
      ctx.num_items = data::ItemCatalog::load(dir()).num_items();
      ctx.max_seq_len = kMaxLen;
      torch::manual_seed(seed);
      config::ConfigNode node = config::ConfigNode::parse(yaml);
      auto model = models::make_model(node, ctx);
      train::save_checkpoint(path, *model, yaml, ctx);
    }
    return path;
  }
  std::string sasrec() { return checkpoint("sasrec", kSasRecYaml, 1); }
  std::string sasrec_other() { return checkpoint("sasrec2", kSasRecYaml, 2); }
  std::string hstu() { return checkpoint("hstu", kHstuYaml, 3); }
  std::string llama_id() { return checkpoint("llama_id", kLlamaIdYaml, 4); }
  const TempDir& temp() const { return dir_; }
  /// Raw id of dense item 1.
  std::string first_item() const { return data::ItemCatalog::load(dir()).raw_id(1); }

 private:
  ServeData() {
    data::SynthOptions s;
    s.num_users = 200;
    s.num_items = 80;
    s.num_clusters = 8;
    s.min_seq_len = 5;
    s.max_seq_len = 40;
    s.seed = 11;
    s.output = dir_.file("raw");
    data::generate_synthetic(s);
    data::PrepareOptions p;
    p.input = dir_.file("raw/interactions.csv");
    p.items = dir_.file("raw/items.csv");
    p.items_format = data::ItemFormat::kTable;
    p.output = dir();
    data::prepare(p);
  }
  TempDir dir_;
};

/// ServiceData over the fixture's prepared store.
inline seqrec::serve::ServiceData service_data() {
  const std::string dir = ServeData::get().dir();
  return {dir, data::ItemCatalog::load(dir), data::UserMap::load(dir), data::InteractionStore::open(dir + "/interactions.bin")};
}

/// A service over `checkpoint` with the given index options.
inline std::unique_ptr<seqrec::serve::RecommenderService> make_service(const std::string& checkpoint,
                                                                      const seqrec::serve::IndexOptions& index = {}) {
  seqrec::serve::ServiceOptions o;
  o.checkpoint = checkpoint;
  o.index = index;
  o.block_items = 16;  // several blocks over the 80 items
  return std::make_unique<seqrec::serve::RecommenderService>(service_data(), o);
}

}  // namespace seqrec::testing::serve
