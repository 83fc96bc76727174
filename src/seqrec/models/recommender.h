// The one model interface: every sequential recommender maps a SequenceBatch to hidden states and
// exposes the item embeddings those states are scored against (score = dot product; models with
// l2-normalised outputs thereby score by cosine).
#pragma once

#include <torch/nn/module.h>
#include <torch/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "seqrec/data/batcher.h"
#include "seqrec/nn/block_gate.h"

namespace seqrec::models {

/// What a model needs to know about the data it is built for (saved with the checkpoint).
struct ModelContext {
  int64_t num_items = 0;                 ///< V; ids 1..V, 0 = padding
  int64_t max_seq_len = 200;             ///< L
  std::vector<int64_t> item_counts;      ///< training counts [V+1] (most-pop); may be empty on load
  std::string data_dir;                  ///< prepared directory (text models read item_tokens.bin); not saved
};

/// Base class of all sequential recommenders.
class SequenceRecommenderImpl : public torch::nn::Module {
 public:
  /// Hidden state at every position: [B, W, D] for batch.item_ids [B, W]; with batch.last_only
  /// (evaluation) a model may return only the last position, [B, 1, D].
  virtual torch::Tensor encode(const data::SequenceBatch& batch) = 0;
  /// Output embeddings of `item_ids` [...] -> [..., D].
  virtual torch::Tensor item_embeddings(const torch::Tensor& item_ids) = 0;
  /// All output item embeddings [V+1, D] (row 0 = padding, never recommended).
  virtual torch::Tensor all_item_embeddings() = 0;
  /// False for models fitted by counting (most-pop): the trainer skips optimisation.
  virtual bool trainable() const { return true; }

  /// How the training batcher shapes this model's batches (data::TrainBatcherOptions): PerSRec
  /// splits each window into old and recent items. The defaults change nothing.
  struct BatchLayout {
    int64_t recent_item_num = 0;      ///< R: the last R slots of a window are recent (0 = no split)
    int64_t boundary_target = -1;     ///< target of the last old item: -1 the next item, 0 none, > 0 this id
    double recent_item_dropout = 0;   ///< share of recent inputs dropped in training (input and loss)
  };
  const BatchLayout& batch_layout() const { return batch_layout_; }

  /// ZeRO-3: the blocks whose parameters a trainer may shard across ranks, in the order encode()
  /// runs them (empty: this model does not run its blocks through a gate).
  virtual std::vector<std::shared_ptr<torch::nn::Module>> shardable_blocks() { return {}; }
  /// Installs the gate every block of shardable_blocks() runs through (nullptr: run them directly).
  virtual void set_block_gate(nn::BlockGate* gate) { block_gate_ = gate; }

 protected:
  BatchLayout batch_layout_;
  nn::BlockGate* block_gate_ = nullptr;
};

using SequenceRecommender = std::shared_ptr<SequenceRecommenderImpl>;

}  // namespace seqrec::models
