// A small streaming Parquet writer for seqrec's own files (synthetic logs, tests, benchmarks): flat
// INT64 / INT32 / DOUBLE / string columns (required or optional) and list<int64> columns, PLAIN or
// dictionary encoding, data pages v1 with CRCs, codecs none / snappy / gzip / zstd. Row groups are
// flushed as they fill, so memory stays bounded by one row group. Written to a temp name, renamed on close().
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "seqrec/data/parquet.h"

namespace seqrec::data::parquet {

/// Value type of a written column (and the Column fields it is read from).
enum class WriteType {
  kInt64,      ///< INT64, from Column::ints
  kInt32,      ///< INT32, from Column::ints (values must fit in 32 bits)
  kDouble,     ///< DOUBLE, from Column::reals
  kString,     ///< BYTE_ARRAY annotated STRING, from Column::bytes + byte_offsets
  kInt64List,  ///< 3-level LIST of required INT64, from Column::list_offsets + ints
};

/// One column of the written schema.
struct WriteColumn {
  std::string name;
  WriteType type = WriteType::kInt64;
  bool nullable = false;  ///< optional: values (or, for lists, whole lists) may be null
};

/// Page compression of the written file.
enum class Compression { kNone, kSnappy, kGzip, kZstd };

/// Parses "none" | "uncompressed" | "snappy" | "gzip" | "zstd"; throws ConfigError(field) otherwise.
Compression parse_compression(const std::string& name, const std::string& field);

/// Writer settings.
struct WriterOptions {
  Compression compression = Compression::kSnappy;
  int compression_level = 0;         ///< 0: the codec's default
  int64_t row_group_rows = 1 << 20;  ///< rows per row group (the last may hold fewer)
  int64_t page_rows = 1 << 16;       ///< rows per data page
  bool dictionary = false;           ///< dictionary-encode chunks whose distinct values are at most half the values
  bool page_crc = true;              ///< store a CRC-32 in every page header
};

/// Streams batches of rows into a Parquet file.
class Writer {
 public:
  /// Creates `<path>.tmp.<pid>`; the file appears under `path` only when close() succeeds.
  Writer(const std::string& path, std::vector<WriteColumn> columns, const WriterOptions& options = {});
  /// Removes the temp file when close() was not called (or failed).
  ~Writer();
  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;

  /// Appends rows: one Column per schema column, in schema order, all with the same num_rows
  /// (Column layout of parquet.h; `valid` / `list_valid` only on nullable columns). Throws DataError
  /// naming the column when a batch does not fit the schema; Error on I/O failure.
  void write(const std::vector<Column>& batch);
  /// Flushes the last row group, writes the footer, renames the temp file to `path`.
  void close();
  /// Rows accepted so far.
  int64_t num_rows() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace seqrec::data::parquet
