// Item text embeddings for the RQ-VAE (LC-Rec data_process/amazon_text_emb.py, systems.md §3.2):
// for each item and text field, the field's cleaned text is tokenised as the Hugging Face tokenizer
// call does (BOS for LLaMA, cut to max_tokens), run through a decoder LM, and the last hidden
// states (after the final norm, HF's last_hidden_state) are averaged over the tokens; the item's
// vector is the mean of its fields' vectors. Row r of the result is dense item r + 1.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <string>
#include <vector>

namespace seqrec::data {
class ItemCatalog;
}
namespace seqrec::llm {
class DecoderLmImpl;
class Tokenizer;
}

namespace seqrec::semantic_id {

/// LC-Rec's clean_text (data_process/utils.py) followed by strip(), for a string value: HTML
/// entities unescaped (numeric ones and the common named ones), tags "</?\w+[^>]*>" removed, '"',
/// '\n' and '\r' removed, surrounding whitespace trimmed, trailing dots replaced by one '.' (a '.' is
/// appended when there is none, so "" becomes ".").
std::string lcrec_clean_text(const std::string& raw);

/// Options of the item text embedding.
struct TextEmbeddingOptions {
  std::vector<std::string> fields = {"title", "description"};  ///< item-table columns, averaged
  int64_t max_tokens = 2048;     ///< tokens per text, special tokens included (upstream max_sent_len)
  int64_t batch_tokens = 8192;   ///< packed forward size: segments x longest segment at most
  bool clean_text = true;        ///< apply lcrec_clean_text to every field value
};

/// Token ids of `text` as `tokenizer(text, max_length=max_tokens, truncation=True)`: BOS/EOS as the
/// tokenizer adds them, the text's tokens cut so that the whole fits max_tokens.
std::vector<int64_t> tokenize_truncated(const llm::Tokenizer& tokenizer, const std::string& text, int64_t max_tokens);

/// Mean over its tokens of the last hidden states of each sequence (each on its own, causal, positions
/// from 0), computed by packing several sequences into one row per forward: [N, D] float32.
torch::Tensor mean_pooled_states(llm::DecoderLmImpl& lm, const std::vector<std::vector<int64_t>>& sequences,
                                 int64_t batch_tokens);

/// The item embeddings [V, D] of every item of `catalog`. Throws ConfigError ("--fields: ...") when a
/// field is not a column of the item table.
torch::Tensor embed_item_texts(llm::DecoderLmImpl& lm, const llm::Tokenizer& tokenizer,
                               const data::ItemCatalog& catalog, const TextEmbeddingOptions& options);

}  // namespace seqrec::semantic_id
