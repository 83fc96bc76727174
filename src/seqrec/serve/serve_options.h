// Options of `seqrec serve` (the `serve:` config section): network, concurrency, request limits
// and the item index. Flags of the CLI (--port, --index, ...) are overrides of these keys.
#pragma once

#include <cstdint>
#include <string>

namespace seqrec::config {
class ConfigNode;
}

namespace seqrec::serve {

/// The item index that answers top-k (serve.index).
struct IndexOptions {
  std::string kind = "exact";   ///< exact (blocked matrix product) | hnsw | ivfpq | ivfflat (faiss, inner product)
  int64_t hnsw_m = 32;          ///< HNSW: neighbours per node
  int64_t ef_construction = 200;///< HNSW: candidate list while building
  int64_t ef_search = 128;      ///< HNSW: candidate list while searching
  int64_t nlist = 0;            ///< IVF: inverted lists (0 = 4 * sqrt(V), at most V / 39)
  int64_t nprobe = 16;          ///< IVF: lists visited per query (nlist = every list: exact for ivfflat)
  int64_t pq_m = 0;             ///< IVF-PQ: sub-quantizers, must divide D (0 = the largest of D/2, D/4, ... dividing D with <= 64)
  int64_t pq_bits = 8;          ///< IVF-PQ: bits per sub-quantizer code
  int64_t recall_users = 200;   ///< users whose top-k measure the index's recall against exact at start (0 = skip)
  int64_t recall_k = 10;        ///< k of that recall
};

/// Everything `seqrec serve` reads from `serve:`.
struct ServeOptions {
  std::string host = "127.0.0.1";   ///< bind address (loopback unless another one is asked for)
  int64_t port = 8080;              ///< TCP port (0 = an ephemeral one, printed on stdout)
  int64_t threads = 16;             ///< HTTP connection threads (each holds one connection at a time)
  int64_t workers = 1;              ///< model workers: batches run concurrently
  int64_t torch_threads = 0;        ///< LibTorch intra-op threads per forward (0 = all cores)
  int64_t max_batch = 32;           ///< queries per forward
  int64_t max_wait_us = 1000;       ///< how long a worker waits to fill a batch after its first query
  int64_t queue_limit = 4096;       ///< queued queries before requests are refused (503)
  int64_t timeout_ms = 5000;        ///< a request's queue + compute deadline (504 past it)
  int64_t read_timeout_ms = 5000;   ///< a stalled client is dropped after this long without a byte
  int64_t write_timeout_ms = 5000;  ///< a client that stops reading is dropped after this long
  int64_t keep_alive_s = 5;         ///< idle keep-alive connection lifetime
  int64_t max_body_bytes = 1 << 20; ///< larger request bodies get 413
  int64_t max_k = 1000;             ///< largest k
  int64_t max_history = 10000;      ///< most items in a request's history
  int64_t max_list = 10000;         ///< most items in an allow or deny list
  int64_t max_batch_requests = 256; ///< most requests in one POST /v1/recommend/batch
  int64_t block_items = 16384;      ///< items per block of the exact scorer's matrix product
  std::string auth = "all";         ///< with --token-file: all (every route) | admin (only /admin/*)
  bool log_requests = true;         ///< one stderr line per request (method, path, status, ms)
  IndexOptions index;               ///< serve.index
};

/// Reads and validates the `serve:` section (ConfigError naming serve.<key>).
ServeOptions read_serve_options(config::ConfigNode node);

}  // namespace seqrec::serve
