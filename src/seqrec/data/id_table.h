// Interning of raw user / item ids at scale (prepare): ids that are canonical small integers are
// used as they are (no hashing), every other id goes through a string dictionary. Parsing threads
// intern into a batch-local dictionary; batches are merged in file order, so the global string ids
// follow first appearance in the file whatever the number of threads.
#pragma once

#include <cstdint>
#include <deque>
#include <string>
#include <string_view>
#include <memory>
#include <unordered_map>
#include <vector>

namespace seqrec::data {

/// An interned id: below kStringFlag it is the raw id's integer value; with the flag set, the low
/// bits index a string dictionary (batch-local before merge, global after).
constexpr uint32_t kStringFlag = 0x80000000u;
/// Raw ids that are canonical integers (no sign, no leading zero) below this are used directly.
constexpr int64_t kDirectLimit = int64_t{1} << 26;

/// Parses a whole token as a (possibly signed, '+' allowed) 64-bit integer.
bool parse_int64(std::string_view s, int64_t* value);

/// Whether `token` is a canonical integer below kDirectLimit; sets *value.
bool direct_int(std::string_view token, uint32_t* value);

/// Ids of one parsed batch. Views point into the batch's source buffer, which must outlive merge().
class LocalDict {
 public:
  /// The interned id of `token` (direct integer, or kStringFlag | local index).
  uint32_t intern(std::string_view token) {
    uint32_t v = 0;
    if (direct_int(token, &v)) {
      if (v > max_direct_) max_direct_ = v;
      any_direct_ = true;
      return v;
    }
    auto [it, added] = map_.try_emplace(token, static_cast<uint32_t>(strings_.size()));
    if (added) strings_.push_back(token);
    return kStringFlag | it->second;
  }
  /// As intern(), but a new `token` is copied first: for tokens whose bytes do not outlive the
  /// dictionary (e.g. a CSV field unquoted into a scratch buffer).
  uint32_t intern_copy(std::string_view token) {
    uint32_t v = 0;
    if (direct_int(token, &v)) return intern(token);
    const auto it = map_.find(token);
    if (it != map_.end()) return kStringFlag | it->second;
    return intern(owned_.emplace_back(token));
  }
  /// The interned id of an integer id (direct when canonical and small; else its decimal text).
  uint32_t intern_int(int64_t value) {
    if (value >= 0 && value < kDirectLimit) {
      const auto v = static_cast<uint32_t>(value);
      if (v > max_direct_) max_direct_ = v;
      any_direct_ = true;
      return v;
    }
    const std::string text = std::to_string(value);
    auto it = map_.find(text);
    if (it != map_.end()) return kStringFlag | it->second;
    const std::string_view kept = owned_.emplace_back(text);
    map_.emplace(kept, static_cast<uint32_t>(strings_.size()));
    strings_.push_back(kept);
    return kStringFlag | static_cast<uint32_t>(strings_.size() - 1);
  }
  /// Strings in local first-appearance order.
  const std::vector<std::string_view>& strings() const { return strings_; }
  bool any_direct() const { return any_direct_; }
  uint32_t max_direct() const { return max_direct_; }

 private:
  std::unordered_map<std::string_view, uint32_t> map_;
  std::vector<std::string_view> strings_;
  std::deque<std::string> owned_;  // texts made by intern_int / intern_copy (stable addresses)
  uint32_t max_direct_ = 0;
  bool any_direct_ = false;
};

/// The global ids of one column (users or items).
class IdTable {
 public:
  /// Adds a batch's strings (in order) and rewrites the flagged ids of `ids` (stride `stride`
  /// uint32 words apart) from local to global string indices.
  void merge(const LocalDict& local, uint32_t* ids, size_t count, size_t stride);
  /// Direct integer values span [0, direct_size()).
  size_t direct_size() const { return direct_size_; }
  size_t num_strings() const { return names_.size(); }
  /// Size of the compact index space: direct values, then strings.
  size_t index_size() const { return direct_size_ + names_.size(); }
  /// Compact index of an interned id (valid once every batch is merged).
  size_t index(uint32_t id) const {
    return (id & kStringFlag) ? direct_size_ + (id & ~kStringFlag) : id;
  }
  /// The raw id text of a compact index.
  std::string name(size_t index) const;
  /// Compact index of a raw id; -1 when it never appeared.
  int64_t find(std::string_view token) const;
  /// Whether every string-dictionary id parses as an integer (direct ids always do).
  bool all_integers() const;
  /// Numeric value of a compact index when all_integers().
  int64_t value(size_t index) const;

 private:
  size_t direct_size_ = 0;
  std::vector<std::string_view> names_;        // views into arena_
  std::vector<std::unique_ptr<char[]>> arena_; // string storage (stable addresses)
  size_t arena_left_ = 0;
  char* arena_pos_ = nullptr;
  std::unordered_map<std::string_view, uint32_t> map_;
  std::string_view store(std::string_view s);
};

}  // namespace seqrec::data
