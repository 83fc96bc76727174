// Prefix trie and per-level whitelist over item codes.
#include "seqrec/semantic_id/trie.h"

#include <algorithm>
#include <set>
#include <stdexcept>
#include <string>

namespace seqrec::semantic_id {

PrefixTrie::PrefixTrie(const std::vector<std::vector<int64_t>>& codes, int64_t eos_id)
    : canonical_(codes.size(), kNotAnItem), eos_id_(eos_id) {
  nodes_.emplace_back();
  std::vector<std::set<int64_t>> levels;
  std::set<int64_t> lengths;
  for (size_t item = 0; item < codes.size(); ++item) {
    const auto& code = codes[item];
    if (code.empty()) continue;
    int32_t node = 0;
    for (size_t level = 0; level < code.size(); ++level) {
      const int64_t token = code[level];
      if (token < 0 || token == eos_id)
        throw std::invalid_argument("item " + std::to_string(item) + ": code token " + std::to_string(token) +
                                    " at level " + std::to_string(level) +
                                    (token < 0 ? " is negative" : " is the EOS id"));
      if (levels.size() <= level) levels.emplace_back();
      levels[level].insert(token);
      auto& tokens = nodes_[node].tokens;
      const auto at = std::lower_bound(tokens.begin(), tokens.end(), token);
      const auto slot = at - tokens.begin();
      if (at != tokens.end() && *at == token) {
        node = nodes_[node].children[slot];
        continue;
      }
      const auto child = static_cast<int32_t>(nodes_.size());
      tokens.insert(at, token);
      nodes_[node].children.insert(nodes_[node].children.begin() + slot, child);
      nodes_.emplace_back();  // may reallocate: `tokens` is not used past this point
      node = child;
    }
    lengths.insert(static_cast<int64_t>(code.size()));
    ++num_items_;
    if (nodes_[node].item == kNotAnItem) {
      nodes_[node].item = static_cast<int64_t>(item);
      ++num_codes_;
    }
    canonical_[item] = nodes_[node].item;
  }
  if (num_items_ == 0) throw std::invalid_argument("no item has a code (" + std::to_string(codes.size()) + " entries)");
  for (const auto& l : levels) levels_.emplace_back(l.begin(), l.end());
  code_lengths_.assign(lengths.begin(), lengths.end());
}

int32_t PrefixTrie::find(const std::vector<int64_t>& tokens, size_t count) const {
  int32_t node = 0;
  for (size_t i = 0; i < count; ++i) {
    const auto& t = nodes_[node].tokens;
    const auto at = std::lower_bound(t.begin(), t.end(), tokens[i]);
    if (at == t.end() || *at != tokens[i]) return -1;
    node = nodes_[node].children[at - t.begin()];
  }
  return node;
}

std::vector<int64_t> PrefixTrie::allowed(const std::vector<int64_t>& prefix) const {
  const int32_t node = find(prefix, prefix.size());
  if (node < 0) return {};
  std::vector<int64_t> out = nodes_[node].tokens;
  if (nodes_[node].item != kNotAnItem) out.insert(std::lower_bound(out.begin(), out.end(), eos_id_), eos_id_);
  return out;
}

int64_t PrefixTrie::item_of(const std::vector<int64_t>& tokens) const {
  size_t count = tokens.size();
  if (count > 0 && tokens[count - 1] == eos_id_) --count;
  const int32_t node = find(tokens, count);
  return node < 0 ? kNotAnItem : nodes_[node].item;
}

int64_t PrefixTrie::canonical_item(int64_t item) const {
  if (item < 0 || item >= static_cast<int64_t>(canonical_.size())) return kNotAnItem;
  return canonical_[static_cast<size_t>(item)];
}

LevelWhitelist::LevelWhitelist(const PrefixTrie& trie) {
  steps_ = trie.levels();
  steps_.emplace_back();  // the step after the longest code: EOS only
  for (int64_t length : trie.code_lengths()) {
    auto& s = steps_[static_cast<size_t>(length)];
    s.insert(std::lower_bound(s.begin(), s.end(), trie.eos_id()), trie.eos_id());
  }
}

const std::vector<int64_t>& LevelWhitelist::allowed(int64_t step) const {
  if (step < 0 || step >= static_cast<int64_t>(steps_.size())) return none_;
  return steps_[static_cast<size_t>(step)];
}

}  // namespace seqrec::semantic_id
