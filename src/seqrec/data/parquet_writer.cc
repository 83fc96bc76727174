// Streaming Parquet writer: row groups buffered as Columns, encoded (PLAIN or RLE_DICTIONARY) into
// v1 data pages with RLE levels, compressed, and written behind a Thrift footer.
#include "seqrec/data/parquet_writer.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string_view>
#include <unordered_map>

#include "seqrec/common/error.h"
#include "seqrec/common/fs.h"
#include "seqrec/data/parquet_codec.h"
#include "seqrec/data/parquet_encoding.h"
#include "seqrec/data/parquet_thrift.h"

namespace seqrec::data::parquet {
namespace {

void put_u32(std::string& out, uint32_t v) { out.append(reinterpret_cast<const char*>(&v), 4); }

void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

// RLE / bit-packed hybrid: runs of >= 8 equal values as RLE runs, the rest bit-packed in groups of 8.
void rle_encode(const std::vector<uint32_t>& v, int bw, std::string& out) {
  std::vector<uint32_t> literals;
  auto flush_literals = [&] {
    if (literals.empty()) return;
    const size_t groups = (literals.size() + 7) / 8;
    literals.resize(groups * 8, 0);
    put_varint(out, (static_cast<uint64_t>(groups) << 1) | 1);
    uint64_t acc = 0;
    int nbits = 0;
    for (uint32_t x : literals) {
      acc |= static_cast<uint64_t>(x) << nbits;
      nbits += bw;
      while (nbits >= 8) {
        out.push_back(static_cast<char>(acc & 0xff));
        acc >>= 8;
        nbits -= 8;
      }
    }
    literals.clear();
  };
  const int value_bytes = (bw + 7) / 8;
  size_t i = 0;
  while (i < v.size()) {
    size_t j = i;
    while (j < v.size() && v[j] == v[i]) ++j;
    if (j - i >= 8) {
      // A bit-packed run must hold a multiple of 8 values: top it up from this run first.
      while (literals.size() % 8 != 0 && i < j) literals.push_back(v[i++]);
      flush_literals();
      if (j - i >= 8) {
        put_varint(out, static_cast<uint64_t>(j - i) << 1);
        for (int b = 0; b < value_bytes; ++b) out.push_back(static_cast<char>((v[i] >> (8 * b)) & 0xff));
      } else {
        literals.insert(literals.end(), v.begin() + static_cast<std::ptrdiff_t>(i), v.begin() + static_cast<std::ptrdiff_t>(j));
      }
    } else {
      literals.insert(literals.end(), v.begin() + static_cast<std::ptrdiff_t>(i), v.begin() + static_cast<std::ptrdiff_t>(j));
    }
    i = j;
  }
  flush_literals();
}

int32_t codec_of(Compression c) {
  switch (c) {
    case Compression::kNone: return thrift::kUncompressed;
    case Compression::kSnappy: return thrift::kSnappy;
    case Compression::kGzip: return thrift::kGzip;
    case Compression::kZstd: return thrift::kZstd;
  }
  return thrift::kUncompressed;
}

// One column chunk's values, levels and dictionary, ready to be cut into pages.
struct ChunkPlan {
  std::vector<uint32_t> rep, def;       // one per level entry (empty when the level is always 0)
  std::vector<int64_t> entry_row_end;   // per row: level entries up to and including it
  std::vector<int64_t> value_row_end;   // per row: present values up to and including it
  std::vector<int64_t> present;         // slot index of each present value
  bool use_dict = false;
  std::vector<uint32_t> indices;        // per present value, when use_dict
  std::vector<int64_t> dict_slots;      // slot of each dictionary entry's first occurrence
};

ChunkPlan drop_dictionary(ChunkPlan p) {
  p.indices.clear();
  p.dict_slots.clear();
  return p;
}

}  // namespace

Compression parse_compression(const std::string& name, const std::string& field) {
  if (name == "none" || name == "uncompressed") return Compression::kNone;
  if (name == "snappy") return Compression::kSnappy;
  if (name == "gzip") return Compression::kGzip;
  if (name == "zstd") return Compression::kZstd;
  throw ConfigError(field, "unknown compression '" + name + "' (none | snappy | gzip | zstd)");
}

struct Writer::Impl {
  std::string path, tmp;
  std::vector<WriteColumn> columns;
  WriterOptions options;
  std::FILE* file = nullptr;
  int64_t offset = 0;
  int64_t rows = 0;
  std::vector<Column> pending;
  int64_t pending_rows = 0;
  thrift::FileMetaData meta;

  void put(const std::string& bytes);
  void check_batch(const std::vector<Column>& batch) const;
  void flush_row_group();
  thrift::ColumnChunk write_chunk(const WriteColumn& wc, const Column& col);
  ChunkPlan plan(const WriteColumn& wc, const Column& col) const;
  std::string plain_values(const WriteColumn& wc, const Column& col, const int64_t* slots, size_t n) const;
  int64_t write_page(thrift::PageHeader header, const std::string& raw);
  void build_schema();
};

void Writer::Impl::put(const std::string& bytes) {
  if (!bytes.empty() && std::fwrite(bytes.data(), 1, bytes.size(), file) != bytes.size()) {
    throw Error("cannot write " + path + ": " + std::strerror(errno));
  }
  offset += static_cast<int64_t>(bytes.size());
}

void Writer::Impl::build_schema() {
  thrift::SchemaElement root;
  root.name = "schema";
  root.num_children = static_cast<int32_t>(columns.size());
  meta.schema.push_back(root);
  for (const auto& c : columns) {
    const int32_t rep = c.nullable ? thrift::kOptional : thrift::kRequired;
    if (c.type == WriteType::kInt64List) {
      thrift::SchemaElement list;
      list.name = c.name;
      list.has_repetition = true;
      list.repetition = rep;
      list.num_children = 1;
      list.has_converted_type = true;
      list.converted_type = thrift::kList;
      list.logical.id = thrift::kLogicalList;
      thrift::SchemaElement mid;
      mid.name = "list";
      mid.has_repetition = true;
      mid.repetition = thrift::kRepeated;
      mid.num_children = 1;
      thrift::SchemaElement elem;
      elem.name = "element";
      elem.has_type = true;
      elem.type = thrift::kInt64;
      elem.has_repetition = true;
      elem.repetition = thrift::kRequired;
      meta.schema.insert(meta.schema.end(), {list, mid, elem});
      continue;
    }
    thrift::SchemaElement e;
    e.name = c.name;
    e.has_type = true;
    e.has_repetition = true;
    e.repetition = rep;
    switch (c.type) {
      case WriteType::kInt64: e.type = thrift::kInt64; break;
      case WriteType::kInt32: e.type = thrift::kInt32; break;
      case WriteType::kDouble: e.type = thrift::kDouble; break;
      default:
        e.type = thrift::kByteArray;
        e.has_converted_type = true;
        e.converted_type = thrift::kUtf8;
        e.logical.id = thrift::kLogicalString;
        break;
    }
    meta.schema.push_back(e);
  }
}

void Writer::Impl::check_batch(const std::vector<Column>& batch) const {
  if (batch.size() != columns.size()) {
    throw DataError(path + ": batch of " + std::to_string(batch.size()) + " columns, the schema has " +
                    std::to_string(columns.size()));
  }
  for (size_t i = 0; i < batch.size(); ++i) {
    const WriteColumn& wc = columns[i];
    const Column& c = batch[i];
    auto bad = [&](const std::string& why) { throw DataError(path + ": column '" + wc.name + "': " + why); };
    if (c.num_rows != batch[0].num_rows) bad("holds " + std::to_string(c.num_rows) + " rows, the first column " + std::to_string(batch[0].num_rows));
    const bool list = wc.type == WriteType::kInt64List;
    if (c.is_list != list) bad(list ? "expected a list column" : "expected a flat column");
    if (list && static_cast<int64_t>(c.list_offsets.size()) != c.num_rows + 1) bad("list_offsets must have num_rows + 1 entries");
    if (list && (c.list_offsets.front() != 0 || c.list_offsets.back() != c.num_slots())) bad("list_offsets do not cover the values");
    if (list && !c.valid.empty()) bad("list elements cannot be null");
    if (!list && c.num_slots() != c.num_rows) bad("holds " + std::to_string(c.num_slots()) + " values for " + std::to_string(c.num_rows) + " rows");
    if (!wc.nullable && (!c.valid.empty() || !c.list_valid.empty())) bad("nulls in a non-nullable column");
    if (!c.valid.empty() && static_cast<int64_t>(c.valid.size()) != c.num_slots()) bad("valid must have one entry per value");
    if (!c.list_valid.empty() && static_cast<int64_t>(c.list_valid.size()) != c.num_rows) bad("list_valid must have one entry per row");
    const PhysicalType want = wc.type == WriteType::kDouble ? PhysicalType::kDouble
                              : wc.type == WriteType::kString ? PhysicalType::kByteArray
                              : wc.type == WriteType::kInt32 ? PhysicalType::kInt32 : PhysicalType::kInt64;
    const bool ints_ok = (want == PhysicalType::kInt64 || want == PhysicalType::kInt32) &&
                         (c.physical == PhysicalType::kInt64 || c.physical == PhysicalType::kInt32);
    if (c.physical != want && !ints_ok) bad(std::string("expected ") + physical_type_name(want) + " values");
    if (want == PhysicalType::kInt32) {
      for (int64_t v : c.ints)
        if (v < INT32_MIN || v > INT32_MAX) bad("value " + std::to_string(v) + " does not fit in INT32");
    }
  }
}

// Levels, present values and (optionally) the dictionary of one chunk.
ChunkPlan Writer::Impl::plan(const WriteColumn& wc, const Column& col) const {
  ChunkPlan p;
  const bool list = wc.type == WriteType::kInt64List;
  const int64_t rows = col.num_rows;
  p.entry_row_end.resize(static_cast<size_t>(rows));
  p.value_row_end.resize(static_cast<size_t>(rows));
  p.present.reserve(static_cast<size_t>(col.num_slots()));
  int64_t entries = 0;
  for (int64_t r = 0; r < rows; ++r) {
    if (list) {
      const bool null_list = !col.list_valid.empty() && !col.list_valid[static_cast<size_t>(r)];
      const int64_t b = col.list_offsets[static_cast<size_t>(r)], e = col.list_offsets[static_cast<size_t>(r) + 1];
      const uint32_t elem_def = wc.nullable ? 2 : 1;
      if (null_list || b == e) {
        p.rep.push_back(0);
        p.def.push_back(null_list ? 0 : elem_def - 1);
        ++entries;
      } else {
        for (int64_t s = b; s < e; ++s) {
          p.rep.push_back(s == b ? 0 : 1);
          p.def.push_back(elem_def);
          p.present.push_back(s);
          ++entries;
        }
      }
    } else {
      const bool ok = col.is_valid(r);
      if (wc.nullable) p.def.push_back(ok ? 1 : 0);
      if (ok) p.present.push_back(r);
      ++entries;
    }
    p.entry_row_end[static_cast<size_t>(r)] = entries;
    p.value_row_end[static_cast<size_t>(r)] = static_cast<int64_t>(p.present.size());
  }
  if (!options.dictionary || wc.type == WriteType::kDouble || p.present.empty()) return p;
  // Dictionary: distinct values in first-occurrence order; kept only when it halves the values.
  p.indices.reserve(p.present.size());
  const size_t limit = p.present.size() / 2;
  if (wc.type == WriteType::kString) {
    std::unordered_map<std::string_view, uint32_t> ids;
    for (int64_t s : p.present) {
      const size_t i = static_cast<size_t>(s);
      const std::string_view v(col.bytes.data() + col.byte_offsets[i], static_cast<size_t>(col.byte_offsets[i + 1] - col.byte_offsets[i]));
      auto [it, fresh] = ids.emplace(v, static_cast<uint32_t>(p.dict_slots.size()));
      if (fresh) p.dict_slots.push_back(s);
      p.indices.push_back(it->second);
      if (p.dict_slots.size() > limit) return drop_dictionary(std::move(p));
    }
  } else {
    std::unordered_map<int64_t, uint32_t> ids;
    for (int64_t s : p.present) {
      auto [it, fresh] = ids.emplace(col.ints[static_cast<size_t>(s)], static_cast<uint32_t>(p.dict_slots.size()));
      if (fresh) p.dict_slots.push_back(s);
      p.indices.push_back(it->second);
      if (p.dict_slots.size() > limit) return drop_dictionary(std::move(p));
    }
  }
  p.use_dict = true;
  return p;
}

// PLAIN bytes of the given slots.
std::string Writer::Impl::plain_values(const WriteColumn& wc, const Column& col, const int64_t* slots, size_t n) const {
  std::string out;
  switch (wc.type) {
    case WriteType::kInt64: case WriteType::kInt64List:
      out.resize(8 * n);
      for (size_t i = 0; i < n; ++i) std::memcpy(&out[8 * i], &col.ints[static_cast<size_t>(slots[i])], 8);
      break;
    case WriteType::kInt32:
      out.resize(4 * n);
      for (size_t i = 0; i < n; ++i) {
        const int32_t v = static_cast<int32_t>(col.ints[static_cast<size_t>(slots[i])]);
        std::memcpy(&out[4 * i], &v, 4);
      }
      break;
    case WriteType::kDouble:
      out.resize(8 * n);
      for (size_t i = 0; i < n; ++i) std::memcpy(&out[8 * i], &col.reals[static_cast<size_t>(slots[i])], 8);
      break;
    case WriteType::kString:
      for (size_t i = 0; i < n; ++i) {
        const size_t s = static_cast<size_t>(slots[i]);
        const int64_t len = col.byte_offsets[s + 1] - col.byte_offsets[s];
        put_u32(out, static_cast<uint32_t>(len));
        out.append(col.bytes.data() + col.byte_offsets[s], static_cast<size_t>(len));
      }
      break;
  }
  return out;
}

// Compresses a page body, fills sizes and CRC, writes header + body; returns the page's file offset.
int64_t Writer::Impl::write_page(thrift::PageHeader header, const std::string& raw) {
  const std::string body = compress(codec_of(options.compression), reinterpret_cast<const uint8_t*>(raw.data()), raw.size(),
                                    options.compression_level);
  header.uncompressed_page_size = static_cast<int32_t>(raw.size());
  header.compressed_page_size = static_cast<int32_t>(body.size());
  if (options.page_crc) {
    header.has_crc = true;
    header.crc = static_cast<int32_t>(page_crc32(reinterpret_cast<const uint8_t*>(body.data()), body.size()));
  }
  const int64_t at = offset;
  put(thrift::encode_page_header(header));
  put(body);
  return at;
}

thrift::ColumnChunk Writer::Impl::write_chunk(const WriteColumn& wc, const Column& col) {
  const ChunkPlan p = plan(wc, col);
  const bool list = wc.type == WriteType::kInt64List;
  thrift::ColumnChunk chunk;
  chunk.has_meta_data = true;
  thrift::ColumnMetaData& m = chunk.meta_data;
  m.type = wc.type == WriteType::kInt32 ? thrift::kInt32 : wc.type == WriteType::kDouble ? thrift::kDouble
           : wc.type == WriteType::kString ? thrift::kByteArray : thrift::kInt64;
  m.codec = codec_of(options.compression);
  m.path_in_schema = list ? std::vector<std::string>{wc.name, "list", "element"} : std::vector<std::string>{wc.name};
  m.encodings = p.use_dict ? std::vector<int32_t>{thrift::kPlain, thrift::kRle, thrift::kRleDictionary}
                           : std::vector<int32_t>{thrift::kPlain, thrift::kRle};
  const int64_t chunk_start = offset;
  int64_t uncompressed = 0;
  if (p.use_dict) {
    thrift::PageHeader h;
    h.type = thrift::kDictionaryPage;
    h.has_dictionary_page = true;
    h.dictionary_page.num_values = static_cast<int32_t>(p.dict_slots.size());
    h.dictionary_page.encoding = thrift::kPlain;
    const std::string raw = plain_values(wc, col, p.dict_slots.data(), p.dict_slots.size());
    m.has_dictionary_page_offset = true;
    m.dictionary_page_offset = write_page(h, raw);
    uncompressed += static_cast<int64_t>(raw.size());
  }
  const int dict_bits = detail::bit_width_of(p.dict_slots.empty() ? 0 : p.dict_slots.size() - 1);
  const int max_def = list ? (wc.nullable ? 2 : 1) : (wc.nullable ? 1 : 0);
  const int64_t rows = col.num_rows;
  m.data_page_offset = -1;
  for (int64_t r0 = 0; r0 < rows; r0 += options.page_rows) {
    const int64_t r1 = std::min(rows, r0 + options.page_rows);
    const int64_t e0 = r0 == 0 ? 0 : p.entry_row_end[static_cast<size_t>(r0 - 1)];
    const int64_t e1 = p.entry_row_end[static_cast<size_t>(r1 - 1)];
    const int64_t v0 = r0 == 0 ? 0 : p.value_row_end[static_cast<size_t>(r0 - 1)];
    const int64_t v1 = p.value_row_end[static_cast<size_t>(r1 - 1)];
    std::string raw;
    auto levels = [&](const std::vector<uint32_t>& lv, int max_level) {
      std::vector<uint32_t> part(lv.begin() + e0, lv.begin() + e1);
      std::string enc;
      rle_encode(part, detail::bit_width_of(static_cast<uint64_t>(max_level)), enc);
      put_u32(raw, static_cast<uint32_t>(enc.size()));
      raw += enc;
    };
    if (list) levels(p.rep, 1);
    if (max_def > 0) levels(p.def, max_def);
    if (p.use_dict) {
      raw.push_back(static_cast<char>(dict_bits));
      std::vector<uint32_t> part(p.indices.begin() + v0, p.indices.begin() + v1);
      rle_encode(part, dict_bits, raw);
    } else {
      raw += plain_values(wc, col, p.present.data() + v0, static_cast<size_t>(v1 - v0));
    }
    thrift::PageHeader h;
    h.type = thrift::kDataPage;
    h.has_data_page = true;
    h.data_page.num_values = static_cast<int32_t>(e1 - e0);
    h.data_page.encoding = p.use_dict ? thrift::kRleDictionary : thrift::kPlain;
    const int64_t at = write_page(h, raw);
    if (m.data_page_offset < 0) m.data_page_offset = at;
    uncompressed += static_cast<int64_t>(raw.size());
  }
  if (m.data_page_offset < 0) m.data_page_offset = offset;
  m.num_values = rows == 0 ? 0 : p.entry_row_end.back();
  m.total_compressed_size = offset - chunk_start;
  m.total_uncompressed_size = uncompressed;
  chunk.file_offset = chunk_start;
  return chunk;
}

void Writer::Impl::flush_row_group() {
  if (pending_rows == 0) return;
  thrift::RowGroup rg;
  rg.num_rows = pending_rows;
  const int64_t start = offset;
  for (size_t c = 0; c < columns.size(); ++c) rg.columns.push_back(write_chunk(columns[c], pending[c]));
  rg.total_byte_size = offset - start;
  meta.row_groups.push_back(std::move(rg));
  meta.num_rows += pending_rows;
  for (auto& c : pending) c = Column();
  pending_rows = 0;
}

Writer::Writer(const std::string& path, std::vector<WriteColumn> columns, const WriterOptions& options)
    : impl_(std::make_unique<Impl>()) {
  Impl& im = *impl_;
  im.path = path;
  clean_stale_temps(path);
  im.tmp = temp_path_for(path);
  im.columns = std::move(columns);
  im.options = options;
  if (im.columns.empty()) throw DataError(path + ": a Parquet file needs at least one column");
  if (options.row_group_rows < 1 || options.page_rows < 1) throw DataError(path + ": row_group_rows and page_rows must be >= 1");
  im.pending.resize(im.columns.size());
  im.build_schema();
  im.meta.created_by = "seqrec";
  im.file = std::fopen(im.tmp.c_str(), "wb");
  if (im.file == nullptr) throw Error("cannot write " + path + ": " + std::strerror(errno));
  im.put("PAR1");
}

Writer::~Writer() {
  if (impl_ && impl_->file != nullptr) {
    std::fclose(impl_->file);
    std::remove(impl_->tmp.c_str());
  }
}

void Writer::write(const std::vector<Column>& batch) {
  Impl& im = *impl_;
  if (im.file == nullptr) throw Error(im.path + ": write after close");
  im.check_batch(batch);
  const int64_t rows = batch.empty() ? 0 : batch[0].num_rows;
  int64_t r = 0;
  while (r < rows) {
    const int64_t take = std::min(rows - r, im.options.row_group_rows - im.pending_rows);
    for (size_t c = 0; c < batch.size(); ++c) append_rows(im.pending[c], batch[c], r, r + take);
    im.pending_rows += take;
    r += take;
    if (im.pending_rows == im.options.row_group_rows) im.flush_row_group();
  }
  im.rows += rows;
}

void Writer::close() {
  Impl& im = *impl_;
  if (im.file == nullptr) throw Error(im.path + ": already closed");
  im.flush_row_group();
  const std::string footer = thrift::encode_file_metadata(im.meta);
  im.put(footer);
  std::string tail;
  put_u32(tail, static_cast<uint32_t>(footer.size()));
  tail += "PAR1";
  im.put(tail);
  const bool flushed = std::fflush(im.file) == 0;
  const int e = errno;
  const bool closed = std::fclose(im.file) == 0;
  im.file = nullptr;
  if (!flushed || !closed) {
    std::remove(im.tmp.c_str());
    throw Error("cannot write " + im.path + ": " + std::strerror(flushed ? errno : e));
  }
  if (std::rename(im.tmp.c_str(), im.path.c_str()) != 0) {
    const int re = errno;
    std::remove(im.tmp.c_str());
    throw Error("cannot write " + im.path + ": rename failed: " + std::strerror(re));
  }
}

int64_t Writer::num_rows() const { return impl_->rows; }

}  // namespace seqrec::data::parquet
