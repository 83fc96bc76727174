// Decoding of one Parquet column chunk (internal to the reader): pages, levels and values into a Column.
#pragma once

#include <cstddef>
#include <cstdint>

#include "seqrec/data/parquet.h"
#include "seqrec/data/parquet_thrift.h"

namespace seqrec::data::parquet::detail {

/// A leaf column as the chunk decoder needs it.
struct LeafInfo {
  ColumnSchema schema;
  int rep_def = 0;   ///< definition level at which a list element exists (0 for flat columns)
};

/// Decodes the chunk `meta` of `leaf` (a row group of `num_rows` rows) from the mapped file.
/// Throws DataError with a message that names the feature or the inconsistency (no file name).
Column decode_chunk(const uint8_t* file, size_t file_size, const thrift::ColumnMetaData& meta, const LeafInfo& leaf,
                    int64_t num_rows);

}  // namespace seqrec::data::parquet::detail
