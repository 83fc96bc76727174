// InteractionStore: the prepared, immutable, memory-mapped interaction data (CSR by user).
//
// Invariants (checked when opened):
//  - users are dense 0..num_users-1; items are dense 1..num_items, 0 is padding and never stored;
//  - each user's events are sorted by (timestamp, original order) -- a stable sort;
//  - user_offsets has num_users+1 entries, non-decreasing, first 0, last num_events;
//  - timestamps exist only when has_timestamps(); otherwise the order is event order only.
//
// File layout (little endian), see write_store():
//   StoreHeader | user_offsets u64[num_users+1] | item_ids i32[num_events] | timestamps i64[num_events]?
// The checksum (FNV-1a 64) covers everything after the header.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace seqrec::data {

/// A read-only view of contiguous values (no ownership).
template <typename T>
struct Span {
  const T* ptr = nullptr;
  int64_t len = 0;
  const T* begin() const { return ptr; }
  const T* end() const { return ptr + len; }
  int64_t size() const { return len; }
  bool empty() const { return len == 0; }
  const T& operator[](int64_t i) const { return ptr[i]; }
  const T& back() const { return ptr[len - 1]; }
};

constexpr char kStoreMagic[8] = {'S', 'E', 'Q', 'R', 'E', 'C', 'S', 'T'};
constexpr uint32_t kStoreVersion = 1;

/// On-disk header of an interaction store (64 bytes).
struct StoreHeader {
  char magic[8];          ///< kStoreMagic
  uint32_t version;       ///< kStoreVersion
  uint32_t flags;         ///< bit 0: has timestamps
  uint64_t num_users;     ///< U
  uint64_t num_items;     ///< V (ids 1..V)
  uint64_t num_events;    ///< total interactions
  uint64_t checksum;      ///< FNV-1a 64 of the payload after the header
  uint64_t reserved[2];   ///< zero
};
static_assert(sizeof(StoreHeader) == 64, "StoreHeader must be 64 bytes");

/// In-memory CSR form used to build a store before writing it.
struct StoreData {
  int64_t num_items = 0;                 ///< V
  bool has_timestamps = false;           ///< whether timestamps are real
  std::vector<uint64_t> user_offsets;    ///< [U+1]
  std::vector<int32_t> item_ids;         ///< [E], values 1..V
  std::vector<int64_t> timestamps;       ///< [E] if has_timestamps, else empty
};

/// Writes `data` to `path` atomically (temp file + rename). Throws DataError on I/O failure.
void write_store(const StoreData& data, const std::string& path);

/// A memory-mapped interaction store. Cheap to copy (shares the mapping).
class InteractionStore {
 public:
  /// Maps and verifies `path` (magic, version, sizes, checksum, offsets, id range).
  /// Throws DataError naming the file and what is wrong (e.g. "truncated: expected N bytes, got M").
  static InteractionStore open(const std::string& path);
  /// Builds an in-memory store (for tests and synthetic runs); validates like open().
  static InteractionStore from_data(StoreData data);

  int64_t num_users() const;
  int64_t num_items() const;
  int64_t num_events() const;
  bool has_timestamps() const;
  /// Items of user u (0-based), in time order.
  Span<int32_t> items(int64_t user) const;
  /// Timestamps of user u; empty span when !has_timestamps().
  Span<int64_t> timestamps(int64_t user) const;
  /// Path it was opened from ("" for in-memory).
  const std::string& path() const;

 private:
  struct Impl;
  std::shared_ptr<const Impl> impl_;
};

/// PerSRec's window cut (`item_start_position` / `item_end_position`): every user's row sliced as
/// Python's row[begin:end] (negative = from the end; end 0 = to the end), in memory.
InteractionStore window_rows(const InteractionStore& store, int64_t begin, int64_t end);

}  // namespace seqrec::data
