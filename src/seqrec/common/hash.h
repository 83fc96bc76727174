// FNV-1a 64: the checksum of seqrec's binary files (prepared store, item tokens).
#pragma once

#include <cstddef>
#include <cstdint>

namespace seqrec {

constexpr uint64_t kFnvOffset = 14695981039346656037ULL;
constexpr uint64_t kFnvPrime = 1099511628211ULL;

/// FNV-1a 64 continued from `h` over `len` bytes.
inline uint64_t fnv1a(uint64_t h, const void* data, size_t len) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < len; ++i) {
    h ^= p[i];
    h *= kFnvPrime;
  }
  return h;
}

}  // namespace seqrec
