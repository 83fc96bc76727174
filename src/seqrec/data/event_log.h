// The parsed interactions of prepare, in file order: kept in memory, or spilled to a file once
// they outgrow a memory budget, and read back block by block for each pass.
#pragma once

#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

namespace seqrec::data {

/// One parsed interaction: interned user and item ids (see id_table.h) and its timestamp.
struct Event {
  uint32_t user;
  uint32_t item;
  int64_t timestamp;
};
static_assert(sizeof(Event) == 16, "Event must be 16 bytes");

class EventLog {
 public:
  /// Keeps up to `memory_budget` bytes of events in RAM (0 = no limit); beyond that every event
  /// goes to `spill_path` (created on first need, removed by the destructor).
  EventLog(size_t memory_budget, std::string spill_path);
  ~EventLog();
  EventLog(const EventLog&) = delete;
  EventLog& operator=(const EventLog&) = delete;

  /// Appends a block of events, kept as it is (no copy) while in memory.
  void append(std::vector<Event>&& block);
  size_t size() const { return size_; }
  bool spilled() const { return file_ != nullptr; }

  /// Calls fn(events, n, first_index) over consecutive blocks of all events, in order.
  void for_each_block(const std::function<void(const Event*, size_t, size_t)>& fn) const;

 private:
  size_t budget_events_;
  std::string spill_path_;
  std::vector<std::vector<Event>> memory_;  // blocks in order
  size_t in_memory_ = 0;
  void spill_if_needed(size_t incoming);
  std::FILE* file_ = nullptr;
  size_t size_ = 0;
};

}  // namespace seqrec::data
