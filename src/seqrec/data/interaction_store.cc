// InteractionStore: writing, memory-mapping and verifying the prepared interaction file.
#include "seqrec/data/interaction_store.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "seqrec/common/error.h"
#include "seqrec/common/fs.h"
#include "seqrec/common/hash.h"
#include "seqrec/common/mapped_file.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "seqrec interaction stores are little endian; big-endian hosts are not supported"
#endif

namespace seqrec::data {
namespace {

constexpr uint32_t kFlagTimestamps = 1u;

/// Checks the CSR invariants shared by open(), from_data() and write_store().
/// `where` prefixes every message (the path, or a description for in-memory data).
void validate_csr(const std::string& where, uint64_t num_users, uint64_t num_items,
                  uint64_t num_events, const uint64_t* offsets, const int32_t* items,
                  const int64_t* timestamps) {
  if (num_items > static_cast<uint64_t>(INT32_MAX)) {
    throw DataError(where + ": expected at most " + std::to_string(INT32_MAX) + " items, got " +
                    std::to_string(num_items));
  }
  if (offsets[0] != 0) {
    throw DataError(where + ": bad user offsets: expected first offset 0, got " +
                    std::to_string(offsets[0]));
  }
  for (uint64_t u = 0; u < num_users; ++u) {
    if (offsets[u + 1] < offsets[u]) {
      throw DataError(where + ": bad user offsets: not monotone at user " + std::to_string(u) +
                      " (" + std::to_string(offsets[u]) + " > " + std::to_string(offsets[u + 1]) +
                      ")");
    }
  }
  if (offsets[num_users] != num_events) {
    throw DataError(where + ": bad user offsets: expected last offset " +
                    std::to_string(num_events) + ", got " + std::to_string(offsets[num_users]));
  }
  const int64_t max_item = static_cast<int64_t>(num_items);
  for (uint64_t e = 0; e < num_events; ++e) {
    if (items[e] < 1 || items[e] > max_item) {
      throw DataError(where + ": item id out of range at event " + std::to_string(e) +
                      ": expected 1.." + std::to_string(max_item) + ", got " +
                      std::to_string(items[e]));
    }
  }
  if (timestamps != nullptr) {
    for (uint64_t u = 0; u < num_users; ++u) {
      for (uint64_t e = offsets[u] + 1; e < offsets[u + 1]; ++e) {
        if (timestamps[e] < timestamps[e - 1]) {
          throw DataError(where + ": timestamps of user " + std::to_string(u) +
                          " are not in time order at event " + std::to_string(e));
        }
      }
    }
  }
}

}  // namespace

struct InteractionStore::Impl {
  std::string path;
  MappedFile file;           // the mapping when opened from a file
  StoreData owned;           // the vectors when built in memory
  std::vector<int64_t> ts_copy;  // aligned copy when the mapped timestamps are misaligned
  const uint64_t* offsets = nullptr;
  const int32_t* items = nullptr;
  const int64_t* timestamps = nullptr;
  int64_t num_users = 0;
  int64_t num_items = 0;
  int64_t num_events = 0;
  bool has_timestamps = false;

};

namespace {

uint64_t mix_word(uint64_t h, const unsigned char* p) {
  uint64_t w;
  std::memcpy(&w, p, 8);
  h = (h ^ w) * kFnvPrime;
  return (h << 29) | (h >> 35);
}

}  // namespace

void SectionHasher::update(const void* data, size_t len) {
  const auto* p = static_cast<const unsigned char*>(data);
  if (carried_ > 0) {
    const size_t take = std::min(len, 8 - carried_);
    std::memcpy(carry_ + carried_, p, take);
    carried_ += take;
    p += take;
    len -= take;
    if (carried_ < 8) return;
    h_ = mix_word(h_, carry_);
    carried_ = 0;
  }
  const size_t words = len / 8;
  for (size_t i = 0; i < words; ++i) h_ = mix_word(h_, p + i * 8);
  carried_ = len - words * 8;
  std::memcpy(carry_, p + words * 8, carried_);
}

uint64_t SectionHasher::finish() const { return fnv1a(h_, carry_, carried_); }

uint64_t store_section_hash(const void* data, size_t len) {
  SectionHasher h;
  h.update(data, len);
  return h.finish();
}

namespace {

uint64_t rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

uint64_t combine_sections(uint64_t offsets, uint64_t items, uint64_t ts) {
  return offsets ^ rotl(items, 21) ^ rotl(ts, 42);
}

/// Byte positions of the v2 sections.
struct Layout {
  uint64_t offsets_at, items_at, ts_at, total;
};

Layout layout_v2(uint64_t num_users, uint64_t num_events, bool has_ts) {
  Layout l;
  l.offsets_at = sizeof(StoreHeader);
  l.items_at = l.offsets_at + (num_users + 1) * sizeof(uint64_t);
  const uint64_t items_end = l.items_at + num_events * sizeof(int32_t);
  l.ts_at = items_end + (num_events % 2) * 4;
  l.total = has_ts ? l.ts_at + num_events * sizeof(int64_t) : items_end;
  return l;
}

}  // namespace

StoreWriter::StoreWriter(std::string path, uint64_t num_users, uint64_t num_items,
                         uint64_t num_events, bool has_timestamps)
    : path_(std::move(path)),
      tmp_((clean_stale_temps(path_), temp_path_for(path_))),
      num_users_(num_users),
      num_items_(num_items),
      num_events_(num_events),
      has_ts_(has_timestamps),
      h_offsets_(kFnvOffset) {
  if (num_items > static_cast<uint64_t>(INT32_MAX)) {
    throw DataError(path_ + ": cannot write store: expected at most " + std::to_string(INT32_MAX) +
                    " items, got " + std::to_string(num_items));
  }
  fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) throw DataError("cannot write " + path_ + ": " + std::strerror(errno));
}

StoreWriter::~StoreWriter() {
  if (fd_ >= 0) {
    ::close(fd_);
    ::unlink(tmp_.c_str());
  }
}

void StoreWriter::put(uint64_t at, const void* p, size_t n) {
  const auto* c = static_cast<const char*>(p);
  while (n > 0) {
    const ssize_t w = ::pwrite(fd_, c, n, static_cast<off_t>(at));
    if (w < 0) {
      if (errno == EINTR) continue;
      throw DataError("cannot write " + path_ + ": " + std::strerror(errno));
    }
    c += w;
    at += static_cast<uint64_t>(w);
    n -= static_cast<size_t>(w);
  }
}

void StoreWriter::write_offsets(const uint64_t* offsets) {
  const std::string where = path_ + " (store being written)";
  if (offsets[0] != 0) {
    throw DataError(where + ": bad user offsets: expected first offset 0, got " +
                    std::to_string(offsets[0]));
  }
  for (uint64_t u = 0; u < num_users_; ++u) {
    if (offsets[u + 1] < offsets[u]) {
      throw DataError(where + ": bad user offsets: not monotone at user " + std::to_string(u));
    }
  }
  if (offsets[num_users_] != num_events_) {
    throw DataError(where + ": bad user offsets: expected last offset " +
                    std::to_string(num_events_) + ", got " + std::to_string(offsets[num_users_]));
  }
  const size_t bytes = (num_users_ + 1) * sizeof(uint64_t);
  put(layout_v2(num_users_, num_events_, has_ts_).offsets_at, offsets, bytes);
  h_offsets_ = store_section_hash(offsets, bytes);
  offsets_done_ = true;
}

void StoreWriter::write_events(const int32_t* items, const int64_t* timestamps, size_t n) {
  if (written_ + n > num_events_) {
    throw DataError(path_ + " (store being written): expected " + std::to_string(num_events_) +
                    " events, got more");
  }
  const int64_t max_item = static_cast<int64_t>(num_items_);
  for (size_t k = 0; k < n; ++k) {
    if (items[k] < 1 || items[k] > max_item) {
      throw DataError(path_ + " (store being written): item id out of range at event " +
                      std::to_string(written_ + k) + ": expected 1.." + std::to_string(max_item) +
                      ", got " + std::to_string(items[k]));
    }
  }
  const Layout l = layout_v2(num_users_, num_events_, has_ts_);
  put(l.items_at + written_ * sizeof(int32_t), items, n * sizeof(int32_t));
  h_items_.update(items, n * sizeof(int32_t));
  if (has_ts_) {
    put(l.ts_at + written_ * sizeof(int64_t), timestamps, n * sizeof(int64_t));
    h_ts_.update(timestamps, n * sizeof(int64_t));
  }
  written_ += n;
}

void StoreWriter::commit() {
  if (!offsets_done_ || written_ != num_events_) {
    throw DataError(path_ + " (store being written): expected " + std::to_string(num_events_) +
                    " events and the offsets, got " + std::to_string(written_) + " events" +
                    (offsets_done_ ? "" : " and no offsets"));
  }
  const Layout l = layout_v2(num_users_, num_events_, has_ts_);
  if (num_events_ % 2 == 1 && has_ts_) {
    const uint32_t zero = 0;
    put(l.ts_at - 4, &zero, 4);
  }
  StoreHeader header{};
  std::memcpy(header.magic, kStoreMagic, sizeof header.magic);
  header.version = kStoreVersion;
  header.flags = has_ts_ ? kFlagTimestamps : 0u;
  header.num_users = num_users_;
  header.num_items = num_items_;
  header.num_events = num_events_;
  header.checksum = combine_sections(h_offsets_, h_items_.finish(), has_ts_ ? h_ts_.finish() : kFnvOffset);
  put(0, &header, sizeof header);
  if (::ftruncate(fd_, static_cast<off_t>(l.total)) != 0 || ::close(fd_) != 0) {
    fd_ = -1;
    const int e = errno;
    ::unlink(tmp_.c_str());
    throw DataError("cannot write " + path_ + ": " + std::strerror(e));
  }
  fd_ = -1;
  if (std::rename(tmp_.c_str(), path_.c_str()) != 0) {
    const int e = errno;
    ::unlink(tmp_.c_str());
    throw DataError("cannot write " + path_ + ": rename failed: " + std::strerror(e));
  }
}

void write_store(const StoreData& data, const std::string& path) {
  if (data.user_offsets.empty()) {
    throw DataError(path + ": cannot write store: expected at least 1 user offset, got 0");
  }
  const uint64_t num_users = data.user_offsets.size() - 1;
  const uint64_t num_events = data.item_ids.size();
  if (data.has_timestamps && data.timestamps.size() != num_events) {
    throw DataError(path + ": cannot write store: expected " + std::to_string(num_events) +
                    " timestamps, got " + std::to_string(data.timestamps.size()));
  }
  if (data.num_items < 0) {
    throw DataError(path + ": cannot write store: expected num_items >= 0, got " +
                    std::to_string(data.num_items));
  }
  // Never write a file that open() would reject.
  validate_csr(path + " (store being written)", num_users, static_cast<uint64_t>(data.num_items),
               num_events, data.user_offsets.data(), data.item_ids.data(),
               data.has_timestamps ? data.timestamps.data() : nullptr);
  StoreWriter writer(path, num_users, static_cast<uint64_t>(data.num_items), num_events,
                     data.has_timestamps);
  writer.write_offsets(data.user_offsets.data());
  writer.write_events(data.item_ids.data(), data.has_timestamps ? data.timestamps.data() : nullptr,
                      num_events);
  writer.commit();
}

InteractionStore InteractionStore::open(const std::string& path) {
  auto impl = std::make_shared<Impl>();
  impl->path = path;

  impl->file = MappedFile::open(path);
  const uint64_t size = impl->file.size();
  if (size < sizeof(StoreHeader)) {
    throw DataError(path + ": truncated: expected at least " + std::to_string(sizeof(StoreHeader)) +
                    " bytes (header), got " + std::to_string(size));
  }
  const unsigned char* base = impl->file.data();

  StoreHeader header;
  std::memcpy(&header, base, sizeof header);
  if (std::memcmp(header.magic, kStoreMagic, sizeof header.magic) != 0) {
    throw DataError(path + ": not a seqrec interaction store (bad magic)");
  }
  if (header.version != 1 && header.version != kStoreVersion) {
    throw DataError(path + ": unsupported store version: expected 1 or " +
                    std::to_string(kStoreVersion) + ", got " + std::to_string(header.version));
  }
  const bool v1 = header.version == 1;
  if ((header.flags & ~kFlagTimestamps) != 0) {
    throw DataError(path + ": unknown store flags: expected 0 or 1, got " +
                    std::to_string(header.flags));
  }
  const bool has_ts = (header.flags & kFlagTimestamps) != 0;

  // Compute the expected size with overflow guards: a corrupted header must not wrap around.
  const uint64_t limit = uint64_t{1} << 60;
  if (header.num_users >= limit / 8 || header.num_events >= limit / 16) {
    throw DataError(path + ": corrupted header: implausible sizes (users " +
                    std::to_string(header.num_users) + ", events " +
                    std::to_string(header.num_events) + ")");
  }
  const uint64_t offsets_bytes = (header.num_users + 1) * sizeof(uint64_t);
  const uint64_t items_bytes = header.num_events * sizeof(int32_t);
  const uint64_t ts_bytes = has_ts ? header.num_events * sizeof(int64_t) : 0;
  const uint64_t pad = (!v1 && has_ts) ? (header.num_events % 2) * 4 : 0;
  const uint64_t expected = sizeof(StoreHeader) + offsets_bytes + items_bytes + pad + ts_bytes;
  if (size < expected) {
    throw DataError(path + ": truncated: expected " + std::to_string(expected) + " bytes, got " +
                    std::to_string(size));
  }
  if (size > expected) {
    throw DataError(path + ": size mismatch: expected " + std::to_string(expected) +
                    " bytes, got " + std::to_string(size) + " (trailing data)");
  }
  const unsigned char* payload = base + sizeof(StoreHeader);
  const uint64_t checksum =
      v1 ? fnv1a(kFnvOffset, payload, size - sizeof(StoreHeader))
         : combine_sections(
               store_section_hash(payload, offsets_bytes),
               store_section_hash(payload + offsets_bytes, items_bytes),
               has_ts ? store_section_hash(payload + offsets_bytes + items_bytes + pad, ts_bytes)
                      : kFnvOffset);
  if (checksum != header.checksum) {
    throw DataError(path + ": checksum mismatch (file corrupted)");
  }

  impl->num_users = static_cast<int64_t>(header.num_users);
  impl->num_items = static_cast<int64_t>(header.num_items);
  impl->num_events = static_cast<int64_t>(header.num_events);
  impl->has_timestamps = has_ts;
  const unsigned char* p = base + sizeof(StoreHeader);
  impl->offsets = reinterpret_cast<const uint64_t*>(p);
  impl->items = reinterpret_cast<const int32_t*>(p + offsets_bytes);
  if (has_ts) {
    const unsigned char* ts = p + offsets_bytes + items_bytes + pad;
    // Version 1 has no padding: with an odd event count its i64 block is only 4-aligned.
    if (reinterpret_cast<uintptr_t>(ts) % alignof(int64_t) != 0) {
      impl->ts_copy.resize(header.num_events);
      std::memcpy(impl->ts_copy.data(), ts, ts_bytes);
      impl->timestamps = impl->ts_copy.data();
    } else {
      impl->timestamps = reinterpret_cast<const int64_t*>(ts);
    }
  }
  validate_csr(path, header.num_users, header.num_items, header.num_events, impl->offsets,
               impl->items, impl->timestamps);

  InteractionStore store;
  store.impl_ = std::move(impl);
  return store;
}

InteractionStore InteractionStore::from_data(StoreData data) {
  const std::string where = "in-memory interaction store";
  if (data.user_offsets.empty()) {
    throw DataError(where + ": expected at least 1 user offset, got 0");
  }
  if (data.num_items < 0) {
    throw DataError(where + ": expected num_items >= 0, got " + std::to_string(data.num_items));
  }
  const uint64_t num_events = data.item_ids.size();
  if (data.has_timestamps && data.timestamps.size() != num_events) {
    throw DataError(where + ": expected " + std::to_string(num_events) + " timestamps, got " +
                    std::to_string(data.timestamps.size()));
  }
  if (!data.has_timestamps && !data.timestamps.empty()) {
    throw DataError(where + ": expected no timestamps (has_timestamps is false), got " +
                    std::to_string(data.timestamps.size()));
  }
  const uint64_t num_users = data.user_offsets.size() - 1;
  validate_csr(where, num_users, static_cast<uint64_t>(data.num_items), num_events,
               data.user_offsets.data(), data.item_ids.data(),
               data.has_timestamps ? data.timestamps.data() : nullptr);

  auto impl = std::make_shared<Impl>();
  impl->owned = std::move(data);
  impl->num_users = static_cast<int64_t>(num_users);
  impl->num_items = impl->owned.num_items;
  impl->num_events = static_cast<int64_t>(num_events);
  impl->has_timestamps = impl->owned.has_timestamps;
  impl->offsets = impl->owned.user_offsets.data();
  impl->items = impl->owned.item_ids.data();
  impl->timestamps = impl->has_timestamps ? impl->owned.timestamps.data() : nullptr;
  InteractionStore store;
  store.impl_ = std::move(impl);
  return store;
}

int64_t InteractionStore::num_users() const { return impl_ ? impl_->num_users : 0; }
int64_t InteractionStore::num_items() const { return impl_ ? impl_->num_items : 0; }
int64_t InteractionStore::num_events() const { return impl_ ? impl_->num_events : 0; }
bool InteractionStore::has_timestamps() const { return impl_ && impl_->has_timestamps; }

Span<int32_t> InteractionStore::items(int64_t user) const {
  if (!impl_ || user < 0 || user >= impl_->num_users) {
    throw std::out_of_range("InteractionStore::items: user " + std::to_string(user) +
                            " out of range");
  }
  const uint64_t b = impl_->offsets[user];
  const uint64_t e = impl_->offsets[user + 1];
  return Span<int32_t>{impl_->items + b, static_cast<int64_t>(e - b)};
}

Span<int64_t> InteractionStore::timestamps(int64_t user) const {
  if (!impl_ || user < 0 || user >= impl_->num_users) {
    throw std::out_of_range("InteractionStore::timestamps: user " + std::to_string(user) +
                            " out of range");
  }
  if (!impl_->has_timestamps) return Span<int64_t>{};
  const uint64_t b = impl_->offsets[user];
  const uint64_t e = impl_->offsets[user + 1];
  return Span<int64_t>{impl_->timestamps + b, static_cast<int64_t>(e - b)};
}

const std::string& InteractionStore::path() const {
  static const std::string kEmpty;
  return impl_ ? impl_->path : kEmpty;
}

InteractionStore slice_rows(const InteractionStore& store,
                            const std::function<std::pair<int64_t, int64_t>(int64_t n)>& range) {
  StoreData d;
  d.num_items = store.num_items();
  d.has_timestamps = store.has_timestamps();
  d.user_offsets.push_back(0);
  for (int64_t u = 0; u < store.num_users(); ++u) {
    Span<int32_t> items = store.items(u);
    const int64_t n = items.size();
    auto [b, e] = range(n);
    b = std::min(n, std::max<int64_t>(0, b));
    e = std::min(n, std::max<int64_t>(b, e));
    d.item_ids.insert(d.item_ids.end(), items.begin() + b, items.begin() + e);
    if (d.has_timestamps) {
      Span<int64_t> ts = store.timestamps(u);
      d.timestamps.insert(d.timestamps.end(), ts.begin() + b, ts.begin() + e);
    }
    d.user_offsets.push_back(d.item_ids.size());
  }
  return InteractionStore::from_data(std::move(d));
}

std::pair<int64_t, int64_t> python_slice(int64_t n, int64_t begin, int64_t end) {
  auto clamp = [n](int64_t i) { return std::min(n, std::max<int64_t>(0, i < 0 ? n + i : i)); };
  return {clamp(begin), end == 0 ? n : clamp(end)};
}

InteractionStore window_rows(const InteractionStore& store, int64_t begin, int64_t end) {
  return slice_rows(store, [&](int64_t n) { return python_slice(n, begin, end); });
}

}  // namespace seqrec::data
