// The `semantic_id:` config section (`seqrec semantic-ids`): input, RQ-VAE architecture, training
// and index generation, with its reader and validation.
#pragma once

#include <cstdint>
#include <string>

#include "seqrec/semantic_id/index_generation.h"
#include "seqrec/semantic_id/rqvae.h"
#include "seqrec/semantic_id/rqvae_train.h"

namespace seqrec::config {
class ConfigNode;
}

namespace seqrec::semantic_id {

/// Everything `seqrec semantic-ids` reads from `semantic_id:`.
struct SemanticIdConfig {
  std::string embeddings;          ///< item embeddings [V, d]: .npy or safetensors (required)
  std::string embeddings_tensor;   ///< tensor name in a safetensors file ("" = its only tensor)
  std::string data_dir;            ///< prepared store whose item count V must match ("" = not checked)
  std::string dataset = "items";   ///< the index file is <out_dir>/<dataset>.index.json
  std::string out_dir;             ///< rqvae.safetensors, the index, metrics.jsonl, config.yaml (required)
  bool auto_hidden_dims = true;    ///< hidden_dims absent: upstream widths strictly between code_dim and d
  RqVaeOptions model;              ///< architecture (input_dim set from the embeddings)
  RqVaeTrainOptions train;         ///< training run
  IndexGenerationOptions index;    ///< collision rounds
  std::string device = "cpu";      ///< cpu | cuda | cuda:N
  int64_t threads = 0;             ///< intra-op threads (0 = all cores)
};

/// Reads and validates `semantic_id:` (node); ConfigError names the key ("semantic_id.levels: ...").
SemanticIdConfig read_semantic_id_config(config::ConfigNode node);

/// Completes the config once the embeddings are known (V items of dimension d): sets
/// model.input_dim and the automatic hidden dims; checks that the first batch can seed k-means
/// (min(batch_size, V) >= num_codes). Throws ConfigError naming the key.
void fit_to_embeddings(SemanticIdConfig& config, int64_t num_items, int64_t dim);

}  // namespace seqrec::semantic_id
