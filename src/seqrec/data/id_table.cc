// Interning of raw ids for prepare: direct integers and a string dictionary.
#include "seqrec/data/id_table.h"

#include <charconv>
#include <cstring>

namespace seqrec::data {

bool parse_int64(std::string_view s, int64_t* value) {
  if (s.empty()) return false;
  const char* b = s.data();
  const char* e = s.data() + s.size();
  if (*b == '+') ++b;  // from_chars rejects '+'
  if (b == e) return false;
  auto [p, ec] = std::from_chars(b, e, *value);
  return ec == std::errc() && p == e;
}

bool direct_int(std::string_view token, uint32_t* value) {
  const size_t n = token.size();
  if (n == 0 || n > 8) return false;  // kDirectLimit has 8 digits
  if (token[0] == '0' && n > 1) return false;
  uint32_t v = 0;
  for (char c : token) {
    const unsigned d = static_cast<unsigned char>(c) - '0';
    if (d > 9) return false;
    v = v * 10 + d;
  }
  if (v >= static_cast<uint32_t>(kDirectLimit)) return false;
  *value = v;
  return true;
}

std::string_view IdTable::store(std::string_view s) {
  if (s.size() > arena_left_) {
    const size_t block = std::max<size_t>(s.size(), size_t{1} << 20);
    arena_.emplace_back(new char[block]);
    arena_pos_ = arena_.back().get();
    arena_left_ = block;
  }
  if (!s.empty()) std::memcpy(arena_pos_, s.data(), s.size());
  std::string_view out(arena_pos_, s.size());
  arena_pos_ += s.size();
  arena_left_ -= s.size();
  return out;
}

void IdTable::merge(const LocalDict& local, uint32_t* ids, size_t count, size_t stride) {
  if (local.any_direct()) {
    direct_size_ = std::max(direct_size_, static_cast<size_t>(local.max_direct()) + 1);
  }
  const auto& strings = local.strings();
  if (strings.empty()) return;
  std::vector<uint32_t> remap(strings.size());
  for (size_t i = 0; i < strings.size(); ++i) {
    auto it = map_.find(strings[i]);
    if (it == map_.end()) {
      const std::string_view kept = store(strings[i]);
      it = map_.emplace(kept, static_cast<uint32_t>(names_.size())).first;
      names_.push_back(kept);
    }
    remap[i] = it->second;
  }
  for (size_t k = 0; k < count; ++k) {
    uint32_t& id = ids[k * stride];
    if (id & kStringFlag) id = kStringFlag | remap[id & ~kStringFlag];
  }
}

std::string IdTable::name(size_t index) const {
  if (index < direct_size_) return std::to_string(index);
  return std::string(names_[index - direct_size_]);
}

int64_t IdTable::find(std::string_view token) const {
  uint32_t v = 0;
  if (direct_int(token, &v)) return v < direct_size_ ? static_cast<int64_t>(v) : -1;
  auto it = map_.find(token);
  return it == map_.end() ? -1 : static_cast<int64_t>(direct_size_ + it->second);
}

bool IdTable::all_integers() const {
  int64_t v = 0;
  for (std::string_view s : names_) {
    if (!parse_int64(s, &v)) return false;
  }
  return true;
}

int64_t IdTable::value(size_t index) const {
  if (index < direct_size_) return static_cast<int64_t>(index);
  int64_t v = 0;
  parse_int64(names_[index - direct_size_], &v);
  return v;
}

}  // namespace seqrec::data
