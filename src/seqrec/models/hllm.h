// HLLM (ByteDance, systems.md §1): an item LLM turns each item's text into an embedding (the
// final-norm hidden state at a learnable [ITEM] slot), a user LLM reads the sequence of item
// embeddings as input embeddings and predicts the next item's embedding at every position.
//
// The item texts come tokenised from <data.dir>/item_tokens.bin (seqrec prepare, item_text:).
// Item texts of a batch run packed into one row with block-diagonal causal attention (no compute on
// padding); `packed_items: false` runs them as a left-padded batch instead (same result, for
// benchmarks). Scores are cosines: encode() and item_embeddings() return l2-normalised vectors.
//
// Training step: encode() embeds the batch's inputs, targets and negatives in one item-LLM pass and
// keeps them for the step, so the loss's item_embeddings() calls reuse them (gradients flow into the
// item LLM through positives and negatives alike, as in HLLM). In eval mode all_item_embeddings()
// embeds the catalogue once and caches it until a parameter of the item tower changes.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "seqrec/data/item_text.h"
#include "seqrec/llm/decoder_lm.h"
#include "seqrec/models/recommender.h"
#include "seqrec/models/user_tokens.h"

namespace seqrec::config {
class ConfigNode;
}

namespace seqrec::models {

/// One tower: a pretrained Hugging Face folder or an architecture to train from scratch.
struct LlmTowerOptions {
  std::string pretrained;        ///< HF folder ("" = from `config`)
  llm::DecoderConfig config;     ///< used when pretrained is ""
  bool freeze = false;           ///< no gradient into this tower
  int64_t lora_rank = 0;         ///< > 0: LoRA adapters (base frozen)
  double lora_alpha = 16;
  std::vector<std::string> lora_targets = {"q_proj", "v_proj"};
};

struct HllmOptions {
  int64_t num_items = 0;
  int64_t max_seq_len = 10;
  LlmTowerOptions item_llm;
  LlmTowerOptions user_llm;
  double item_token_std = 0.02;        ///< init of the [ITEM] input vector
  double logit_scale_init = 1 / 0.07;  ///< exp(logit_scale) starts here (nce loss, scale: learnable)
  bool gradient_checkpointing = false;
  bool packed_items = true;            ///< packed block-diagonal item forward (false: padded batch)
  int64_t item_batch_size = 256;       ///< items per item-LLM forward when embedding the catalogue
  bool personalized = false;           ///< PerSRec's user tokens in the user LLM (`personalized:`)
  PersonalizedOptions user_tokens;     ///< their options (user_tokens.h)
};

HllmOptions read_hllm_options(config::ConfigNode node, const ModelContext& context);

class HllmImpl : public SequenceRecommenderImpl, public UserTokenModel {
 public:
  HllmImpl(const HllmOptions& options, std::shared_ptr<const data::ItemTokens> tokens);
  torch::Tensor encode(const data::SequenceBatch& batch) override;
  torch::Tensor item_embeddings(const torch::Tensor& item_ids) override;
  torch::Tensor all_item_embeddings() override;

  /// Raw (not normalised) item-LLM embeddings of `ids` (each 1..V): [n, D].
  torch::Tensor embed_items(const std::vector<int64_t>& ids);
  /// PerSRec (options.personalized): the user LLM's K/V of the tokens after each row's old items.
  TokenCache compress(const data::SequenceBatch& batch) override;
  /// The newest position's state [B, 1, D] from the recent items and the users' cache rows.
  torch::Tensor predict(const data::SequenceBatch& batch, const TokenCache& cache);
  void set_token_cache(std::shared_ptr<const TokenCache> cache) override { token_cache_ = std::move(cache); }
  const PersonalizedOptions& personalized() const override { return options_.user_tokens; }
  torch::Tensor user_tokens;  ///< [1, K, D] PerSRec's tokens (personalized only)
  /// How many times the catalogue was embedded (eval cache misses); for tests.
  int64_t catalogue_passes() const { return catalogue_passes_; }
  const HllmOptions& options() const { return options_; }
  /// ZeRO-3: the item LLM's blocks, then the user LLM's (each tower runs its blocks through the
  /// gate at an offset). In training with a gate, every rank runs the item LLM as many times per
  /// step as the busiest rank: the missing passes embed item 1 and are dropped.
  std::vector<std::shared_ptr<torch::nn::Module>> shardable_blocks() override;
  void set_block_gate(nn::BlockGate* gate) override;
  /// Item-LLM passes run only to match another rank's count (ZeRO-3); for tests.
  int64_t filler_passes() const { return filler_passes_; }

  llm::DecoderLm item_llm{nullptr};
  llm::DecoderLm user_llm{nullptr};
  torch::Tensor item_token;   ///< [D] the [ITEM] slot's input vector
  torch::Tensor logit_scale;  ///< scalar, log of the nce loss's scale

 protected:
  /// Soft tokens [n, S, D] that enter the item LLM between each item's text and its [ITEM] slot
  /// (Molar's image tokens); undefined (HLLM) = none.
  virtual torch::Tensor item_soft_tokens(const std::vector<int64_t>& ids);
  /// Whether the item texts enter the item LLM (Molar image-only: false).
  virtual bool item_text_enabled() const { return true; }
  /// Rows x columns of the soft tokens when they are one picture's merged patches in row-major order
  /// (Molar's Qwen2-VL tower): an M-RoPE item LLM then gives them (t, row, column) positions
  /// (data::item_positions_mrope). {0, 0}: no grid, every token one position further.
  virtual std::pair<int64_t, int64_t> soft_token_grid() const { return {0, 0}; }
  /// Changes whenever a parameter of the item side changes: the eval cache's key.
  virtual int64_t item_tower_version() const;
  /// The user LLM's raw input embeddings [B, W, D] of the batch's items (row 0 = padding: zeros); in
  /// training, also embeds the step's targets and negatives for item_embeddings().
  torch::Tensor input_embeddings(const data::SequenceBatch& batch);

 private:
  // The user LLM over the inserted sequences (PerSRec): [B, W, D] at the items, [B, 1, D] last-only.
  torch::Tensor encode_personalized(const data::SequenceBatch& batch, const torch::Tensor& inputs);
  std::shared_ptr<const TokenCache> token_cache_;
  torch::Tensor embed_packed(const std::vector<int64_t>& ids);
  torch::Tensor embed_padded(const std::vector<int64_t>& ids);
  // The grid of `soft_tokens` soft tokens that gets M-RoPE positions ({0, 0}: 1-D positions).
  std::pair<int64_t, int64_t> image_grid(int64_t soft_tokens) const;

  HllmOptions options_;
  std::shared_ptr<const data::ItemTokens> tokens_;
  // The current training step's item embeddings (normalised), by item id.
  torch::Tensor step_ids_;    ///< [U] sorted ids
  torch::Tensor step_table_;  ///< [U, D]
  // The eval cache.
  torch::Tensor cache_;       ///< [V + 1, D] normalised, row 0 zero
  torch::Tensor raw_cache_;   ///< [V + 1, D] as fed to the user LLM
  int64_t cache_version_ = -1;
  int64_t catalogue_passes_ = 0;
  int64_t filler_passes_ = 0;
  std::unique_ptr<nn::OffsetBlockGate> item_gate_, user_gate_;
};
TORCH_MODULE(Hllm);

}  // namespace seqrec::models
