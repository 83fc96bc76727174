// Parquet value and level encodings (internal to the reader): the RLE / bit-packed hybrid,
// DELTA_BINARY_PACKED and bit unpacking, over bounds-checked byte ranges. Errors are DataError
// messages without a file name; the column reader prefixes file, column and row group.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace seqrec::data::parquet::detail {

/// Bits needed to store values 0..max_value (0 for max_value 0).
int bit_width_of(uint64_t max_value);

/// Unpacks n little-endian bit-packed values of `bit_width` (0..32) bits starting at bit 0 of `data`;
/// bits past `size` read as zero (callers check the byte count first).
void unpack32(const uint8_t* data, size_t size, int bit_width, uint32_t* out, size_t n);

/// Decoder of the RLE / bit-packed hybrid (levels, dictionary indices, RLE booleans).
class RleDecoder {
 public:
  /// Decodes [data, data + size) with values of `bit_width` bits (0..32).
  RleDecoder(const uint8_t* data, size_t size, int bit_width);
  /// Writes up to n values to out; returns how many (fewer only when the data ends).
  size_t get(uint32_t* out, size_t n);

 private:
  bool next_run();
  const uint8_t* p_;
  const uint8_t* end_;
  int bit_width_;
  uint64_t rle_left_ = 0;       // values left in the current RLE run
  uint32_t rle_value_ = 0;
  uint64_t literal_left_ = 0;   // values left in the current bit-packed run
  const uint8_t* literal_ = nullptr;  // start of the bit-packed run
  uint64_t literal_pos_ = 0;    // values already taken from it
  uint64_t literal_bytes_ = 0;
};

/// Decodes a DELTA_BINARY_PACKED stream at [data, data + size), appending its values (64-bit,
/// wrapping arithmetic) to `out`; at most `max_values` are accepted. Returns the bytes consumed.
size_t decode_delta_binary_packed(const uint8_t* data, size_t size, uint64_t max_values, std::vector<int64_t>& out);

}  // namespace seqrec::data::parquet::detail
