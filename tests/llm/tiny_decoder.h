// A tiny random LLaMA for generation tests: 2 layers, hidden 16, 4 query heads over 2 KV heads.
#pragma once

#include <torch/torch.h>

#include <cstdint>

#include "seqrec/llm/decoder_lm.h"

namespace seqrec::testing {

/// A DecoderLm with `vocab_size` tokens drawn from `seed`, in eval mode. Tied embeddings give
/// peaked distributions; an untied small random head gives flat ones.
inline llm::DecoderLm tiny_decoder_lm(int64_t vocab_size, uint64_t seed, bool tied = true) {
  torch::manual_seed(seed);
  llm::DecoderConfig c;
  c.vocab_size = vocab_size;
  c.hidden_size = 16;
  c.intermediate_size = 24;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 4;
  c.tie_word_embeddings = tied;
  llm::DecoderLm lm(c);
  lm->eval();
  return lm;
}

}  // namespace seqrec::testing
