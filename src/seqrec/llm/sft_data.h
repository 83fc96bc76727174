// Supervised fine-tuning data: prompt/response examples from JSONL, their tokenisation with
// response-only labels (as LC-Rec's collator.py), and the lists of tokens to add to a tokenizer.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "seqrec/llm/tokenizer.h"

namespace seqrec::llm {

/// Label of a position that is not trained on (transformers' ignore index).
constexpr int64_t kIgnoreLabel = -100;

/// One example: the model reads prompt + response and learns to write the response.
struct SftExample {
  std::string prompt;    ///< everything before the answer (LC-Rec: the Alpaca text up to "### Response:")
  std::string response;  ///< the answer; EOS is appended when tokenised
};

/// Reads JSONL, one {"prompt": str, "response": str} object per line (other fields are ignored,
/// blank lines skipped). Throws DataError "file:line: ..." for a malformed line or a missing field.
std::vector<SftExample> read_sft_examples(const std::string& path);

/// How examples become token ids.
struct SftTokenizeOptions {
  int64_t max_length = 2048;        ///< tokens kept per example (right truncation, EOS included)
  bool only_train_response = true;  ///< labels kIgnoreLabel on the prompt tokens
};

/// One tokenised example, unshifted as transformers' labels: position t predicts labels[t + 1].
struct TokenizedExample {
  std::vector<int64_t> input_ids;  ///< encode_with_special(prompt + response) + EOS, truncated
  std::vector<int64_t> labels;     ///< input_ids, kIgnoreLabel on the prompt when only_train_response
  /// Positions with a trained prediction (labels[t + 1] != kIgnoreLabel for t + 1 < size).
  int64_t num_targets() const;
};

/// Tokenises as LC-Rec's Collator: prompt + response is encoded as one text (BOS per the
/// tokenizer) and EOS appended, then truncated to max_length; with only_train_response the first
/// len(encode_with_special(prompt)) positions are masked, i.e. the prompt's own tokenisation
/// decides where the response starts (the two agree whenever no token spans the boundary).
TokenizedExample tokenize_example(const Tokenizer& tokenizer, const SftExample& example,
                                  const SftTokenizeOptions& options);

/// Tokens listed one per line (surrounding whitespace trimmed, blank lines skipped). Throws
/// DataError naming the file.
std::vector<std::string> read_token_list(const std::string& path);

/// All code tokens of an LC-Rec index.json ({"<item>": ["<a_12>", "<b_3>", ...], ...}), unique and
/// sorted by bytes, as upstream's get_new_tokens() orders them (so they get upstream's ids).
/// Throws DataError naming the file and the key of a malformed entry.
std::vector<std::string> read_index_tokens(const std::string& path);

}  // namespace seqrec::llm
