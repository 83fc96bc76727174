// Parquet reading without Arrow: a memory-mapped file, its flattened schema, and columns decoded
// per row group (in parallel across row groups) into plain vectors.
//
// Supported: physical types BOOLEAN, INT32, INT64, INT96 (as int64 ns), FLOAT, DOUBLE, BYTE_ARRAY,
// FIXED_LEN_BYTE_ARRAY; encodings PLAIN, PLAIN_DICTIONARY / RLE_DICTIONARY, RLE (levels and booleans),
// DELTA_BINARY_PACKED, DELTA_LENGTH_BYTE_ARRAY, DELTA_BYTE_ARRAY, BYTE_STREAM_SPLIT; data pages v1
// and v2; codecs UNCOMPRESSED, SNAPPY, GZIP, ZSTD; page CRCs; nulls; flat columns (also inside
// non-repeated groups) and columns with one level of repetition (3-level LIST, legacy 2-level lists,
// repeated primitives, map keys/values). Refused with a DataError naming the file, the column and
// the feature: encryption, other codecs, unknown encodings, nesting with more than one repeated level.
//
// Column layout: a value slot per present-or-null value; flat columns have one slot per row, list
// columns one slot per list element (list_offsets map rows to slots). Null slots hold 0 / empty.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace seqrec::data::parquet {

/// Physical storage type of a leaf column (parquet.thrift Type).
enum class PhysicalType { kBoolean, kInt32, kInt64, kInt96, kFloat, kDouble, kByteArray, kFixedLenByteArray };

/// What the logical / converted type annotation says a leaf holds.
enum class LogicalKind { kNone, kString, kTimestamp, kDate, kInteger, kDecimal, kOther };

/// One leaf column of the schema.
struct ColumnSchema {
  std::string path;            ///< dotted path from the root, e.g. "a.list.element"
  std::string name;            ///< top-level field name, e.g. "a" (what a user calls a list column)
  PhysicalType physical = PhysicalType::kInt64;
  LogicalKind logical = LogicalKind::kNone;
  int64_t timestamp_unit_ns = 0;  ///< kTimestamp: ns per unit (1, 1000, 1000000); INT96: 1
  bool timestamp_utc = false;     ///< kTimestamp: isAdjustedToUTC
  bool is_unsigned = false;       ///< kInteger: unsigned (UINT_8..UINT_64)
  int32_t type_length = 0;        ///< FIXED_LEN_BYTE_ARRAY width in bytes
  bool nullable = false;          ///< values may be null (max_def > number of repeated/required-list levels)
  bool is_list = false;           ///< one level of repetition: rows hold lists of values
  int max_def = 0;                ///< maximum definition level
  int max_rep = 0;                ///< maximum repetition level (0 flat, 1 list; more is refused on read)
  std::string unsupported;        ///< non-empty: why reading this column is refused
};

/// One column of one row group (or of several, concatenated in order). See the layout note above.
struct Column {
  std::string path;                   ///< ColumnSchema::path
  PhysicalType physical = PhysicalType::kInt64;
  std::vector<int64_t> ints;          ///< BOOLEAN (0/1), INT32, INT64, INT96 (ns): one per slot
  std::vector<double> reals;          ///< FLOAT, DOUBLE: one per slot
  std::vector<char> bytes;            ///< BYTE_ARRAY, FIXED_LEN_BYTE_ARRAY: all values back to back
  std::vector<int64_t> byte_offsets;  ///< slot i is bytes[byte_offsets[i], byte_offsets[i+1]); slots+1 entries
  std::vector<uint8_t> valid;         ///< per slot: 1 present, 0 null; empty when no slot is null
  bool is_list = false;               ///< list column: list_offsets / list_valid are set
  std::vector<int64_t> list_offsets;  ///< row r holds slots [list_offsets[r], list_offsets[r+1]); rows+1 entries
  std::vector<uint8_t> list_valid;    ///< per row: 1 list present (maybe empty), 0 null list; empty when none null
  int64_t num_rows = 0;

  /// Number of value slots.
  int64_t num_slots() const;
  /// Whether slot i holds a value (not null).
  bool is_valid(int64_t slot) const { return valid.empty() || valid[static_cast<size_t>(slot)] != 0; }
  /// Bytes of slot i as a string (BYTE_ARRAY / FIXED_LEN_BYTE_ARRAY).
  std::string string_at(int64_t slot) const;
};

/// Appends rows [begin, end) of `src` to `dst` (same path and type; `dst` may be empty/default).
void append_rows(Column& dst, const Column& src, int64_t begin, int64_t end);

/// Slot `slot` as text: "" for null, true/false, decimal integers, shortest round-trip reals, raw bytes.
std::string format_slot(const Column& col, int64_t slot);

/// The parquet.thrift name of a physical type ("INT64", ...).
const char* physical_type_name(PhysicalType type);

/// A Parquet file opened for reading (memory-mapped, footer decoded and validated). Copies share the mapping.
class File {
 public:
  /// Maps `path` and decodes the footer. Throws DataError naming the file (not Parquet, truncated,
  /// encrypted, malformed footer, inconsistent schema or row counts).
  static File open(const std::string& path);

  const std::string& path() const;
  /// Leaf columns in file order.
  const std::vector<ColumnSchema>& columns() const;
  /// Index of a leaf column by path (or by top-level name when it has a single leaf); -1 when absent.
  int find_column(const std::string& path_or_name) const;
  int64_t num_rows() const;
  int num_row_groups() const;
  int64_t row_group_rows(int row_group) const;
  /// Writer identification ("created_by"; may be empty).
  const std::string& created_by() const;
  /// Codec name of a column chunk (e.g. "SNAPPY").
  std::string chunk_codec(int row_group, int column) const;
  /// Encoding names listed in a column chunk's metadata (e.g. {"PLAIN", "RLE"}).
  std::vector<std::string> chunk_encodings(int row_group, int column) const;

  /// Decodes one column (path, or top-level name) of one row group. Thread-safe. Throws DataError
  /// "<file>: column '<path>' row group <g>: <what>" for unsupported features and malformed data.
  Column read(int row_group, const std::string& column) const;
  /// Decodes the named columns (all when `projection` is empty) of every row group, row groups spread
  /// over `threads` threads (0: hardware concurrency); each result concatenates the row groups in order,
  /// identical whatever the thread count.
  std::vector<Column> read_all(const std::vector<std::string>& projection, int threads) const;

 private:
  struct Impl;
  std::shared_ptr<const Impl> impl_;
};

}  // namespace seqrec::data::parquet
