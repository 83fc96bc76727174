// seqrec compress: PerSRec's offline step (systems.md §6.1, compress_pretrain): every user's old
// items and the user tokens run once; the tokens' per-layer keys and values go to a cache
// directory that eval and recommend read with --token-cache.
#include <torch/torch.h>

#include <chrono>
#include <cstdio>

#include "cli/commands.h"
#include "seqrec/common/error.h"
#include "seqrec/common/log.h"
#include "seqrec/config/config_node.h"
#include "seqrec/config/options.h"
#include "seqrec/data/batcher.h"
#include "seqrec/data/interaction_store.h"
#include "seqrec/data/split.h"
#include "seqrec/models/personalized_hstu.h"
#include "seqrec/train/checkpoint.h"
#include "seqrec/train/token_cache.h"

namespace seqrec::cli {
namespace {

models::UserTokenModel* personalized(models::SequenceRecommenderImpl& model, const std::string& what) {
  auto* p = dynamic_cast<models::UserTokenModel*>(&model);
  if (!p) throw ConfigError(what, "this checkpoint's model has no user tokens (an hstu, hllm or llama_id model with model.personalized)");
  return p;
}

// The histories a cache is made for: an evaluation split's, or every user's whole row ("all").
std::vector<data::EvalQuery> histories(const data::InteractionStore& store, const std::string& split) {
  if (split != "all") return data::eval_queries(store, data::parse_split(split, "--split"));
  std::vector<data::EvalQuery> out;
  for (int64_t u = 0; u < store.num_users(); ++u) {
    data::EvalQuery q;
    q.user = u;
    q.history = store.items(u);
    if (store.has_timestamps()) q.history_ts = store.timestamps(u);
    if (!q.history.empty()) out.push_back(q);
  }
  return out;
}

// Concatenates per-batch caches (users ascending, as the queries are).
models::TokenCache concat(const std::vector<models::TokenCache>& parts) {
  models::TokenCache out;
  auto cat = [&](auto member) {
    std::vector<torch::Tensor> v;
    for (const auto& p : parts) v.push_back(p.*member);
    return torch::cat(v, 0);
  };
  out.user_ids = cat(&models::TokenCache::user_ids);
  out.old_hashes = cat(&models::TokenCache::old_hashes);
  out.distances = cat(&models::TokenCache::distances);
  out.timestamps = cat(&models::TokenCache::timestamps);
  for (size_t l = 0; !parts.empty() && l < parts[0].keys.size(); ++l) {
    std::vector<torch::Tensor> k, v;
    for (const auto& p : parts) k.push_back(p.keys[l]), v.push_back(p.values[l]);
    out.keys.push_back(torch::cat(k, 0));
    out.values.push_back(torch::cat(v, 0));
  }
  return out;
}

}  // namespace

void install_token_cache(models::SequenceRecommenderImpl& model, const CliArgs& args, const std::string& split) {
  if (args.token_cache.empty()) return;
  auto* p = personalized(model, "--token-cache");
  p->set_token_cache(std::make_shared<models::TokenCache>(
      train::load_token_cache(args.token_cache, train::model_fingerprint(model), split)));
}

int run_compress(const CliArgs& args) {
  refuse_lsvcr_checkpoint(args, "compress");
  config::ConfigNode root = load_run_config(args);
  config::DataOptions data_opts = config::read_data_options(root.child("data"));
  const int64_t threads = root.child("train").get<int64_t>("threads", 0);
  ignore_sections(root, "data");
  root.finish();
  if (data_opts.dir.empty()) throw ConfigError("data.dir", "required key is missing (or pass --data DIR)");
  if (args.split != "test" && args.split != "valid" && args.split != "all")
    throw ConfigError("--split", "'" + args.split + "' is not one of: test, valid, all");
  if (args.split == "valid" && data_opts.holdout == 1)
    throw ConfigError("--split", "valid: data.holdout is 1, so there is no validation split");
  if (args.users_per_shard < 1) throw ConfigError("--users-per-shard", "must be >= 1");
  set_threads(threads);
  data::InteractionStore store = open_store(data_opts);
  train::LoadedModel loaded = train::load_checkpoint(args.checkpoint, data_opts.dir);
  auto* model = personalized(*loaded.model, "--checkpoint");
  loaded.model->eval();
  torch::NoGradGuard no_grad;
  const auto start = std::chrono::steady_clock::now();
  const std::vector<data::EvalQuery> queries = histories(store, args.split);
  std::vector<models::TokenCache> parts;
  const int64_t n = static_cast<int64_t>(queries.size()), batch = 256;
  for (int64_t b = 0; b < n; b += batch)
    parts.push_back(model->compress(data::make_eval_batch(queries, b, std::min(n, b + batch), loaded.context.max_seq_len)));
  if (parts.empty()) throw DataError(data_opts.dir + ": no user has a history to compress");
  models::TokenCache cache = concat(parts);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  train::TokenCacheInfo info;
  info.fingerprint = train::model_fingerprint(*loaded.model);
  info.split = args.split;
  info.users_per_shard = args.users_per_shard;
  train::save_token_cache(args.out, cache, info);
  int64_t bytes = 0;
  for (size_t l = 0; l < cache.keys.size(); ++l) bytes += cache.keys[l][0].nbytes() + cache.values[l][0].nbytes();
  bytes += cache.distances[0].nbytes() + cache.timestamps[0].nbytes() + 16;  // + user id and hash
  log_info("compress: %ld users (split %s) in %.2fs -> %s", long(n), args.split.c_str(), seconds, args.out.c_str());
  std::printf("{\"users\":%ld,\"split\":\"%s\",\"bytes_per_user\":%ld,\"seconds\":%.3f,\"out\":\"%s\"}\n", long(n),
              args.split.c_str(), long(bytes), seconds, args.out.c_str());
  return 0;
}

}  // namespace seqrec::cli
