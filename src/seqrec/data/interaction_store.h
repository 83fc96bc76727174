// InteractionStore: the prepared, immutable, memory-mapped interaction data (CSR by user).
//
// Invariants (checked when opened):
//  - users are dense 0..num_users-1; items are dense 1..num_items, 0 is padding and never stored;
//  - each user's events are sorted by (timestamp, original order) -- a stable sort;
//  - user_offsets has num_users+1 entries, non-decreasing, first 0, last num_events;
//  - timestamps exist only when has_timestamps(); otherwise the order is event order only.
//
// File layout (little endian), version 2, see StoreWriter:
//   StoreHeader | user_offsets u64[num_users+1] | item_ids i32[num_events] | 4 zero bytes when
//   num_events is odd | timestamps i64[num_events]?
// checksum = h(offsets) ^ rotl(h(items), 21) ^ rotl(h(timestamps), 42), each h the word hash of
// store_section_hash() over the section's bytes (padding excluded), so the sections can be written
// and hashed in one streaming pass each. Version 1 files (no padding, FNV-1a 64 over the whole
// payload) are still read.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
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
constexpr uint32_t kStoreVersion = 2;

/// On-disk header of an interaction store (64 bytes).
struct StoreHeader {
  char magic[8];          ///< kStoreMagic
  uint32_t version;       ///< kStoreVersion
  uint32_t flags;         ///< bit 0: has timestamps
  uint64_t num_users;     ///< U
  uint64_t num_items;     ///< V (ids 1..V)
  uint64_t num_events;    ///< total interactions
  uint64_t checksum;      ///< version 2: the combined section hashes above; version 1: FNV-1a 64 of the payload
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

/// The store's section hash of `len` bytes: FNV-style over 8-byte little-endian words, each step
/// rotated, the last len % 8 bytes by FNV-1a.
uint64_t store_section_hash(const void* data, size_t len);

/// store_section_hash() of a section fed in pieces of any size.
class SectionHasher {
 public:
  void update(const void* data, size_t len);
  uint64_t finish() const;

 private:
  uint64_t h_ = 14695981039346656037ULL;
  unsigned char carry_[8] = {};
  size_t carried_ = 0;
};

/// Streams a store to disk: the offsets once, then the events in order, block by block, so a store
/// larger than memory can be written. Writes `path.tmp.<pid>` and renames it on commit(); a writer
/// destroyed before commit() removes its temp file.
class StoreWriter {
 public:
  StoreWriter(std::string path, uint64_t num_users, uint64_t num_items, uint64_t num_events,
              bool has_timestamps);
  ~StoreWriter();
  StoreWriter(const StoreWriter&) = delete;
  StoreWriter& operator=(const StoreWriter&) = delete;

  /// The num_users+1 offsets (checked: first 0, non-decreasing, last num_events).
  void write_offsets(const uint64_t* offsets);
  /// The next `n` events (items checked against 1..num_items); timestamps ignored without them.
  void write_events(const int32_t* items, const int64_t* timestamps, size_t n);
  /// Writes the header and renames the file into place (all events must have been written).
  void commit();

 private:
  void put(uint64_t at, const void* p, size_t n);
  std::string path_, tmp_;
  int fd_ = -1;
  uint64_t num_users_, num_items_, num_events_;
  bool has_ts_;
  uint64_t written_ = 0;
  bool offsets_done_ = false;
  uint64_t h_offsets_ = 0;
  SectionHasher h_items_, h_ts_;
};

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

/// Every user's row cut to the events [first, second) that `range(n)` gives for a row of n events
/// (clamped to [0, n]), in memory.
InteractionStore slice_rows(const InteractionStore& store,
                            const std::function<std::pair<int64_t, int64_t>(int64_t n)>& range);

/// Python's row[begin:end] bounds for a row of n events (negative = from the end; end 0 = to the end).
std::pair<int64_t, int64_t> python_slice(int64_t n, int64_t begin, int64_t end);

/// PerSRec's window cut (`item_start_position` / `item_end_position`): every user's row sliced as
/// Python's row[begin:end], in memory.
InteractionStore window_rows(const InteractionStore& store, int64_t begin, int64_t end);

}  // namespace seqrec::data
