// The Parquet footer and page headers (Thrift compact protocol): the structs seqrec reads and writes,
// their decoders (bounds-checked, unknown fields skipped) and encoders. Field ids follow
// parquet-format's parquet.thrift; fields seqrec never uses are skipped on read and not written.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace seqrec::data::parquet::thrift {

/// parquet.thrift `Type` (physical types).
enum Type : int32_t { kBoolean = 0, kInt32 = 1, kInt64 = 2, kInt96 = 3, kFloat = 4, kDouble = 5,
                      kByteArray = 6, kFixedLenByteArray = 7 };
/// parquet.thrift `FieldRepetitionType`.
enum Repetition : int32_t { kRequired = 0, kOptional = 1, kRepeated = 2 };
/// parquet.thrift `Encoding`.
enum Encoding : int32_t { kPlain = 0, kPlainDictionary = 2, kRle = 3, kBitPacked = 4, kDeltaBinaryPacked = 5,
                          kDeltaLengthByteArray = 6, kDeltaByteArray = 7, kRleDictionary = 8,
                          kByteStreamSplit = 9 };
/// parquet.thrift `CompressionCodec`.
enum Codec : int32_t { kUncompressed = 0, kSnappy = 1, kGzip = 2, kLzo = 3, kBrotli = 4, kLz4 = 5, kZstd = 6,
                       kLz4Raw = 7 };
/// parquet.thrift `PageType`.
enum PageType : int32_t { kDataPage = 0, kIndexPage = 1, kDictionaryPage = 2, kDataPageV2 = 3 };
/// parquet.thrift `ConvertedType` (the legacy annotations seqrec interprets).
enum ConvertedType : int32_t { kUtf8 = 0, kMap = 1, kMapKeyValue = 2, kList = 3, kEnum = 4, kDecimal = 5,
                               kDate = 6, kTimeMillis = 7, kTimeMicros = 8, kTimestampMillis = 9,
                               kTimestampMicros = 10, kUint8 = 11, kUint16 = 12, kUint32 = 13, kUint64 = 14,
                               kInt8 = 15, kInt16 = 16, kInt32Converted = 17, kInt64Converted = 18, kJson = 19,
                               kBson = 20, kInterval = 21 };
/// Field ids of the parquet.thrift `LogicalType` union members.
enum LogicalTypeId : int32_t { kLogicalNone = 0, kLogicalString = 1, kLogicalMap = 2, kLogicalList = 3,
                               kLogicalEnum = 4, kLogicalDecimal = 5, kLogicalDate = 6, kLogicalTime = 7,
                               kLogicalTimestamp = 8, kLogicalInteger = 10, kLogicalUnknown = 11,
                               kLogicalJson = 12, kLogicalBson = 13, kLogicalUuid = 14, kLogicalFloat16 = 15 };

/// The `LogicalType` union, flattened.
struct LogicalType {
  int32_t id = kLogicalNone;   ///< which member is set (LogicalTypeId, or an unknown field id)
  int32_t time_unit = 0;       ///< TIME / TIMESTAMP: 1 millis, 2 micros, 3 nanos
  bool adjusted_to_utc = false;  ///< TIME / TIMESTAMP
  int32_t bit_width = 0;       ///< INTEGER
  bool is_signed = true;       ///< INTEGER
  int32_t scale = 0;           ///< DECIMAL
  int32_t precision = 0;       ///< DECIMAL
};

/// `SchemaElement`: one node of the depth-first flattened schema tree.
struct SchemaElement {
  bool has_type = false;            ///< leaves have a physical type, groups do not
  int32_t type = 0;                 ///< Type
  int32_t type_length = 0;          ///< FIXED_LEN_BYTE_ARRAY width
  bool has_repetition = false;
  int32_t repetition = kRequired;   ///< Repetition (the root has none)
  std::string name;
  int32_t num_children = 0;         ///< > 0 for groups
  bool has_converted_type = false;
  int32_t converted_type = 0;       ///< ConvertedType
  int32_t scale = 0;
  int32_t precision = 0;
  LogicalType logical;              ///< id kLogicalNone when absent
};

/// `KeyValue` metadata pair.
struct KeyValue {
  std::string key;
  std::string value;
};

/// `ColumnMetaData`.
struct ColumnMetaData {
  int32_t type = 0;                      ///< Type
  std::vector<int32_t> encodings;        ///< Encoding values used in the chunk
  std::vector<std::string> path_in_schema;
  int32_t codec = kUncompressed;         ///< Codec
  int64_t num_values = 0;                ///< level entries (nulls included)
  int64_t total_uncompressed_size = 0;
  int64_t total_compressed_size = 0;     ///< bytes of all pages, headers included
  int64_t data_page_offset = 0;
  bool has_dictionary_page_offset = false;
  int64_t dictionary_page_offset = 0;
};

/// `ColumnChunk`.
struct ColumnChunk {
  std::string file_path;          ///< non-empty: the chunk lives in another file (refused)
  int64_t file_offset = 0;
  bool has_meta_data = false;
  ColumnMetaData meta_data;
  bool encrypted = false;         ///< crypto_metadata or encrypted_column_metadata present
};

/// `RowGroup`.
struct RowGroup {
  std::vector<ColumnChunk> columns;
  int64_t total_byte_size = 0;
  int64_t num_rows = 0;
};

/// `FileMetaData` (the footer).
struct FileMetaData {
  int32_t version = 1;
  std::vector<SchemaElement> schema;
  int64_t num_rows = 0;
  std::vector<RowGroup> row_groups;
  std::vector<KeyValue> key_value_metadata;
  std::string created_by;
  bool encrypted = false;         ///< encryption_algorithm present (plaintext-footer encryption)
};

/// `DataPageHeader` (v1).
struct DataPageHeader {
  int32_t num_values = 0;
  int32_t encoding = kPlain;
  int32_t definition_level_encoding = kRle;
  int32_t repetition_level_encoding = kRle;
};

/// `DataPageHeaderV2`.
struct DataPageHeaderV2 {
  int32_t num_values = 0;
  int32_t num_nulls = 0;
  int32_t num_rows = 0;
  int32_t encoding = kPlain;
  int32_t definition_levels_byte_length = 0;
  int32_t repetition_levels_byte_length = 0;
  bool is_compressed = true;
};

/// `DictionaryPageHeader`.
struct DictionaryPageHeader {
  int32_t num_values = 0;
  int32_t encoding = kPlain;
  bool is_sorted = false;
};

/// `PageHeader`.
struct PageHeader {
  int32_t type = kDataPage;               ///< PageType
  int32_t uncompressed_page_size = 0;
  int32_t compressed_page_size = 0;
  bool has_crc = false;
  int32_t crc = 0;                        ///< CRC-32 of the compressed page bytes
  bool has_data_page = false;
  DataPageHeader data_page;
  bool has_dictionary_page = false;
  DictionaryPageHeader dictionary_page;
  bool has_data_page_v2 = false;
  DataPageHeaderV2 data_page_v2;
};

/// Decodes a footer from exactly `size` bytes. Throws DataError ("malformed footer: ...").
FileMetaData decode_file_metadata(const uint8_t* data, size_t size);
/// Decodes a page header from the start of [data, data + size); `*header_size` gets its length.
/// Throws DataError ("malformed page header: ...").
PageHeader decode_page_header(const uint8_t* data, size_t size, size_t* header_size);

/// Encodes a footer (the fields above; unset optional ones omitted).
std::string encode_file_metadata(const FileMetaData& meta);
/// Encodes a page header.
std::string encode_page_header(const PageHeader& header);

}  // namespace seqrec::data::parquet::thrift
