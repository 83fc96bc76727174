// Parquet files: mapping, footer validation, the schema tree flattened to leaf columns, and
// row groups read in parallel.
#include "seqrec/data/parquet.h"


#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <exception>
#include <new>
#include <thread>

#include "seqrec/common/error.h"
#include "seqrec/common/mapped_file.h"
#include "seqrec/data/parquet_codec.h"
#include "seqrec/data/parquet_column.h"
#include "seqrec/data/parquet_thrift.h"

namespace seqrec::data::parquet {
namespace {

constexpr int kMaxSchemaDepth = 64;

bool is_bytes_type(PhysicalType t) { return t == PhysicalType::kByteArray || t == PhysicalType::kFixedLenByteArray; }
bool is_real_type(PhysicalType t) { return t == PhysicalType::kFloat || t == PhysicalType::kDouble; }

// The leaf's logical kind from its LogicalType, else its ConvertedType.
void set_logical(const thrift::SchemaElement& e, ColumnSchema& c) {
  const thrift::LogicalType& lt = e.logical;
  static const int64_t kUnitNs[] = {0, 1000000, 1000, 1};  // TimeUnit 1 millis, 2 micros, 3 nanos
  switch (lt.id) {
    case thrift::kLogicalString: case thrift::kLogicalEnum: case thrift::kLogicalJson:
      c.logical = LogicalKind::kString; return;
    case thrift::kLogicalTimestamp:
      c.logical = LogicalKind::kTimestamp;
      c.timestamp_unit_ns = lt.time_unit >= 1 && lt.time_unit <= 3 ? kUnitNs[lt.time_unit] : 0;
      c.timestamp_utc = lt.adjusted_to_utc;
      return;
    case thrift::kLogicalDate: c.logical = LogicalKind::kDate; return;
    case thrift::kLogicalInteger: c.logical = LogicalKind::kInteger; c.is_unsigned = !lt.is_signed; return;
    case thrift::kLogicalDecimal: c.logical = LogicalKind::kDecimal; return;
    case thrift::kLogicalNone: break;
    default: c.logical = LogicalKind::kOther; break;  // known or unknown annotation seqrec does not interpret
  }
  if (!e.has_converted_type) {
    if (c.physical == PhysicalType::kInt96) {
      c.logical = LogicalKind::kTimestamp;
      c.timestamp_unit_ns = 1;
    }
    return;
  }
  switch (e.converted_type) {
    case thrift::kUtf8: case thrift::kEnum: case thrift::kJson:
      c.logical = LogicalKind::kString; return;
    case thrift::kTimestampMillis:
      c.logical = LogicalKind::kTimestamp; c.timestamp_unit_ns = 1000000; c.timestamp_utc = true; return;
    case thrift::kTimestampMicros:
      c.logical = LogicalKind::kTimestamp; c.timestamp_unit_ns = 1000; c.timestamp_utc = true; return;
    case thrift::kDate: c.logical = LogicalKind::kDate; return;
    case thrift::kDecimal: c.logical = LogicalKind::kDecimal; return;
    case thrift::kUint8: case thrift::kUint16: case thrift::kUint32: case thrift::kUint64:
      c.logical = LogicalKind::kInteger; c.is_unsigned = true; return;
    case thrift::kInt8: case thrift::kInt16: case thrift::kInt32Converted: case thrift::kInt64Converted:
      c.logical = LogicalKind::kInteger; return;
    default:
      if (c.logical == LogicalKind::kNone) c.logical = LogicalKind::kOther;
      return;
  }
}

struct SchemaWalker {
  const std::vector<thrift::SchemaElement>& elems;
  std::vector<detail::LeafInfo>& leaves;
  size_t next = 1;  // element 0 is the root

  [[noreturn]] void fail(const std::string& why) const { throw DataError("malformed schema: " + why); }

  void walk(const std::string& prefix, const std::string& top, int def, int rep, int rep_def, int depth) {
    if (depth > kMaxSchemaDepth) fail("nested deeper than " + std::to_string(kMaxSchemaDepth) + " levels");
    if (next >= elems.size()) fail("fewer elements than num_children says");
    const thrift::SchemaElement& e = elems[next++];
    if (e.repetition == thrift::kOptional) {
      ++def;
    } else if (e.repetition == thrift::kRepeated) {
      ++def;
      ++rep;
      rep_def = def;
    } else if (e.repetition != thrift::kRequired) {
      fail("element '" + e.name + "' has repetition " + std::to_string(e.repetition));
    }
    const std::string path = prefix.empty() ? e.name : prefix + "." + e.name;
    const std::string& top_name = top.empty() ? e.name : top;
    if (e.num_children < 0) fail("element '" + e.name + "' has a negative number of children");
    if (e.num_children > 0 || !e.has_type) {
      if (static_cast<size_t>(e.num_children) > elems.size() - next) fail("element '" + e.name + "' has too many children");
      for (int i = 0; i < e.num_children; ++i) walk(path, top_name, def, rep, rep_def, depth + 1);
      return;
    }
    detail::LeafInfo leaf;
    ColumnSchema& c = leaf.schema;
    c.path = path;
    c.name = top_name;
    c.max_def = def;
    c.max_rep = rep;
    c.is_list = rep > 0;
    c.type_length = e.type_length;
    c.nullable = def > rep_def;
    leaf.rep_def = rep_def;
    if (e.type < 0 || e.type > thrift::kFixedLenByteArray) {
      c.unsupported = "physical type " + std::to_string(e.type);
      c.physical = PhysicalType::kByteArray;
    } else {
      c.physical = static_cast<PhysicalType>(e.type);
    }
    if (c.physical == PhysicalType::kFixedLenByteArray && e.type_length <= 0) {
      c.unsupported = "FIXED_LEN_BYTE_ARRAY with type_length " + std::to_string(e.type_length);
    }
    if (rep > 1) {
      c.unsupported = "nested lists (" + std::to_string(rep) + " repeated levels; one is supported)";
    }
    set_logical(e, c);
    leaves.push_back(std::move(leaf));
  }
};

}  // namespace

// ---- Column ----

int64_t Column::num_slots() const {
  if (is_bytes_type(physical)) return byte_offsets.empty() ? 0 : static_cast<int64_t>(byte_offsets.size()) - 1;
  if (is_real_type(physical)) return static_cast<int64_t>(reals.size());
  return static_cast<int64_t>(ints.size());
}

std::string Column::string_at(int64_t slot) const {
  const size_t i = static_cast<size_t>(slot);
  return std::string(bytes.data() + byte_offsets[i], bytes.data() + byte_offsets[i + 1]);
}

void append_rows(Column& dst, const Column& src, int64_t begin, int64_t end) {
  if (dst.num_rows == 0 && dst.num_slots() == 0) {
    dst.path = src.path;
    dst.physical = src.physical;
    dst.is_list = src.is_list;
  }
  const int64_t slot_begin = src.is_list ? src.list_offsets[static_cast<size_t>(begin)] : begin;
  const int64_t slot_end = src.is_list ? src.list_offsets[static_cast<size_t>(end)] : end;
  const int64_t dst_slots = dst.num_slots();
  if (src.is_list) {
    if (dst.list_offsets.empty()) dst.list_offsets.push_back(0);
    for (int64_t r = begin; r < end; ++r) {
      dst.list_offsets.push_back(dst_slots + src.list_offsets[static_cast<size_t>(r) + 1] - slot_begin);
    }
    if (!src.list_valid.empty() || !dst.list_valid.empty()) {
      dst.list_valid.resize(static_cast<size_t>(dst.num_rows), 1);
      if (src.list_valid.empty()) {
        dst.list_valid.resize(static_cast<size_t>(dst.num_rows + end - begin), 1);
      } else {
        dst.list_valid.insert(dst.list_valid.end(), src.list_valid.begin() + begin, src.list_valid.begin() + end);
      }
    }
  }
  if (!src.valid.empty() || !dst.valid.empty()) {
    dst.valid.resize(static_cast<size_t>(dst_slots), 1);
    if (src.valid.empty()) {
      dst.valid.resize(static_cast<size_t>(dst_slots + slot_end - slot_begin), 1);
    } else {
      dst.valid.insert(dst.valid.end(), src.valid.begin() + slot_begin, src.valid.begin() + slot_end);
    }
  }
  if (is_bytes_type(src.physical)) {
    if (dst.byte_offsets.empty()) dst.byte_offsets.push_back(0);
    const int64_t b0 = src.byte_offsets[static_cast<size_t>(slot_begin)];
    const int64_t b1 = src.byte_offsets[static_cast<size_t>(slot_end)];
    const int64_t shift = static_cast<int64_t>(dst.bytes.size()) - b0;
    dst.bytes.insert(dst.bytes.end(), src.bytes.begin() + b0, src.bytes.begin() + b1);
    for (int64_t s = slot_begin; s < slot_end; ++s) dst.byte_offsets.push_back(src.byte_offsets[static_cast<size_t>(s) + 1] + shift);
  } else if (is_real_type(src.physical)) {
    dst.reals.insert(dst.reals.end(), src.reals.begin() + slot_begin, src.reals.begin() + slot_end);
  } else {
    dst.ints.insert(dst.ints.end(), src.ints.begin() + slot_begin, src.ints.begin() + slot_end);
  }
  dst.num_rows += end - begin;
}

std::string format_slot(const Column& col, int64_t slot) {
  if (!col.is_valid(slot)) return "";
  const size_t i = static_cast<size_t>(slot);
  if (is_bytes_type(col.physical)) return col.string_at(slot);
  if (col.physical == PhysicalType::kBoolean) return col.ints[i] ? "true" : "false";
  char buf[64];
  if (is_real_type(col.physical)) {
    const auto r = std::to_chars(buf, buf + sizeof buf, col.reals[i]);
    return std::string(buf, r.ptr);
  }
  const auto r = std::to_chars(buf, buf + sizeof buf, col.ints[i]);
  return std::string(buf, r.ptr);
}

const char* physical_type_name(PhysicalType type) {
  static const char* const kNames[] = {"BOOLEAN", "INT32", "INT64", "INT96", "FLOAT", "DOUBLE", "BYTE_ARRAY",
                                       "FIXED_LEN_BYTE_ARRAY"};
  return kNames[static_cast<int>(type)];
}

// ---- File ----

struct File::Impl {
  std::string path;
  MappedFile file;
  thrift::FileMetaData meta;
  std::vector<detail::LeafInfo> leaves;
  std::vector<ColumnSchema> columns;

  const uint8_t* data() const { return file.data(); }
  size_t size() const { return file.size(); }
};

File File::open(const std::string& path) {
  auto impl = std::make_shared<Impl>();
  impl->path = path;
  impl->file = MappedFile::open(path);
  const size_t size = impl->file.size();
  if (size < 12) {
    throw DataError(path + ": not a Parquet file (" + std::to_string(size) + " bytes, at least 12 expected)");
  }
  const uint8_t* d = impl->data();
  if (std::memcmp(d + size - 4, "PARE", 4) == 0) {
    throw DataError(path + ": unsupported feature: encrypted footer (Parquet modular encryption)");
  }
  if (std::memcmp(d, "PAR1", 4) != 0 || std::memcmp(d + size - 4, "PAR1", 4) != 0) {
    throw DataError(path + ": not a Parquet file (no PAR1 magic at its start and end)");
  }
  uint32_t footer_len;
  std::memcpy(&footer_len, d + size - 8, 4);
  if (footer_len > size - 12) {
    throw DataError(path + ": truncated: footer of " + std::to_string(footer_len) + " bytes in a file of " +
                    std::to_string(size));
  }
  try {
    impl->meta = thrift::decode_file_metadata(d + size - 8 - footer_len, footer_len);
    const thrift::FileMetaData& m = impl->meta;
    if (m.encrypted) throw DataError("unsupported feature: encrypted columns (Parquet modular encryption)");
    if (m.schema.empty()) throw DataError("malformed schema: no root element");
    SchemaWalker walker{m.schema, impl->leaves};
    for (int i = 0; i < m.schema[0].num_children; ++i) walker.walk("", "", 0, 0, 0, 1);
    if (walker.next != m.schema.size()) throw DataError("malformed schema: elements outside the root's children");
    int64_t rows = 0;
    for (size_t g = 0; g < m.row_groups.size(); ++g) {
      const thrift::RowGroup& rg = m.row_groups[g];
      if (rg.columns.size() != impl->leaves.size()) {
        throw DataError("row group " + std::to_string(g) + " has " + std::to_string(rg.columns.size()) +
                        " column chunks, the schema " + std::to_string(impl->leaves.size()) + " leaf columns");
      }
      for (size_t c = 0; c < rg.columns.size(); ++c) {
        if (rg.columns[c].encrypted) {
          throw DataError("column '" + impl->leaves[c].schema.path +
                          "': unsupported feature: encrypted column chunk (Parquet modular encryption)");
        }
      }
      if (rg.num_rows < 0 || rg.num_rows > INT64_MAX - rows) throw DataError("row group " + std::to_string(g) + ": bad num_rows");
      rows += rg.num_rows;
    }
    // Some writers leave the footer's num_rows at 0: the row groups are what reading yields.
    impl->meta.num_rows = rows;
  } catch (const DataError& e) {
    throw DataError(path + ": " + e.what());
  }
  for (const auto& leaf : impl->leaves) impl->columns.push_back(leaf.schema);
  File f;
  f.impl_ = std::move(impl);
  return f;
}

const std::string& File::path() const { return impl_->path; }
const std::vector<ColumnSchema>& File::columns() const { return impl_->columns; }
int64_t File::num_rows() const { return impl_->meta.num_rows; }
int File::num_row_groups() const { return static_cast<int>(impl_->meta.row_groups.size()); }
int64_t File::row_group_rows(int row_group) const { return impl_->meta.row_groups.at(static_cast<size_t>(row_group)).num_rows; }
const std::string& File::created_by() const { return impl_->meta.created_by; }

int File::find_column(const std::string& path_or_name) const {
  const auto& cols = impl_->columns;
  for (size_t i = 0; i < cols.size(); ++i)
    if (cols[i].path == path_or_name) return static_cast<int>(i);
  int found = -1;
  for (size_t i = 0; i < cols.size(); ++i) {
    if (cols[i].name != path_or_name) continue;
    if (found >= 0) return -1;  // a group of several leaves: ambiguous
    found = static_cast<int>(i);
  }
  return found;
}

std::string File::chunk_codec(int row_group, int column) const {
  return codec_name(impl_->meta.row_groups.at(static_cast<size_t>(row_group)).columns.at(static_cast<size_t>(column)).meta_data.codec);
}

std::vector<std::string> File::chunk_encodings(int row_group, int column) const {
  static const char* const kNames[] = {"PLAIN", "GROUP_VAR_INT", "PLAIN_DICTIONARY", "RLE", "BIT_PACKED",
                                       "DELTA_BINARY_PACKED", "DELTA_LENGTH_BYTE_ARRAY", "DELTA_BYTE_ARRAY",
                                       "RLE_DICTIONARY", "BYTE_STREAM_SPLIT"};
  std::vector<std::string> out;
  const auto& meta = impl_->meta.row_groups.at(static_cast<size_t>(row_group)).columns.at(static_cast<size_t>(column)).meta_data;
  for (int32_t e : meta.encodings) out.push_back(e >= 0 && e < 10 ? kNames[e] : "encoding " + std::to_string(e));
  return out;
}

Column File::read(int row_group, const std::string& column) const {
  const Impl& im = *impl_;
  const int c = find_column(column);
  if (c < 0) {
    std::string names;
    for (const auto& s : im.columns) names += (names.empty() ? "" : ", ") + s.path;
    throw DataError(im.path + ": no column '" + column + "' (columns: " + names + ")");
  }
  if (row_group < 0 || row_group >= num_row_groups()) {
    throw DataError(im.path + ": no row group " + std::to_string(row_group) + " (" + std::to_string(num_row_groups()) + ")");
  }
  const detail::LeafInfo& leaf = im.leaves[static_cast<size_t>(c)];
  const std::string where = im.path + ": column '" + leaf.schema.path + "' row group " + std::to_string(row_group) + ": ";
  if (!leaf.schema.unsupported.empty()) throw DataError(where + "unsupported feature: " + leaf.schema.unsupported);
  const thrift::RowGroup& rg = im.meta.row_groups[static_cast<size_t>(row_group)];
  const thrift::ColumnChunk& chunk = rg.columns[static_cast<size_t>(c)];
  if (!chunk.file_path.empty()) throw DataError(where + "unsupported feature: column data in another file (" + chunk.file_path + ")");
  if (!chunk.has_meta_data) throw DataError(where + "column chunk without metadata");
  if (chunk.meta_data.type != static_cast<int32_t>(leaf.schema.physical)) {
    throw DataError(where + "chunk type " + std::to_string(chunk.meta_data.type) + " differs from the schema's " +
                    physical_type_name(leaf.schema.physical));
  }
  try {
    return detail::decode_chunk(im.data(), im.size(), chunk.meta_data, leaf, rg.num_rows);
  } catch (const DataError& e) {
    throw DataError(where + e.what());
  } catch (const std::bad_alloc&) {
    throw DataError(where + "out of memory decoding the chunk (corrupt value counts?)");
  }
}

std::vector<Column> File::read_all(const std::vector<std::string>& projection, int threads) const {
  std::vector<std::string> names = projection;
  if (names.empty())
    for (const auto& c : impl_->columns) names.push_back(c.path);
  for (const auto& n : names) {
    if (find_column(n) < 0) read(0, n);  // throws the "no column" error
  }
  const int groups = num_row_groups();
  std::vector<std::vector<Column>> parts(static_cast<size_t>(groups));
  std::vector<std::exception_ptr> errors(static_cast<size_t>(groups));
  std::atomic<int> next{0};
  auto work = [&] {
    for (int g = next++; g < groups; g = next++) {
      try {
        for (const auto& n : names) parts[static_cast<size_t>(g)].push_back(read(g, n));
      } catch (...) {
        errors[static_cast<size_t>(g)] = std::current_exception();
      }
    }
  };
  int n_threads = threads > 0 ? threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  n_threads = std::max(1, std::min(n_threads, groups));
  std::vector<std::thread> pool;
  for (int t = 1; t < n_threads; ++t) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();
  // The first failing row group's error, whatever the thread count.
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
  std::vector<Column> out(names.size());
  for (size_t i = 0; i < names.size(); ++i) {
    const ColumnSchema& s = impl_->columns[static_cast<size_t>(find_column(names[i]))];
    out[i].path = s.path;
    out[i].physical = s.physical;
    out[i].is_list = s.is_list;
    if (s.is_list) out[i].list_offsets.push_back(0);
    if (is_bytes_type(s.physical)) out[i].byte_offsets.push_back(0);
    size_t slots = 0, bytes = 0, rows = 0;
    for (int g = 0; g < groups; ++g) {
      const Column& part = parts[static_cast<size_t>(g)][i];
      slots += static_cast<size_t>(part.num_slots());
      bytes += part.bytes.size();
      rows += static_cast<size_t>(part.num_rows);
    }
    if (groups > 1) {
      if (is_bytes_type(s.physical)) {
        out[i].bytes.reserve(bytes);
        out[i].byte_offsets.reserve(slots + 1);
      } else if (is_real_type(s.physical)) {
        out[i].reals.reserve(slots);
      } else {
        out[i].ints.reserve(slots);
      }
      if (s.is_list) out[i].list_offsets.reserve(rows + 1);
    }
    for (int g = 0; g < groups; ++g) {
      Column& part = parts[static_cast<size_t>(g)][i];
      if (groups == 1) {
        out[i] = std::move(part);
        break;
      }
      append_rows(out[i], part, 0, part.num_rows);
      part = Column();
    }
  }
  return out;
}

}  // namespace seqrec::data::parquet
