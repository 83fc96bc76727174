// PerSRec's token caches on disk: what each layer's attention needs from a user's K token rows
// (models::TokenCache), written by `seqrec compress` and read by `eval` and `recommend`.
//
// A cache is a directory: shard-NNNNN.safetensors files, each covering a range of users (tensors
// user_ids [U], old_hashes [U], distances [U, K], timestamps [U, K], keys.<layer> [U, H, K, dqk],
// values.<layer> [U, H, K, dv]), and manifest.json, written last, naming the shards, the split, the
// checkpoint's fingerprint and the shapes. The directory is built under a temporary name and swapped
// in whole; an existing directory is only ever replaced when it is a token cache seqrec wrote.
#pragma once

#include <torch/nn/module.h>

#include <string>

#include "seqrec/models/user_tokens.h"

namespace seqrec::train {

/// What a cache was made from.
struct TokenCacheInfo {
  std::string fingerprint;     ///< model_fingerprint of the checkpoint's weights
  std::string split;           ///< test | valid | all (the history the old items were cut from)
  int64_t users_per_shard = 65536;  ///< users per shard file
};

/// A hash of every parameter and buffer (names, shapes, bytes): caches match one set of weights.
std::string model_fingerprint(const torch::nn::Module& model);

/// Writes `cache` (CPU tensors, user_ids ascending) to directory `dir`.
void save_token_cache(const std::string& dir, const models::TokenCache& cache, const TokenCacheInfo& info);

/// Reads a cache directory; throws CheckpointError when it is not one, is incomplete, or was made
/// from other weights (`fingerprint`) or another split (`split`, unless empty).
models::TokenCache load_token_cache(const std::string& dir, const std::string& fingerprint, const std::string& split);

}  // namespace seqrec::train
