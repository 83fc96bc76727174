// Item codes as token sequences (no torch): a prefix trie over every item's code tokens followed by
// EOS, which says which tokens may come next and maps a generated sequence back to its item, and
// LC-Rec's per-level whitelist (the looser constraint its code actually uses), kept for comparison.
//
// Codes are token ids of the LLM's vocabulary (LC-Rec: `<a_12><b_3><c_250><d_7>`, one token per
// level). codes[i] is the code of item i; an empty code means "no item i" (padding id 0).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace seqrec::semantic_id {

/// Item id returned for a token sequence that is no item's code.
inline constexpr int64_t kNotAnItem = -1;

/// A prefix trie over item codes, each followed by EOS.
class PrefixTrie {
 public:
  /// Builds the trie. Throws std::invalid_argument naming the item when a code holds eos_id or a
  /// negative token, or when no item has a code. Items with the same code (LC-Rec tolerates a few
  /// collisions) share a leaf.
  PrefixTrie(const std::vector<std::vector<int64_t>>& codes, int64_t eos_id);

  /// Tokens that may follow `prefix` (generated tokens, prompt excluded): the next token of every
  /// code starting with `prefix`, plus eos_id when `prefix` is a whole code. Sorted ascending;
  /// empty when no code starts with `prefix` (or after EOS).
  std::vector<int64_t> allowed(const std::vector<int64_t>& prefix) const;

  /// The item whose code is `tokens` (one trailing eos_id is ignored): the smallest item id with
  /// that code, or kNotAnItem.
  int64_t item_of(const std::vector<int64_t>& tokens) const;

  /// The smallest item id with the same code as `item` (itself unless codes collide), or
  /// kNotAnItem for an id without a code. Comparing canonical ids compares codes, as LC-Rec's
  /// evaluate.py does (it compares code strings).
  int64_t canonical_item(int64_t item) const;

  /// Tokens of each level that occur in some code: levels()[i] = sorted tokens at position i.
  const std::vector<std::vector<int64_t>>& levels() const { return levels_; }
  /// Code lengths that occur (sorted), i.e. the steps at which EOS may come.
  const std::vector<int64_t>& code_lengths() const { return code_lengths_; }

  int64_t eos_id() const { return eos_id_; }
  /// Items that have a code.
  int64_t num_items() const { return num_items_; }
  /// Distinct codes (= leaves).
  int64_t num_codes() const { return num_codes_; }
  /// Tokens of the longest code (EOS excluded).
  int64_t max_length() const { return static_cast<int64_t>(levels_.size()); }

 private:
  struct Node {
    std::vector<int64_t> tokens;    // sorted child tokens
    std::vector<int32_t> children;  // node index per child token
    int64_t item = kNotAnItem;      // smallest item whose code ends here
  };
  // Node reached by `tokens` from the root, or -1.
  int32_t find(const std::vector<int64_t>& tokens, size_t count) const;

  std::vector<Node> nodes_;  // nodes_[0] = root
  std::vector<int64_t> canonical_;
  std::vector<std::vector<int64_t>> levels_;
  std::vector<int64_t> code_lengths_;
  int64_t eos_id_ = -1;
  int64_t num_items_ = 0;
  int64_t num_codes_ = 0;
};

/// LC-Rec's constraint (`data.py` get_prefix_allowed_tokens_fn): generated token i may be any token
/// seen at level i of any code, whatever came before; then EOS. Combinations that are no item's
/// code can come out (LC-Rec's `--filter_items` then pushes them to the end).
class LevelWhitelist {
 public:
  /// The whitelist of the trie's codes.
  explicit LevelWhitelist(const PrefixTrie& trie);
  /// Tokens allowed as generated token `step` (0-based): the trie's level `step` tokens, plus EOS
  /// when some code has exactly `step` tokens. With codes of one length L (LC-Rec) that is level
  /// tokens for step < L and EOS alone at step L, as upstream. Sorted; empty past the last step.
  const std::vector<int64_t>& allowed(int64_t step) const;

 private:
  std::vector<std::vector<int64_t>> steps_;
  std::vector<int64_t> none_;
};

}  // namespace seqrec::semantic_id
