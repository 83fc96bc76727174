// RLE / bit-packed hybrid and DELTA_BINARY_PACKED decoding, every read checked against the buffer end.
#include "seqrec/data/parquet_encoding.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "seqrec/common/error.h"

namespace seqrec::data::parquet::detail {
namespace {

// Loads 8 bytes little-endian; bytes past `end` read as zero.
inline uint64_t load64(const uint8_t* p, const uint8_t* end) {
  uint64_t v = 0;
  if (end - p >= 8) {
    std::memcpy(&v, p, 8);
  } else if (end > p) {
    std::memcpy(&v, p, static_cast<size_t>(end - p));
  }
  return v;  // little-endian hosts only (x86-64, aarch64)
}

inline uint64_t read_varint(const uint8_t*& p, const uint8_t* end, const char* what) {
  uint64_t v = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (p >= end) throw DataError(std::string(what) + ": truncated varint");
    const uint8_t b = *p++;
    v |= static_cast<uint64_t>(b & 0x7f) << shift;
    if ((b & 0x80) == 0) return v;
  }
  throw DataError(std::string(what) + ": varint longer than 10 bytes");
}

inline int64_t read_zigzag(const uint8_t*& p, const uint8_t* end, const char* what) {
  const uint64_t v = read_varint(p, end, what);
  return static_cast<int64_t>(v >> 1) ^ -static_cast<int64_t>(v & 1);
}

// One value of `bw` (0..64) bits at bit offset `bit` of data.
inline uint64_t bits_at(const uint8_t* data, const uint8_t* end, uint64_t bit, int bw) {
  if (bw == 0) return 0;
  const uint8_t* p = data + (bit >> 3);
  const int shift = static_cast<int>(bit & 7);
  uint64_t v = load64(p, end) >> shift;
  if (shift + bw > 64) {
    const uint64_t hi = (p + 8 < end) ? p[8] : 0;
    v |= hi << (64 - shift);
  }
  return bw == 64 ? v : (v & ((uint64_t{1} << bw) - 1));
}

}  // namespace

int bit_width_of(uint64_t max_value) {
  int w = 0;
  while (max_value > 0) {
    ++w;
    max_value >>= 1;
  }
  return w;
}

void unpack32(const uint8_t* data, size_t size, int bw, uint32_t* out, size_t n) {
  const uint8_t* end = data + size;
  if (bw == 0) {
    std::fill(out, out + n, 0u);
    return;
  }
  const uint64_t mask = (uint64_t{1} << bw) - 1;
  uint64_t bit = 0;
  for (size_t i = 0; i < n; ++i, bit += static_cast<uint64_t>(bw)) {
    // shift <= 7 and bw <= 32: one 8-byte load holds the value.
    out[i] = static_cast<uint32_t>((load64(data + (bit >> 3), end) >> (bit & 7)) & mask);
  }
}

RleDecoder::RleDecoder(const uint8_t* data, size_t size, int bit_width)
    : p_(data), end_(data + size), bit_width_(bit_width) {
  if (bit_width < 0 || bit_width > 32) throw DataError("RLE bit width " + std::to_string(bit_width) + " > 32");
}

bool RleDecoder::next_run() {
  while (p_ < end_) {
    const uint64_t header = read_varint(p_, end_, "RLE run header");
    if (header & 1) {
      const uint64_t groups = std::min<uint64_t>(header >> 1, uint64_t{1} << 40);
      const uint64_t avail = static_cast<uint64_t>(end_ - p_);
      uint64_t bytes = groups * static_cast<uint64_t>(bit_width_);
      uint64_t count = groups * 8;
      // A last run may be cut short: keep the values whose bits are present.
      if (bytes > avail) {
        bytes = avail;
        count = avail * 8 / static_cast<uint64_t>(bit_width_);
      }
      literal_ = p_;
      literal_bytes_ = bytes;
      literal_pos_ = 0;
      literal_left_ = count;
      p_ += bytes;
      if (count > 0) return true;
    } else {
      const int nbytes = (bit_width_ + 7) / 8;
      if (end_ - p_ < nbytes) throw DataError("RLE run value past the end of the data");
      uint32_t v = 0;
      for (int i = 0; i < nbytes; ++i) v |= static_cast<uint32_t>(p_[i]) << (8 * i);
      p_ += nbytes;
      rle_value_ = v;
      rle_left_ = header >> 1;
      if (rle_left_ > 0) return true;
    }
  }
  return false;
}

size_t RleDecoder::get(uint32_t* out, size_t n) {
  size_t done = 0;
  while (done < n) {
    if (rle_left_ == 0 && literal_left_ == 0 && !next_run()) break;
    if (rle_left_ > 0) {
      const size_t k = static_cast<size_t>(std::min<uint64_t>(rle_left_, n - done));
      std::fill(out + done, out + done + k, rle_value_);
      rle_left_ -= k;
      done += k;
    } else {
      const size_t k = static_cast<size_t>(std::min<uint64_t>(literal_left_, n - done));
      const uint64_t bit = literal_pos_ * static_cast<uint64_t>(bit_width_);
      // literal_pos_ is a multiple of 8 except at the end, so the run restarts on a byte boundary
      // unless get() stopped mid-group: handle both through the bit offset.
      if ((bit & 7) == 0) {
        unpack32(literal_ + (bit >> 3), literal_bytes_ - (bit >> 3), bit_width_, out + done, k);
      } else {
        for (size_t i = 0; i < k; ++i) {
          out[done + i] = static_cast<uint32_t>(
              bits_at(literal_, literal_ + literal_bytes_, bit + i * static_cast<uint64_t>(bit_width_), bit_width_));
        }
      }
      literal_pos_ += k;
      literal_left_ -= k;
      done += k;
    }
  }
  return done;
}

size_t decode_delta_binary_packed(const uint8_t* data, size_t size, uint64_t max_values, std::vector<int64_t>& out) {
  const char* what = "DELTA_BINARY_PACKED";
  const uint8_t* p = data;
  const uint8_t* end = data + size;
  const uint64_t block_size = read_varint(p, end, what);
  const uint64_t miniblocks = read_varint(p, end, what);
  const uint64_t total = read_varint(p, end, what);
  const int64_t first = read_zigzag(p, end, what);
  if (block_size == 0 || block_size % 128 != 0 || block_size > (1u << 20) || miniblocks == 0 ||
      block_size % miniblocks != 0 || (block_size / miniblocks) % 32 != 0) {
    throw DataError(std::string(what) + ": bad header (block size " + std::to_string(block_size) + ", " +
                    std::to_string(miniblocks) + " miniblocks)");
  }
  if (total > max_values) {
    throw DataError(std::string(what) + ": " + std::to_string(total) + " values, the page holds at most " +
                    std::to_string(max_values));
  }
  const uint64_t per_mini = block_size / miniblocks;
  if (total == 0) return static_cast<size_t>(p - data);
  out.reserve(out.size() + total);
  out.push_back(first);
  uint64_t last = static_cast<uint64_t>(first);
  uint64_t produced = 1;
  while (produced < total) {
    const uint64_t min_delta = static_cast<uint64_t>(read_zigzag(p, end, what));
    if (static_cast<uint64_t>(end - p) < miniblocks) throw DataError(std::string(what) + ": truncated block");
    const uint8_t* widths = p;
    p += miniblocks;
    for (uint64_t m = 0; m < miniblocks && produced < total; ++m) {
      const int bw = widths[m];
      if (bw > 64) throw DataError(std::string(what) + ": miniblock bit width " + std::to_string(bw) + " > 64");
      const uint64_t take = std::min<uint64_t>(per_mini, total - produced);
      const uint64_t need = (take * static_cast<uint64_t>(bw) + 7) / 8;
      const uint64_t full = per_mini * static_cast<uint64_t>(bw) / 8;
      const uint64_t avail = static_cast<uint64_t>(end - p);
      if (need > avail) throw DataError(std::string(what) + ": truncated miniblock");
      for (uint64_t i = 0; i < take; ++i) {
        last += min_delta + bits_at(p, end, i * static_cast<uint64_t>(bw), bw);
        out.push_back(static_cast<int64_t>(last));
      }
      produced += take;
      p += std::min(full, avail);
    }
  }
  return static_cast<size_t>(p - data);
}

}  // namespace seqrec::data::parquet::detail
