// EventLog: events in RAM, or spilled to a temp file past the budget.
#include "seqrec/data/event_log.h"

#include <cerrno>
#include <cstring>
#include <limits>

#include "seqrec/common/error.h"
#include "seqrec/common/log.h"

namespace seqrec::data {
namespace {

constexpr size_t kReadBlock = size_t{1} << 20;  // events per block read back (16 MiB)

}  // namespace

EventLog::EventLog(size_t memory_budget, std::string spill_path)
    : budget_events_(memory_budget == 0 ? std::numeric_limits<size_t>::max()
                                        : memory_budget / sizeof(Event)),
      spill_path_(std::move(spill_path)) {}

EventLog::~EventLog() {
  if (file_ != nullptr) {
    std::fclose(file_);
    std::remove(spill_path_.c_str());
  }
}

void EventLog::spill_if_needed(size_t incoming) {
  if (file_ != nullptr || in_memory_ + incoming <= budget_events_) return;
  file_ = std::fopen(spill_path_.c_str(), "w+b");
  if (file_ == nullptr) {
    throw DataError("cannot create " + spill_path_ + ": " + std::strerror(errno));
  }
  log_info("prepare: %zu events exceed the in-memory budget: spilling to %s", in_memory_ + incoming,
           spill_path_.c_str());
  for (const auto& block : memory_) {
    if (!block.empty() && std::fwrite(block.data(), sizeof(Event), block.size(), file_) != block.size()) {
      throw DataError("cannot write " + spill_path_ + ": " + std::strerror(errno));
    }
  }
  std::vector<std::vector<Event>>().swap(memory_);
  in_memory_ = 0;
}

void EventLog::append(std::vector<Event>&& block) {
  const size_t n = block.size();
  if (n == 0) return;
  spill_if_needed(n);
  if (file_ != nullptr) {
    if (std::fwrite(block.data(), sizeof(Event), n, file_) != n) {
      throw DataError("cannot write " + spill_path_ + ": " + std::strerror(errno));
    }
  } else {
    memory_.push_back(std::move(block));
    in_memory_ += n;
  }
  size_ += n;
}

void EventLog::for_each_block(const std::function<void(const Event*, size_t, size_t)>& fn) const {
  if (file_ == nullptr) {
    size_t first = 0;
    for (const auto& block : memory_) {
      fn(block.data(), block.size(), first);
      first += block.size();
    }
    return;
  }
  if (std::fflush(file_) != 0 || std::fseek(file_, 0, SEEK_SET) != 0) {
    throw DataError("cannot read back " + spill_path_ + ": " + std::strerror(errno));
  }
  std::vector<Event> block(kReadBlock);
  size_t done = 0;
  while (done < size_) {
    const size_t want = std::min(kReadBlock, size_ - done);
    if (std::fread(block.data(), sizeof(Event), want, file_) != want) {
      throw DataError("cannot read back " + spill_path_ + ": short read");
    }
    fn(block.data(), want, done);
    done += want;
  }
  if (std::fseek(file_, 0, SEEK_END) != 0) {
    throw DataError("cannot seek " + spill_path_ + ": " + std::strerror(errno));
  }
}

}  // namespace seqrec::data
