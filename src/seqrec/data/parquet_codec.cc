// Parquet page codecs over Debian's libsnappy, zlib and libzstd.
#include "seqrec/data/parquet_codec.h"

#include <snappy-c.h>
#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <climits>
#include <cstring>

#include "seqrec/common/error.h"
#include "seqrec/data/parquet_thrift.h"

namespace seqrec::data::parquet {
namespace {

void inflate_gzip(const uint8_t* data, size_t size, uint8_t* out, size_t out_size) {
  if (size > UINT_MAX || out_size > UINT_MAX) throw DataError("GZIP page: larger than 4 GiB");
  z_stream zs{};
  // 15 + 32: accept gzip and zlib headers.
  if (inflateInit2(&zs, 15 + 32) != Z_OK) throw DataError("GZIP page: cannot initialise zlib");
  zs.next_in = const_cast<Bytef*>(data);
  zs.avail_in = static_cast<uInt>(size);
  zs.next_out = out;
  zs.avail_out = static_cast<uInt>(out_size);
  int rc = Z_OK;
  // Concatenated gzip members: restart after each member's end while input remains.
  while (true) {
    rc = inflate(&zs, Z_FINISH);
    if (rc == Z_STREAM_END && zs.avail_in > 0 && zs.avail_out > 0) {
      if (inflateReset(&zs) != Z_OK) break;
      continue;
    }
    break;
  }
  const size_t produced = out_size - zs.avail_out;
  inflateEnd(&zs);
  if (rc != Z_STREAM_END) throw DataError("GZIP page: corrupt data (zlib code " + std::to_string(rc) + ")");
  if (produced != out_size) {
    throw DataError("GZIP page: decompressed to " + std::to_string(produced) + " bytes, header says " +
                    std::to_string(out_size));
  }
}

std::string deflate_gzip(const uint8_t* data, size_t size, int level) {
  z_stream zs{};
  // 15 + 16: write a gzip header (Parquet's GZIP codec is RFC 1952).
  if (deflateInit2(&zs, level == 0 ? Z_DEFAULT_COMPRESSION : level, Z_DEFLATED, 15 + 16, 8,
                   Z_DEFAULT_STRATEGY) != Z_OK) {
    throw Error("gzip: cannot initialise zlib");
  }
  std::string out(deflateBound(&zs, static_cast<uLong>(size)) + 32, '\0');
  zs.next_in = const_cast<Bytef*>(data);
  zs.avail_in = static_cast<uInt>(size);
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  const int rc = deflate(&zs, Z_FINISH);
  out.resize(out.size() - zs.avail_out);
  deflateEnd(&zs);
  if (rc != Z_STREAM_END) throw Error("gzip: compression failed");
  return out;
}

}  // namespace

bool codec_supported(int32_t codec) {
  return codec == thrift::kUncompressed || codec == thrift::kSnappy || codec == thrift::kGzip ||
         codec == thrift::kZstd;
}

std::string codec_name(int32_t codec) {
  static const char* const kNames[] = {"UNCOMPRESSED", "SNAPPY", "GZIP", "LZO", "BROTLI", "LZ4", "ZSTD", "LZ4_RAW"};
  if (codec >= 0 && codec < 8) return kNames[codec];
  return "codec " + std::to_string(codec);
}

void decompress(int32_t codec, const uint8_t* data, size_t size, uint8_t* out, size_t out_size) {
  switch (codec) {
    case thrift::kUncompressed:
      if (size != out_size) {
        throw DataError("uncompressed page: " + std::to_string(size) + " bytes, header says " +
                        std::to_string(out_size));
      }
      if (size > 0) std::memcpy(out, data, size);
      return;
    case thrift::kSnappy: {
      size_t n = 0;
      const char* in = reinterpret_cast<const char*>(data);
      if (snappy_uncompressed_length(in, size, &n) != SNAPPY_OK) throw DataError("SNAPPY page: corrupt length");
      if (n != out_size) {
        throw DataError("SNAPPY page: decompresses to " + std::to_string(n) + " bytes, header says " +
                        std::to_string(out_size));
      }
      if (snappy_uncompress(in, size, reinterpret_cast<char*>(out), &n) != SNAPPY_OK || n != out_size) {
        throw DataError("SNAPPY page: corrupt data");
      }
      return;
    }
    case thrift::kGzip:
      inflate_gzip(data, size, out, out_size);
      return;
    case thrift::kZstd: {
      const size_t n = ZSTD_decompress(out, out_size, data, size);
      if (ZSTD_isError(n)) throw DataError(std::string("ZSTD page: ") + ZSTD_getErrorName(n));
      if (n != out_size) {
        throw DataError("ZSTD page: decompressed to " + std::to_string(n) + " bytes, header says " +
                        std::to_string(out_size));
      }
      return;
    }
    default:
      throw DataError(codec_name(codec) + " compression is not supported");
  }
}

std::string compress(int32_t codec, const uint8_t* data, size_t size, int level) {
  switch (codec) {
    case thrift::kUncompressed:
      return std::string(reinterpret_cast<const char*>(data), size);
    case thrift::kSnappy: {
      size_t n = snappy_max_compressed_length(size);
      std::string out(n, '\0');
      if (snappy_compress(reinterpret_cast<const char*>(data), size, out.data(), &n) != SNAPPY_OK) {
        throw Error("snappy: compression failed");
      }
      out.resize(n);
      return out;
    }
    case thrift::kGzip:
      return deflate_gzip(data, size, level);
    case thrift::kZstd: {
      std::string out(ZSTD_compressBound(size), '\0');
      const size_t n = ZSTD_compress(out.data(), out.size(), data, size, level == 0 ? 3 : level);
      if (ZSTD_isError(n)) throw Error(std::string("zstd: ") + ZSTD_getErrorName(n));
      out.resize(n);
      return out;
    }
    default:
      throw Error("cannot write " + codec_name(codec) + " pages");
  }
}

uint32_t page_crc32(const uint8_t* data, size_t size) {
  uLong crc = crc32(0L, Z_NULL, 0);
  // zlib's crc32 takes a uInt length: feed pages over 4 GiB in pieces.
  while (size > 0) {
    const uInt n = static_cast<uInt>(std::min<size_t>(size, 1u << 30));
    crc = crc32(crc, data, n);
    data += n;
    size -= n;
  }
  return static_cast<uint32_t>(crc);
}

}  // namespace seqrec::data::parquet
