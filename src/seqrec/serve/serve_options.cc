// Reader of the `serve:` section.
#include "seqrec/serve/serve_options.h"

#include "seqrec/common/error.h"
#include "seqrec/config/config_node.h"
#include "seqrec/config/validate.h"

namespace seqrec::serve {
namespace {

using config::key;
using config::require_positive;

IndexOptions read_index_options(config::ConfigNode node) {
  IndexOptions o;
  o.kind = node.get<std::string>("kind", o.kind);
  config::require_one_of(o.kind, {"exact", "hnsw", "ivfpq", "ivfflat"}, key(node, "kind"));
  o.hnsw_m = node.get<int64_t>("hnsw_m", o.hnsw_m);
  o.ef_construction = node.get<int64_t>("ef_construction", o.ef_construction);
  o.ef_search = node.get<int64_t>("ef_search", o.ef_search);
  o.nlist = node.get<int64_t>("nlist", o.nlist);
  o.nprobe = node.get<int64_t>("nprobe", o.nprobe);
  o.pq_m = node.get<int64_t>("pq_m", o.pq_m);
  o.pq_bits = node.get<int64_t>("pq_bits", o.pq_bits);
  o.recall_users = node.get<int64_t>("recall_users", o.recall_users);
  o.recall_k = node.get<int64_t>("recall_k", o.recall_k);
  for (const char* name : {"hnsw_m", "ef_construction", "ef_search", "nprobe", "pq_bits", "recall_k"})
    require_positive(node.get<int64_t>(name, 1), key(node, name));
  if (o.nlist < 0) throw ConfigError(key(node, "nlist"), "must be >= 0 (0 = automatic), got " + std::to_string(o.nlist));
  if (o.pq_m < 0) throw ConfigError(key(node, "pq_m"), "must be >= 0 (0 = automatic), got " + std::to_string(o.pq_m));
  if (o.pq_bits > 16) throw ConfigError(key(node, "pq_bits"), "must be <= 16, got " + std::to_string(o.pq_bits));
  if (o.recall_users < 0) throw ConfigError(key(node, "recall_users"), "must be >= 0");
  return o;
}

}  // namespace

ServeOptions read_serve_options(config::ConfigNode node) {
  ServeOptions o;
  o.host = node.get<std::string>("host", o.host);
  o.port = node.get<int64_t>("port", o.port);
  if (o.port < 0 || o.port > 65535) throw ConfigError(key(node, "port"), "must be in [0, 65535], got " + std::to_string(o.port));
  if (o.host.empty()) throw ConfigError(key(node, "host"), "must not be empty");
  o.threads = node.get<int64_t>("threads", o.threads);
  o.workers = node.get<int64_t>("workers", o.workers);
  o.torch_threads = node.get<int64_t>("torch_threads", o.torch_threads);
  o.max_batch = node.get<int64_t>("max_batch", o.max_batch);
  o.max_wait_us = node.get<int64_t>("max_wait_us", o.max_wait_us);
  o.queue_limit = node.get<int64_t>("queue_limit", o.queue_limit);
  o.timeout_ms = node.get<int64_t>("timeout_ms", o.timeout_ms);
  o.read_timeout_ms = node.get<int64_t>("read_timeout_ms", o.read_timeout_ms);
  o.write_timeout_ms = node.get<int64_t>("write_timeout_ms", o.write_timeout_ms);
  o.keep_alive_s = node.get<int64_t>("keep_alive_s", o.keep_alive_s);
  o.max_body_bytes = node.get<int64_t>("max_body_bytes", o.max_body_bytes);
  o.max_k = node.get<int64_t>("max_k", o.max_k);
  o.max_history = node.get<int64_t>("max_history", o.max_history);
  o.max_list = node.get<int64_t>("max_list", o.max_list);
  o.max_batch_requests = node.get<int64_t>("max_batch_requests", o.max_batch_requests);
  o.block_items = node.get<int64_t>("block_items", o.block_items);
  for (const char* name : {"threads", "workers", "max_batch", "queue_limit", "timeout_ms", "read_timeout_ms",
                           "write_timeout_ms", "keep_alive_s", "max_body_bytes", "max_k", "max_history", "max_list",
                           "max_batch_requests", "block_items"})
    require_positive(node.get<int64_t>(name, 1), key(node, name));
  if (o.max_wait_us < 0) throw ConfigError(key(node, "max_wait_us"), "must be >= 0, got " + std::to_string(o.max_wait_us));
  if (o.torch_threads < 0) throw ConfigError(key(node, "torch_threads"), "must be >= 0 (0 = all cores)");
  o.auth = node.get<std::string>("auth", o.auth);
  config::require_one_of(o.auth, {"all", "admin"}, key(node, "auth"));
  o.log_requests = node.get<bool>("log_requests", o.log_requests);
  o.index = read_index_options(node.child("index"));
  return o;
}

}  // namespace seqrec::serve
