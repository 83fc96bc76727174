// Page compression for Parquet: the codecs seqrec reads and writes (none, snappy, gzip, zstd) and the
// page CRC-32. Shared by the reader and the writer; errors are plain messages the caller prefixes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace seqrec::data::parquet {

/// Whether `codec` (parquet.thrift CompressionCodec) is one seqrec can decompress.
bool codec_supported(int32_t codec);
/// The parquet.thrift name of a codec ("SNAPPY", "LZ4_RAW", ...; "codec N" when unknown).
std::string codec_name(int32_t codec);

/// Decompresses `size` bytes into exactly `out_size` bytes at `out`. Gzip input may hold several
/// concatenated members. Throws DataError ("<codec> page: ...") when the data does not decode to
/// exactly out_size bytes.
void decompress(int32_t codec, const uint8_t* data, size_t size, uint8_t* out, size_t out_size);

/// Compresses `data` with `codec` (UNCOMPRESSED, SNAPPY, GZIP or ZSTD) at `level` (0: the codec's default).
std::string compress(int32_t codec, const uint8_t* data, size_t size, int level);

/// CRC-32 (the zlib / gzip polynomial) of a page's bytes.
uint32_t page_crc32(const uint8_t* data, size_t size);

}  // namespace seqrec::data::parquet
