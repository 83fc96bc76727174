// One Parquet column chunk -> Column: page headers, CRCs, decompression, repetition/definition
// levels, and the value encodings. Every offset and length is checked before it is read.
#include "seqrec/data/parquet_column.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "seqrec/common/error.h"
#include "seqrec/data/parquet_codec.h"
#include "seqrec/data/parquet_encoding.h"

namespace seqrec::data::parquet::detail {
namespace {

using thrift::PageHeader;

const char* encoding_name(int32_t e) {
  switch (e) {
    case thrift::kPlain: return "PLAIN";
    case thrift::kPlainDictionary: return "PLAIN_DICTIONARY";
    case thrift::kRle: return "RLE";
    case thrift::kBitPacked: return "BIT_PACKED";
    case thrift::kDeltaBinaryPacked: return "DELTA_BINARY_PACKED";
    case thrift::kDeltaLengthByteArray: return "DELTA_LENGTH_BYTE_ARRAY";
    case thrift::kDeltaByteArray: return "DELTA_BYTE_ARRAY";
    case thrift::kRleDictionary: return "RLE_DICTIONARY";
    case thrift::kByteStreamSplit: return "BYTE_STREAM_SPLIT";
    default: return nullptr;
  }
}

std::string encoding_label(int32_t e) {
  const char* n = encoding_name(e);
  return n ? std::string(n) : "encoding " + std::to_string(e);
}

[[noreturn]] void unsupported_encoding(int32_t encoding, PhysicalType type) {
  throw DataError("unsupported feature: " + encoding_label(encoding) + " encoding for " + physical_type_name(type) +
                  " values");
}

uint32_t read_u32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// Seconds between the Julian day 0 epoch used by INT96 and 1970-01-01.
constexpr int64_t kJulianUnixEpochDay = 2440588;
constexpr int64_t kNanosPerDay = 86400LL * 1000 * 1000 * 1000;

class ChunkDecoder {
 public:
  ChunkDecoder(const thrift::ColumnMetaData& meta, const LeafInfo& leaf) : meta_(meta), leaf_(leaf) {
    const ColumnSchema& s = leaf.schema;
    out_.path = s.path;
    out_.physical = s.physical;
    out_.is_list = s.max_rep > 0;
    if (is_bytes()) out_.byte_offsets.push_back(0);
    if (out_.is_list) out_.list_offsets.reserve(1024);
    dict_.physical = s.physical;
    if (is_bytes()) dict_.byte_offsets.push_back(0);
    def_bits_ = bit_width_of(static_cast<uint64_t>(s.max_def));
    rep_bits_ = bit_width_of(static_cast<uint64_t>(s.max_rep));
  }

  Column run(const uint8_t* file, size_t file_size, int64_t num_rows);

 private:
  bool is_bytes() const {
    return leaf_.schema.physical == PhysicalType::kByteArray || leaf_.schema.physical == PhysicalType::kFixedLenByteArray;
  }
  const uint8_t* page_bytes(const uint8_t* data, size_t size, size_t out_size);
  void read_dictionary(const PageHeader& h, const uint8_t* page);
  void read_data_page_v1(const PageHeader& h, const uint8_t* page);
  void read_data_page_v2(const PageHeader& h, const uint8_t* page);
  void read_levels(const uint8_t* data, size_t size, int bits, int max_level, size_t n, std::vector<uint32_t>& out,
                   const char* what);
  void add_page(size_t n, int32_t encoding, const uint8_t* values, size_t values_size);
  void decode_values(Column& dst, int32_t encoding, const uint8_t* data, size_t size, size_t n);
  void decode_plain(Column& dst, const uint8_t* data, size_t size, size_t n);
  void decode_dictionary(Column& dst, const uint8_t* data, size_t size, size_t n);
  void decode_rle_booleans(Column& dst, const uint8_t* data, size_t size, size_t n);
  void decode_delta_ints(Column& dst, const uint8_t* data, size_t size, size_t n);
  size_t decode_delta_lengths(Column& dst, const uint8_t* data, size_t size, size_t n);
  void decode_delta_strings(Column& dst, const uint8_t* data, size_t size, size_t n);
  void decode_byte_stream_split(Column& dst, const uint8_t* data, size_t size, size_t n);
  void expand_nulls(size_t first_slot, size_t present);
  void finish(int64_t num_rows);

  const thrift::ColumnMetaData& meta_;
  const LeafInfo& leaf_;
  Column out_;
  Column dict_;
  bool has_dict_ = false;
  int def_bits_ = 0;
  int rep_bits_ = 0;
  int64_t values_seen_ = 0;     // level entries read so far
  std::vector<uint32_t> def_, rep_, indices_;
  std::vector<uint8_t> page_valid_;  // per slot of the current page
  std::vector<uint8_t> valid_;       // per slot of the chunk (kept only while some slot may be null)
  std::vector<uint8_t> list_valid_;
  std::unique_ptr<uint8_t[]> buf_;   // decompressed page (not zero-filled: pages are fully written)
  size_t buf_cap_ = 0;
};

// The decompressed bytes of a page: the mapped bytes themselves when uncompressed.
const uint8_t* ChunkDecoder::page_bytes(const uint8_t* data, size_t size, size_t out_size) {
  if (meta_.codec == thrift::kUncompressed) {
    if (size != out_size) {
      throw DataError("uncompressed page of " + std::to_string(size) + " bytes, header says " + std::to_string(out_size));
    }
    return data;
  }
  if (out_size > buf_cap_ || !buf_) {
    buf_.reset(new uint8_t[std::max<size_t>(out_size, 1)]);
    buf_cap_ = std::max<size_t>(out_size, 1);
  }
  decompress(meta_.codec, data, size, buf_.get(), out_size);
  return buf_.get();
}

Column ChunkDecoder::run(const uint8_t* file, size_t file_size, int64_t num_rows) {
  if (!codec_supported(meta_.codec)) {
    throw DataError("unsupported feature: " + codec_name(meta_.codec) + " compression (supported: UNCOMPRESSED, "
                    "SNAPPY, GZIP, ZSTD)");
  }
  int64_t start = meta_.data_page_offset;
  // Some writers store dictionary_page_offset 0 for "none": only an offset before the data pages counts.
  if (meta_.has_dictionary_page_offset && meta_.dictionary_page_offset > 0 && meta_.dictionary_page_offset < start) {
    start = meta_.dictionary_page_offset;
  }
  const int64_t len = meta_.total_compressed_size;
  if (start < 0 || len < 0 || static_cast<uint64_t>(start) > file_size ||
      static_cast<uint64_t>(len) > file_size - static_cast<uint64_t>(start)) {
    throw DataError("column chunk [" + std::to_string(start) + ", +" + std::to_string(len) + ") lies outside the file (" +
                    std::to_string(file_size) + " bytes)");
  }
  if (meta_.num_values < 0) throw DataError("negative num_values");
  // A flat column has one level entry per row; this also bounds what a corrupt page can claim.
  if (leaf_.schema.max_rep == 0 && meta_.num_values != num_rows) {
    throw DataError("column chunk has " + std::to_string(meta_.num_values) + " values, its row group " +
                    std::to_string(num_rows) + " rows");
  }
  const uint8_t* p = file + start;
  const uint8_t* end = p + len;
  // Level entries bound the slots; the chunk's bytes bound any honest count (8 values per byte at
  // most for fixed-width data), so a corrupt num_values cannot reserve unbounded memory.
  const size_t expect = static_cast<size_t>(std::min<int64_t>(meta_.num_values, len * 8 + 1024));
  const PhysicalType t = leaf_.schema.physical;
  if (t == PhysicalType::kFloat || t == PhysicalType::kDouble) {
    out_.reals.reserve(expect);
  } else if (is_bytes()) {
    out_.byte_offsets.reserve(expect + 1);
  } else {
    out_.ints.reserve(expect);
  }
  while (values_seen_ < meta_.num_values) {
    if (p >= end) {
      throw DataError("column chunk ends after " + std::to_string(values_seen_) + " of " +
                      std::to_string(meta_.num_values) + " values");
    }
    size_t header_size = 0;
    const PageHeader h = thrift::decode_page_header(p, static_cast<size_t>(end - p), &header_size);
    p += header_size;
    if (h.compressed_page_size < 0 || h.uncompressed_page_size < 0 || h.compressed_page_size > end - p) {
      throw DataError("page of " + std::to_string(h.compressed_page_size) + " bytes runs past the column chunk");
    }
    const uint8_t* page = p;
    p += h.compressed_page_size;
    if (h.has_crc && page_crc32(page, static_cast<size_t>(h.compressed_page_size)) != static_cast<uint32_t>(h.crc)) {
      throw DataError("page CRC mismatch (corrupt page at file offset " + std::to_string(page - file) + ")");
    }
    if (h.type == thrift::kDictionaryPage) {
      read_dictionary(h, page);
    } else if (h.type == thrift::kDataPage) {
      read_data_page_v1(h, page);
    } else if (h.type == thrift::kDataPageV2) {
      read_data_page_v2(h, page);
    }  // index pages and unknown page types carry no values: skipped
  }
  finish(num_rows);
  return std::move(out_);
}

void ChunkDecoder::read_dictionary(const PageHeader& h, const uint8_t* page) {
  if (!h.has_dictionary_page) throw DataError("dictionary page without its header");
  const auto& d = h.dictionary_page;
  if (d.encoding != thrift::kPlain && d.encoding != thrift::kPlainDictionary) {
    throw DataError("unsupported feature: dictionary page in " + encoding_label(d.encoding) + " encoding");
  }
  if (d.num_values < 0) throw DataError("dictionary page with negative num_values");
  const size_t usize = static_cast<size_t>(h.uncompressed_page_size);
  const uint8_t* bytes = page_bytes(page, static_cast<size_t>(h.compressed_page_size), usize);
  dict_.ints.clear();
  dict_.reals.clear();
  dict_.bytes.clear();
  dict_.byte_offsets.resize(is_bytes() ? 1 : 0);
  decode_plain(dict_, bytes, usize, static_cast<size_t>(d.num_values));
  has_dict_ = true;
}

void ChunkDecoder::read_levels(const uint8_t* data, size_t size, int bits, int max_level, size_t n,
                               std::vector<uint32_t>& out, const char* what) {
  out.resize(n);
  RleDecoder dec(data, size, bits);
  if (dec.get(out.data(), n) != n) throw DataError(std::string(what) + " levels: data ends before " + std::to_string(n) + " values");
  for (size_t i = 0; i < n; ++i) {
    if (out[i] > static_cast<uint32_t>(max_level)) {
      throw DataError(std::string(what) + " level " + std::to_string(out[i]) + " exceeds the maximum " +
                      std::to_string(max_level));
    }
  }
}

void ChunkDecoder::read_data_page_v1(const PageHeader& h, const uint8_t* page) {
  if (!h.has_data_page) throw DataError("data page without its header");
  const auto& d = h.data_page;
  if (d.num_values < 0 || d.num_values > meta_.num_values - values_seen_) {
    throw DataError("data page of " + std::to_string(d.num_values) + " values, the chunk has " +
                    std::to_string(meta_.num_values - values_seen_) + " left");
  }
  const size_t n = static_cast<size_t>(d.num_values);
  const size_t usize = static_cast<size_t>(h.uncompressed_page_size);
  const uint8_t* p = page_bytes(page, static_cast<size_t>(h.compressed_page_size), usize);
  const uint8_t* end = p + usize;
  // v1 levels: a 4-byte length, then the RLE / bit-packed hybrid.
  auto levels = [&](int32_t encoding, int bits, int max_level, std::vector<uint32_t>& out, const char* what) {
    if (encoding != thrift::kRle) {
      throw DataError("unsupported feature: " + encoding_label(encoding) + " encoding for " + what + " levels");
    }
    if (end - p < 4) throw DataError(std::string(what) + " levels: truncated length");
    const uint32_t len = read_u32(p);
    p += 4;
    if (len > static_cast<size_t>(end - p)) throw DataError(std::string(what) + " levels run past the page");
    read_levels(p, len, bits, max_level, n, out, what);
    p += len;
  };
  if (leaf_.schema.max_rep > 0) levels(d.repetition_level_encoding, rep_bits_, leaf_.schema.max_rep, rep_, "repetition");
  if (leaf_.schema.max_def > 0) levels(d.definition_level_encoding, def_bits_, leaf_.schema.max_def, def_, "definition");
  add_page(n, d.encoding, p, static_cast<size_t>(end - p));
}

void ChunkDecoder::read_data_page_v2(const PageHeader& h, const uint8_t* page) {
  if (!h.has_data_page_v2) throw DataError("data page v2 without its header");
  const auto& d = h.data_page_v2;
  if (d.num_values < 0 || d.num_values > meta_.num_values - values_seen_) {
    throw DataError("data page of " + std::to_string(d.num_values) + " values, the chunk has " +
                    std::to_string(meta_.num_values - values_seen_) + " left");
  }
  const size_t n = static_cast<size_t>(d.num_values);
  const int64_t rep_len = d.repetition_levels_byte_length;
  const int64_t def_len = d.definition_levels_byte_length;
  if (rep_len < 0 || def_len < 0 || rep_len + def_len > h.compressed_page_size ||
      rep_len + def_len > h.uncompressed_page_size) {
    throw DataError("data page v2: level lengths exceed the page");
  }
  // v2 levels are never compressed and carry no length prefix.
  if (leaf_.schema.max_rep > 0) read_levels(page, static_cast<size_t>(rep_len), rep_bits_, leaf_.schema.max_rep, n, rep_, "repetition");
  if (leaf_.schema.max_def > 0) {
    read_levels(page + rep_len, static_cast<size_t>(def_len), def_bits_, leaf_.schema.max_def, n, def_, "definition");
  }
  const uint8_t* raw = page + rep_len + def_len;
  const size_t raw_size = static_cast<size_t>(h.compressed_page_size - rep_len - def_len);
  const size_t usize = static_cast<size_t>(h.uncompressed_page_size - rep_len - def_len);
  const uint8_t* values = raw;
  size_t values_size = raw_size;
  // An empty value section is not a valid compressed stream for every codec: nothing to decompress.
  if (d.is_compressed && meta_.codec != thrift::kUncompressed && raw_size > 0) {
    values = page_bytes(raw, raw_size, usize);
    values_size = usize;
  }
  add_page(n, d.encoding, values, values_size);
}

// Levels of one page -> rows and slots; then the page's present values, spread over its slots.
void ChunkDecoder::add_page(size_t n, int32_t encoding, const uint8_t* values, size_t values_size) {
  const ColumnSchema& s = leaf_.schema;
  const size_t first_slot = static_cast<size_t>(out_.num_slots());
  page_valid_.clear();
  size_t present = n;
  if (s.max_rep > 0) {
    const uint32_t list_def = static_cast<uint32_t>(leaf_.rep_def - 1);
    for (size_t i = 0; i < n; ++i) {
      const uint32_t def = s.max_def > 0 ? def_[i] : 0;
      if (rep_[i] == 0) {
        out_.list_offsets.push_back(static_cast<int64_t>(first_slot + page_valid_.size()));
        list_valid_.push_back(def >= list_def ? 1 : 0);
      } else if (out_.list_offsets.empty()) {
        throw DataError("the first value continues a list (repetition level " + std::to_string(rep_[i]) + ")");
      }
      if (def >= static_cast<uint32_t>(leaf_.rep_def)) page_valid_.push_back(def == static_cast<uint32_t>(s.max_def));
    }
    present = static_cast<size_t>(std::count(page_valid_.begin(), page_valid_.end(), 1));
  } else if (s.max_def > 0) {
    page_valid_.resize(n);
    present = 0;
    for (size_t i = 0; i < n; ++i) {
      page_valid_[i] = def_[i] == static_cast<uint32_t>(s.max_def);
      present += page_valid_[i];
    }
  }
  const size_t slots = s.max_rep > 0 || s.max_def > 0 ? page_valid_.size() : n;
  decode_values(out_, encoding, values, values_size, present);
  if (present < slots) expand_nulls(first_slot, present);
  if (s.max_def > static_cast<int>(s.max_rep > 0 ? leaf_.rep_def : 0)) {
    if (page_valid_.empty() && slots > 0) page_valid_.assign(slots, 1);
    valid_.insert(valid_.end(), page_valid_.begin(), page_valid_.end());
  }
  values_seen_ += static_cast<int64_t>(n);
}

// Dense values [first_slot, first_slot + present) -> slots [first_slot, first_slot + page slots),
// nulls zero / empty. In place, from the back.
void ChunkDecoder::expand_nulls(size_t first_slot, size_t present) {
  const size_t slots = page_valid_.size();
  size_t c = present;
  if (is_bytes()) {
    auto& off = out_.byte_offsets;
    off.resize(first_slot + slots + 1);
    for (size_t k = slots; k-- > 0;) {
      off[first_slot + k + 1] = off[first_slot + c];
      if (page_valid_[k]) --c;
    }
  } else if (leaf_.schema.physical == PhysicalType::kFloat || leaf_.schema.physical == PhysicalType::kDouble) {
    auto& v = out_.reals;
    v.resize(first_slot + slots);
    for (size_t k = slots; k-- > 0;) v[first_slot + k] = page_valid_[k] ? v[first_slot + --c] : 0.0;
  } else {
    auto& v = out_.ints;
    v.resize(first_slot + slots);
    for (size_t k = slots; k-- > 0;) v[first_slot + k] = page_valid_[k] ? v[first_slot + --c] : 0;
  }
}

void ChunkDecoder::finish(int64_t num_rows) {
  const int64_t slots = out_.num_slots();
  if (out_.is_list) {
    out_.num_rows = static_cast<int64_t>(out_.list_offsets.size());
    out_.list_offsets.push_back(slots);
    if (std::find(list_valid_.begin(), list_valid_.end(), 0) != list_valid_.end()) out_.list_valid = std::move(list_valid_);
  } else {
    out_.num_rows = slots;
  }
  if (std::find(valid_.begin(), valid_.end(), 0) != valid_.end()) out_.valid = std::move(valid_);
  if (out_.num_rows != num_rows) {
    throw DataError("column chunk holds " + std::to_string(out_.num_rows) + " rows, its row group " +
                    std::to_string(num_rows));
  }
}

void ChunkDecoder::decode_values(Column& dst, int32_t encoding, const uint8_t* data, size_t size, size_t n) {
  const PhysicalType t = leaf_.schema.physical;
  switch (encoding) {
    case thrift::kPlain:
      decode_plain(dst, data, size, n);
      return;
    case thrift::kPlainDictionary:
    case thrift::kRleDictionary:
      decode_dictionary(dst, data, size, n);
      return;
    case thrift::kRle:
      if (t != PhysicalType::kBoolean) unsupported_encoding(encoding, t);
      decode_rle_booleans(dst, data, size, n);
      return;
    case thrift::kDeltaBinaryPacked:
      if (t != PhysicalType::kInt32 && t != PhysicalType::kInt64) unsupported_encoding(encoding, t);
      decode_delta_ints(dst, data, size, n);
      return;
    case thrift::kDeltaLengthByteArray:
      if (t != PhysicalType::kByteArray) unsupported_encoding(encoding, t);
      if (decode_delta_lengths(dst, data, size, n) != n) throw DataError("DELTA_LENGTH_BYTE_ARRAY: too few values");
      return;
    case thrift::kDeltaByteArray:
      if (!is_bytes()) unsupported_encoding(encoding, t);
      decode_delta_strings(dst, data, size, n);
      return;
    case thrift::kByteStreamSplit:
      if (t == PhysicalType::kBoolean || t == PhysicalType::kByteArray || t == PhysicalType::kInt96) {
        unsupported_encoding(encoding, t);
      }
      decode_byte_stream_split(dst, data, size, n);
      return;
    default:
      unsupported_encoding(encoding, t);
  }
}

[[noreturn]] void too_short(const char* what, size_t n, size_t size) {
  throw DataError(std::string(what) + ": " + std::to_string(n) + " values do not fit in " + std::to_string(size) +
                  " bytes");
}

void ChunkDecoder::decode_plain(Column& dst, const uint8_t* data, size_t size, size_t n) {
  const ColumnSchema& s = leaf_.schema;
  switch (s.physical) {
    case PhysicalType::kBoolean: {
      if ((n + 7) / 8 > size) too_short("PLAIN BOOLEAN", n, size);
      const size_t base = dst.ints.size();
      dst.ints.resize(base + n);
      for (size_t i = 0; i < n; ++i) dst.ints[base + i] = (data[i >> 3] >> (i & 7)) & 1;
      return;
    }
    case PhysicalType::kInt32: {
      if (n > size / 4) too_short("PLAIN INT32", n, size);
      const size_t base = dst.ints.size();
      dst.ints.resize(base + n);
      for (size_t i = 0; i < n; ++i) {
        const uint32_t u = read_u32(data + 4 * i);
        dst.ints[base + i] = s.is_unsigned ? static_cast<int64_t>(u) : static_cast<int64_t>(static_cast<int32_t>(u));
      }
      return;
    }
    case PhysicalType::kInt64: {
      if (n > size / 8) too_short("PLAIN INT64", n, size);
      const size_t base = dst.ints.size();
      dst.ints.resize(base + n);
      if (n > 0) std::memcpy(dst.ints.data() + base, data, 8 * n);
      return;
    }
    case PhysicalType::kInt96: {
      if (n > size / 12) too_short("PLAIN INT96", n, size);
      const size_t base = dst.ints.size();
      dst.ints.resize(base + n);
      for (size_t i = 0; i < n; ++i) {
        int64_t nanos;
        std::memcpy(&nanos, data + 12 * i, 8);
        const int32_t day = static_cast<int32_t>(read_u32(data + 12 * i + 8));
        const __int128 ns = static_cast<__int128>(day - kJulianUnixEpochDay) * kNanosPerDay + nanos;
        if (ns < INT64_MIN || ns > INT64_MAX) {
          throw DataError("INT96 timestamp (Julian day " + std::to_string(day) +
                          ") is outside the int64 nanosecond range (years 1677-2262)");
        }
        dst.ints[base + i] = static_cast<int64_t>(ns);
      }
      return;
    }
    case PhysicalType::kFloat: {
      if (n > size / 4) too_short("PLAIN FLOAT", n, size);
      const size_t base = dst.reals.size();
      dst.reals.resize(base + n);
      for (size_t i = 0; i < n; ++i) {
        float f;
        std::memcpy(&f, data + 4 * i, 4);
        dst.reals[base + i] = f;
      }
      return;
    }
    case PhysicalType::kDouble: {
      if (n > size / 8) too_short("PLAIN DOUBLE", n, size);
      const size_t base = dst.reals.size();
      dst.reals.resize(base + n);
      if (n > 0) std::memcpy(dst.reals.data() + base, data, 8 * n);
      return;
    }
    case PhysicalType::kByteArray: {
      const uint8_t* p = data;
      const uint8_t* end = data + size;
      dst.byte_offsets.reserve(dst.byte_offsets.size() + n);
      for (size_t i = 0; i < n; ++i) {
        if (end - p < 4) too_short("PLAIN BYTE_ARRAY", n, size);
        const uint32_t len = read_u32(p);
        p += 4;
        if (len > static_cast<size_t>(end - p)) throw DataError("PLAIN BYTE_ARRAY: value runs past the page");
        dst.bytes.insert(dst.bytes.end(), p, p + len);
        dst.byte_offsets.push_back(static_cast<int64_t>(dst.bytes.size()));
        p += len;
      }
      return;
    }
    case PhysicalType::kFixedLenByteArray: {
      const size_t w = static_cast<size_t>(s.type_length);
      if (w == 0 || n > size / w) too_short("PLAIN FIXED_LEN_BYTE_ARRAY", n, size);
      const int64_t base = static_cast<int64_t>(dst.bytes.size());
      dst.bytes.insert(dst.bytes.end(), data, data + n * w);
      for (size_t i = 1; i <= n; ++i) dst.byte_offsets.push_back(base + static_cast<int64_t>(i * w));
      return;
    }
  }
}

void ChunkDecoder::decode_dictionary(Column& dst, const uint8_t* data, size_t size, size_t n) {
  if (!has_dict_) throw DataError("dictionary-encoded page without a dictionary page");
  if (n == 0) return;
  if (size < 1) throw DataError("dictionary indices: empty page");
  const int bw = data[0];
  if (bw > 32) throw DataError("dictionary indices: bit width " + std::to_string(bw) + " > 32");
  indices_.resize(n);
  RleDecoder dec(data + 1, size - 1, bw);
  if (dec.get(indices_.data(), n) != n) throw DataError("dictionary indices: data ends before " + std::to_string(n) + " values");
  const size_t dict_size = static_cast<size_t>(dict_.num_slots());
  for (size_t i = 0; i < n; ++i) {
    if (indices_[i] >= dict_size) {
      throw DataError("dictionary index " + std::to_string(indices_[i]) + " out of range (dictionary of " +
                      std::to_string(dict_size) + ")");
    }
  }
  if (is_bytes()) {
    size_t total = 0;
    for (size_t i = 0; i < n; ++i) total += static_cast<size_t>(dict_.byte_offsets[indices_[i] + 1] - dict_.byte_offsets[indices_[i]]);
    dst.bytes.reserve(dst.bytes.size() + total);
    dst.byte_offsets.reserve(dst.byte_offsets.size() + n);
    for (size_t i = 0; i < n; ++i) {
      const char* b = dict_.bytes.data() + dict_.byte_offsets[indices_[i]];
      const char* e = dict_.bytes.data() + dict_.byte_offsets[indices_[i] + 1];
      dst.bytes.insert(dst.bytes.end(), b, e);
      dst.byte_offsets.push_back(static_cast<int64_t>(dst.bytes.size()));
    }
  } else if (leaf_.schema.physical == PhysicalType::kFloat || leaf_.schema.physical == PhysicalType::kDouble) {
    const size_t base = dst.reals.size();
    dst.reals.resize(base + n);
    for (size_t i = 0; i < n; ++i) dst.reals[base + i] = dict_.reals[indices_[i]];
  } else {
    const size_t base = dst.ints.size();
    dst.ints.resize(base + n);
    for (size_t i = 0; i < n; ++i) dst.ints[base + i] = dict_.ints[indices_[i]];
  }
}

void ChunkDecoder::decode_rle_booleans(Column& dst, const uint8_t* data, size_t size, size_t n) {
  if (size < 4) throw DataError("RLE booleans: truncated length");
  const uint32_t len = read_u32(data);
  if (len > size - 4) throw DataError("RLE booleans run past the page");
  indices_.resize(n);
  RleDecoder dec(data + 4, len, 1);
  if (dec.get(indices_.data(), n) != n) throw DataError("RLE booleans: data ends before " + std::to_string(n) + " values");
  dst.ints.insert(dst.ints.end(), indices_.begin(), indices_.begin() + static_cast<std::ptrdiff_t>(n));
}

void ChunkDecoder::decode_delta_ints(Column& dst, const uint8_t* data, size_t size, size_t n) {
  const size_t base = dst.ints.size();
  decode_delta_binary_packed(data, size, n, dst.ints);
  if (dst.ints.size() - base != n) {
    throw DataError("DELTA_BINARY_PACKED: " + std::to_string(dst.ints.size() - base) + " values, expected " + std::to_string(n));
  }
  if (leaf_.schema.physical == PhysicalType::kInt32) {
    // 32-bit columns wrap at 32 bits.
    for (size_t i = base; i < dst.ints.size(); ++i) {
      const uint32_t u = static_cast<uint32_t>(dst.ints[i]);
      dst.ints[i] = leaf_.schema.is_unsigned ? static_cast<int64_t>(u) : static_cast<int64_t>(static_cast<int32_t>(u));
    }
  }
}

// DELTA_LENGTH_BYTE_ARRAY: n lengths (DELTA_BINARY_PACKED), then the bytes back to back. Returns values added.
size_t ChunkDecoder::decode_delta_lengths(Column& dst, const uint8_t* data, size_t size, size_t n) {
  std::vector<int64_t> lengths;
  const size_t used = decode_delta_binary_packed(data, size, n, lengths);
  const uint8_t* p = data + used;
  size_t left = size - used;
  for (int64_t len : lengths) {
    if (len < 0 || static_cast<uint64_t>(len) > left) throw DataError("DELTA_LENGTH_BYTE_ARRAY: value runs past the page");
    dst.bytes.insert(dst.bytes.end(), p, p + len);
    dst.byte_offsets.push_back(static_cast<int64_t>(dst.bytes.size()));
    p += len;
    left -= static_cast<size_t>(len);
  }
  return lengths.size();
}

// DELTA_BYTE_ARRAY: prefix lengths (DELTA_BINARY_PACKED), then suffixes (DELTA_LENGTH_BYTE_ARRAY);
// value i = value i-1's first prefix[i] bytes + suffix i.
void ChunkDecoder::decode_delta_strings(Column& dst, const uint8_t* data, size_t size, size_t n) {
  std::vector<int64_t> prefixes;
  const size_t used = decode_delta_binary_packed(data, size, n, prefixes);
  if (prefixes.size() != n) throw DataError("DELTA_BYTE_ARRAY: " + std::to_string(prefixes.size()) + " prefixes, expected " + std::to_string(n));
  Column suffixes;
  suffixes.byte_offsets.push_back(0);
  if (decode_delta_lengths(suffixes, data + used, size - used, n) != n) throw DataError("DELTA_BYTE_ARRAY: too few suffixes");
  std::string prev;
  const size_t width = static_cast<size_t>(leaf_.schema.type_length);
  for (size_t i = 0; i < n; ++i) {
    if (prefixes[i] < 0 || static_cast<size_t>(prefixes[i]) > prev.size()) {
      throw DataError("DELTA_BYTE_ARRAY: prefix length " + std::to_string(prefixes[i]) + " exceeds the previous value");
    }
    prev.resize(static_cast<size_t>(prefixes[i]));
    prev.append(suffixes.bytes.data() + suffixes.byte_offsets[i], suffixes.bytes.data() + suffixes.byte_offsets[i + 1]);
    if (leaf_.schema.physical == PhysicalType::kFixedLenByteArray && prev.size() != width) {
      throw DataError("DELTA_BYTE_ARRAY: value of " + std::to_string(prev.size()) + " bytes in a FIXED_LEN_BYTE_ARRAY(" +
                      std::to_string(width) + ") column");
    }
    dst.bytes.insert(dst.bytes.end(), prev.begin(), prev.end());
    dst.byte_offsets.push_back(static_cast<int64_t>(dst.bytes.size()));
  }
}

// BYTE_STREAM_SPLIT: byte k of value i is at data[k * n + i].
void ChunkDecoder::decode_byte_stream_split(Column& dst, const uint8_t* data, size_t size, size_t n) {
  const PhysicalType t = leaf_.schema.physical;
  size_t width = 0;
  switch (t) {
    case PhysicalType::kInt32: case PhysicalType::kFloat: width = 4; break;
    case PhysicalType::kInt64: case PhysicalType::kDouble: width = 8; break;
    default: width = static_cast<size_t>(leaf_.schema.type_length); break;
  }
  if (width == 0 || n > size / width) too_short("BYTE_STREAM_SPLIT", n, size);
  std::vector<uint8_t> plain(n * width);
  for (size_t k = 0; k < width; ++k) {
    const uint8_t* stream = data + k * n;
    for (size_t i = 0; i < n; ++i) plain[i * width + k] = stream[i];
  }
  decode_plain(dst, plain.data(), plain.size(), n);
}

}  // namespace

Column decode_chunk(const uint8_t* file, size_t file_size, const thrift::ColumnMetaData& meta, const LeafInfo& leaf,
                    int64_t num_rows) {
  ChunkDecoder decoder(meta, leaf);
  return decoder.run(file, file_size, num_rows);
}

}  // namespace seqrec::data::parquet::detail
