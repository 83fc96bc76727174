// seqrec semantic-ids: item embeddings -> RQ-VAE training -> LC-Rec item index (<dataset>.index.json).
#include <torch/torch.h>

#include <cstdio>

#include "cli/commands.h"
#include "seqrec/common/error.h"
#include "seqrec/common/fs.h"
#include "seqrec/common/log.h"
#include "seqrec/config/config_node.h"
#include "seqrec/data/item_catalog.h"
#include "seqrec/semantic_id/embedding_file.h"
#include "seqrec/semantic_id/index_generation.h"
#include "seqrec/semantic_id/item_index.h"
#include "seqrec/semantic_id/rqvae_train.h"
#include "seqrec/semantic_id/semantic_id_config.h"

namespace seqrec::cli {
namespace {

torch::Device semantic_id_device(const std::string& spec) {
  if (spec == "cpu") return torch::kCPU;
  if (!torch::cuda::is_available())
    throw ConfigError("semantic_id.device", "'" + spec + "' asked for, but this LibTorch has no CUDA or no GPU is "
                                            "visible (use cpu)");
  const int64_t index = spec == "cuda" ? 0 : std::stoll(spec.substr(5));
  if (index >= static_cast<int64_t>(torch::cuda::device_count()))
    throw ConfigError("semantic_id.device", spec + " does not exist");
  return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(index));
}

std::string dims_text(const semantic_id::RqVaeOptions& m) {
  std::string s = std::to_string(m.input_dim);
  for (int64_t h : m.hidden_dims) s += "->" + std::to_string(h);
  return s + "->" + std::to_string(m.code_dim);
}

std::string json_list(const std::vector<int64_t>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + std::to_string(v[i]);
  return s + "]";
}

}  // namespace

int run_semantic_ids(const CliArgs& args) {
  config::ConfigNode root = config::load_config(args.config_file, args.overrides);
  semantic_id::SemanticIdConfig c = semantic_id::read_semantic_id_config(root.child("semantic_id"));
  ignore_sections(root, "semantic_id");
  root.finish();
  set_threads(c.threads);
  const torch::Device device = semantic_id_device(c.device);

  torch::Tensor embeddings = semantic_id::read_embeddings(c.embeddings, c.embeddings_tensor);  // [V, d]
  const int64_t v = embeddings.size(0), d = embeddings.size(1);
  if (!c.data_dir.empty()) {
    const int64_t items = data::ItemCatalog::load(c.data_dir).num_items();
    if (items != v)
      throw DataError(c.embeddings + ": has " + std::to_string(v) + " rows, the prepared data " + c.data_dir +
                      " has " + std::to_string(items) + " items (row r must be item r + 1)");
  }
  semantic_id::fit_to_embeddings(c, v, d);
  make_dirs(c.out_dir);
  write_file_atomic(c.out_dir + "/config.yaml", root.dump() + "\n");
  const std::string ckpt = c.out_dir + "/rqvae.safetensors", index_path = c.out_dir + "/" + c.dataset + ".index.json";
  c.train.checkpoint_path = ckpt;
  c.train.metrics_path = c.out_dir + "/metrics.jsonl";
  log_info("semantic-ids: %ld items x %ld from %s; RQ-VAE %s, %ld levels x %ld codes; %ld epochs on %s",
           long(v), long(d), c.embeddings.c_str(), dims_text(c.model).c_str(), long(c.model.num_levels),
           long(c.model.num_codes), long(c.train.epochs), c.device.c_str());

  torch::manual_seed(c.train.seed);  // initial weights (and dropout)
  semantic_id::RqVae model(c.model);
  model->to(device);
  const semantic_id::RqVaeTrainSummary s = semantic_id::train_rqvae(*model, embeddings, c.train);
  log_info("semantic-ids: trained in %.1fs; best collision rate %.4f at epoch %ld -> %s", s.seconds,
           s.best_collision_rate, long(s.best_epoch), ckpt.c_str());

  semantic_id::RqVae best = semantic_id::load_rqvae(ckpt);
  best->to(device);
  const semantic_id::IndexGenerationReport r = semantic_id::generate_index(*best, embeddings, c.index);
  semantic_id::write_index_json(index_path, r.index);
  std::string usage;
  for (size_t l = 0; l < r.used_codes.size(); ++l)
    usage += (l ? ", " : "") + std::string(1, char('a' + l)) + " " + std::to_string(r.used_codes[l]) + "/" +
             std::to_string(c.model.num_codes);
  log_info("semantic-ids: collision rate %.4f before, %.4f after %ld round(s) (max %ld items on one id); codes "
           "used: %s -> %s",
           r.before.rate(), r.after.rate(), long(r.rounds), long(r.after.max_group), usage.c_str(),
           index_path.c_str());
  std::printf("{\"items\":%ld,\"levels\":%ld,\"best_epoch\":%ld,\"collision_rate_before\":%.6f,"
              "\"collision_rate_after\":%.6f,\"rounds\":%ld,\"max_items_per_id\":%ld,\"used_codes\":%s,"
              "\"index\":\"%s\"}\n",
              long(v), long(c.model.num_levels), long(s.best_epoch), r.before.rate(), r.after.rate(), long(r.rounds),
              long(r.after.max_group), json_list(r.used_codes).c_str(), index_path.c_str());
  return 0;
}

}  // namespace seqrec::cli
