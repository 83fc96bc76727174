// Thrift compact protocol for the Parquet footer and page headers: a bounds-checked reader that
// skips unknown fields, and a small writer for the fields seqrec emits.
#include "seqrec/data/parquet_thrift.h"

#include <cstring>

#include "seqrec/common/error.h"

namespace seqrec::data::parquet::thrift {
namespace {

// Compact protocol type ids.
enum CType : uint8_t { kStop = 0, kTrue = 1, kFalse = 2, kByte = 3, kI16 = 4, kI32 = 5, kI64 = 6, kDouble = 7,
                       kBinary = 8, kListT = 9, kSetT = 10, kMapT = 11, kStruct = 12 };

// Deeper nesting than this is not Parquet metadata: refuse instead of recursing without bound.
constexpr int kMaxDepth = 32;

class Reader {
 public:
  Reader(const uint8_t* data, size_t size, const char* what) : p_(data), begin_(data), end_(data + size), what_(what) {}

  size_t consumed() const { return static_cast<size_t>(p_ - begin_); }

  [[noreturn]] void fail(const std::string& why) const {
    throw DataError(std::string(what_) + ": " + why + " at byte " + std::to_string(consumed()));
  }

  uint8_t byte() {
    if (p_ >= end_) fail("unexpected end");
    return *p_++;
  }
  uint64_t varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      const uint8_t b = byte();
      v |= static_cast<uint64_t>(b & 0x7f) << shift;
      if ((b & 0x80) == 0) return v;
    }
    fail("varint longer than 10 bytes");
  }
  int64_t zigzag() {
    const uint64_t v = varint();
    return static_cast<int64_t>(v >> 1) ^ -static_cast<int64_t>(v & 1);
  }
  int32_t i32() {
    const int64_t v = zigzag();
    if (v < INT32_MIN || v > INT32_MAX) fail("i32 out of range");
    return static_cast<int32_t>(v);
  }
  std::string binary() {
    const uint64_t n = varint();
    if (n > static_cast<uint64_t>(end_ - p_)) fail("string length " + std::to_string(n) + " past the end");
    std::string s(reinterpret_cast<const char*>(p_), n);
    p_ += n;
    return s;
  }

  // Field header of a struct member; false at STOP. `last` carries the previous field id.
  bool field(int16_t& last, uint8_t& type, int16_t& id) {
    const uint8_t b = byte();
    type = b & 0x0f;
    if (type == kStop) return false;
    const uint8_t delta = b >> 4;
    if (delta != 0) {
      id = static_cast<int16_t>(last + delta);
    } else {
      const int64_t v = zigzag();
      if (v < INT16_MIN || v > INT16_MAX) fail("field id out of range");
      id = static_cast<int16_t>(v);
    }
    last = id;
    return true;
  }
  // List/set header: element type and size (checked against the bytes left: every element is >= 1 byte).
  void list(uint8_t& elem_type, uint64_t& size) {
    const uint8_t b = byte();
    elem_type = b & 0x0f;
    size = b >> 4;
    if (size == 15) size = varint();
    if (size > static_cast<uint64_t>(end_ - p_)) fail("list of " + std::to_string(size) + " past the end");
  }
  // Value of a boolean struct field (encoded in the type) or list element (one byte).
  static bool field_bool(uint8_t type) { return type == kTrue; }

  void skip(uint8_t type, int depth) {
    if (depth > kMaxDepth) fail("nesting too deep");
    switch (type) {
      case kTrue: case kFalse: return;
      case kByte: byte(); return;
      case kI16: case kI32: case kI64: varint(); return;
      case kDouble: advance(8); return;
      case kBinary: { const uint64_t n = varint(); advance(n); return; }
      case kListT: case kSetT: {
        uint8_t et; uint64_t n;
        list(et, n);
        for (uint64_t i = 0; i < n; ++i) skip_element(et, depth + 1);
        return;
      }
      case kMapT: {
        const uint64_t n = varint();
        if (n == 0) return;
        if (n > static_cast<uint64_t>(end_ - p_)) fail("map past the end");
        const uint8_t kv = byte();
        for (uint64_t i = 0; i < n; ++i) {
          skip_element(kv >> 4, depth + 1);
          skip_element(kv & 0x0f, depth + 1);
        }
        return;
      }
      case kStruct: {
        int16_t last = 0; uint8_t t; int16_t id;
        while (field(last, t, id)) skip(t, depth + 1);
        return;
      }
      default: fail("unknown compact type " + std::to_string(type));
    }
  }
  // List elements: booleans take one byte each.
  void skip_element(uint8_t type, int depth) {
    if (type == kTrue || type == kFalse) { byte(); return; }
    skip(type, depth);
  }
  void advance(uint64_t n) {
    if (n > static_cast<uint64_t>(end_ - p_)) fail("value past the end");
    p_ += n;
  }
  void expect(uint8_t got, uint8_t want, int16_t id) {
    if (got != want && !(want == kTrue && got == kFalse)) {
      fail("field " + std::to_string(id) + " has compact type " + std::to_string(got) + ", expected " +
           std::to_string(want));
    }
  }

 private:
  const uint8_t* p_;
  const uint8_t* begin_;
  const uint8_t* end_;
  const char* what_;
};

// Calls fn(type, id) for each field of a struct; fn returns false to have the field skipped.
template <typename Fn>
void read_struct(Reader& r, int depth, Fn fn) {
  if (depth > kMaxDepth) r.fail("nesting too deep");
  int16_t last = 0; uint8_t type; int16_t id;
  while (r.field(last, type, id)) {
    if (!fn(type, id)) r.skip(type, depth + 1);
  }
}

// Reads a list of structs or scalars: fn(elem_type) per element.
template <typename Fn>
void read_list(Reader& r, uint8_t type, int16_t id, uint8_t want_elem, Fn fn) {
  r.expect(type, kListT, id);
  uint8_t et; uint64_t n;
  r.list(et, n);
  if (n > 0 && et != want_elem) r.fail("list field " + std::to_string(id) + " has elements of the wrong type");
  for (uint64_t i = 0; i < n; ++i) fn();
}

int32_t get_i32(Reader& r, uint8_t type, int16_t id) { r.expect(type, kI32, id); return r.i32(); }
int64_t get_i64(Reader& r, uint8_t type, int16_t id) { r.expect(type, kI64, id); return r.zigzag(); }
std::string get_bin(Reader& r, uint8_t type, int16_t id) { r.expect(type, kBinary, id); return r.binary(); }
bool get_bool(Reader& r, uint8_t type, int16_t id) { r.expect(type, kTrue, id); return Reader::field_bool(type); }

// TimeUnit union: 1 MILLIS, 2 MICROS, 3 NANOS (empty structs).
int32_t read_time_unit(Reader& r, int depth) {
  int32_t unit = 0;
  read_struct(r, depth, [&](uint8_t, int16_t id) {
    if (id >= 1 && id <= 3) unit = id;
    return false;
  });
  return unit;
}

LogicalType read_logical(Reader& r, int depth) {
  LogicalType lt;
  read_struct(r, depth, [&](uint8_t type, int16_t id) {
    if (type != kStruct) return false;
    lt.id = id;
    if (id == kLogicalTime || id == kLogicalTimestamp) {
      read_struct(r, depth + 1, [&](uint8_t t, int16_t f) {
        if (f == 1) { lt.adjusted_to_utc = get_bool(r, t, f); return true; }
        if (f == 2 && t == kStruct) { lt.time_unit = read_time_unit(r, depth + 2); return true; }
        return false;
      });
      return true;
    }
    if (id == kLogicalInteger) {
      read_struct(r, depth + 1, [&](uint8_t t, int16_t f) {
        if (f == 1 && t == kByte) { lt.bit_width = static_cast<int8_t>(r.byte()); return true; }
        if (f == 2) { lt.is_signed = get_bool(r, t, f); return true; }
        return false;
      });
      return true;
    }
    if (id == kLogicalDecimal) {
      read_struct(r, depth + 1, [&](uint8_t t, int16_t f) {
        if (f == 1) { lt.scale = get_i32(r, t, f); return true; }
        if (f == 2) { lt.precision = get_i32(r, t, f); return true; }
        return false;
      });
      return true;
    }
    return false;  // other members are empty structs (or unknown): skipped, id recorded
  });
  return lt;
}

SchemaElement read_schema_element(Reader& r, int depth) {
  SchemaElement e;
  read_struct(r, depth, [&](uint8_t type, int16_t id) {
    switch (id) {
      case 1: e.type = get_i32(r, type, id); e.has_type = true; return true;
      case 2: e.type_length = get_i32(r, type, id); return true;
      case 3: e.repetition = get_i32(r, type, id); e.has_repetition = true; return true;
      case 4: e.name = get_bin(r, type, id); return true;
      case 5: e.num_children = get_i32(r, type, id); return true;
      case 6: e.converted_type = get_i32(r, type, id); e.has_converted_type = true; return true;
      case 7: e.scale = get_i32(r, type, id); return true;
      case 8: e.precision = get_i32(r, type, id); return true;
      case 10: r.expect(type, kStruct, id); e.logical = read_logical(r, depth + 1); return true;
      default: return false;
    }
  });
  return e;
}

ColumnMetaData read_column_meta(Reader& r, int depth) {
  ColumnMetaData m;
  read_struct(r, depth, [&](uint8_t type, int16_t id) {
    switch (id) {
      case 1: m.type = get_i32(r, type, id); return true;
      case 2: read_list(r, type, id, kI32, [&] { m.encodings.push_back(r.i32()); }); return true;
      case 3: read_list(r, type, id, kBinary, [&] { m.path_in_schema.push_back(r.binary()); }); return true;
      case 4: m.codec = get_i32(r, type, id); return true;
      case 5: m.num_values = get_i64(r, type, id); return true;
      case 6: m.total_uncompressed_size = get_i64(r, type, id); return true;
      case 7: m.total_compressed_size = get_i64(r, type, id); return true;
      case 9: m.data_page_offset = get_i64(r, type, id); return true;
      case 11: m.dictionary_page_offset = get_i64(r, type, id); m.has_dictionary_page_offset = true; return true;
      default: return false;
    }
  });
  return m;
}

ColumnChunk read_column_chunk(Reader& r, int depth) {
  ColumnChunk c;
  read_struct(r, depth, [&](uint8_t type, int16_t id) {
    switch (id) {
      case 1: c.file_path = get_bin(r, type, id); return true;
      case 2: c.file_offset = get_i64(r, type, id); return true;
      case 3: r.expect(type, kStruct, id); c.meta_data = read_column_meta(r, depth + 1); c.has_meta_data = true; return true;
      case 8: case 9: c.encrypted = true; return false;
      default: return false;
    }
  });
  return c;
}

RowGroup read_row_group(Reader& r, int depth) {
  RowGroup g;
  read_struct(r, depth, [&](uint8_t type, int16_t id) {
    switch (id) {
      case 1: read_list(r, type, id, kStruct, [&] { g.columns.push_back(read_column_chunk(r, depth + 1)); }); return true;
      case 2: g.total_byte_size = get_i64(r, type, id); return true;
      case 3: g.num_rows = get_i64(r, type, id); return true;
      default: return false;
    }
  });
  return g;
}

KeyValue read_key_value(Reader& r, int depth) {
  KeyValue kv;
  read_struct(r, depth, [&](uint8_t type, int16_t id) {
    if (id == 1) { kv.key = get_bin(r, type, id); return true; }
    if (id == 2) { kv.value = get_bin(r, type, id); return true; }
    return false;
  });
  return kv;
}

// ---- writer ----

class Writer {
 public:
  std::string out;

  void field(int16_t id, uint8_t type) {
    const int delta = id - last_;
    if (delta > 0 && delta <= 15) {
      out.push_back(static_cast<char>((delta << 4) | type));
    } else {
      out.push_back(static_cast<char>(type));
      zigzag(id);
    }
    last_ = id;
  }
  void varint(uint64_t v) {
    while (v >= 0x80) {
      out.push_back(static_cast<char>((v & 0x7f) | 0x80));
      v >>= 7;
    }
    out.push_back(static_cast<char>(v));
  }
  void zigzag(int64_t v) { varint((static_cast<uint64_t>(v) << 1) ^ static_cast<uint64_t>(v >> 63)); }
  void i32(int16_t id, int32_t v) { field(id, kI32); zigzag(v); }
  void i64(int16_t id, int64_t v) { field(id, kI64); zigzag(v); }
  void boolean(int16_t id, bool v) { field(id, v ? kTrue : kFalse); }
  void binary(const std::string& s) { varint(s.size()); out += s; }
  void binary(int16_t id, const std::string& s) { field(id, kBinary); binary(s); }
  void list(int16_t id, uint8_t elem_type, size_t n) {
    field(id, kListT);
    if (n < 15) {
      out.push_back(static_cast<char>((n << 4) | elem_type));
    } else {
      out.push_back(static_cast<char>(0xf0 | elem_type));
      varint(n);
    }
  }
  // Struct field or list element: push the field-id context; end_struct pops it.
  void begin_struct(int16_t id) { field(id, kStruct); begin_element(); }
  void begin_element() { stack_.push_back(last_); last_ = 0; }
  void end_struct() {
    out.push_back(static_cast<char>(kStop));
    last_ = stack_.back();
    stack_.pop_back();
  }

 private:
  int16_t last_ = 0;
  std::vector<int16_t> stack_;
};

void write_logical(Writer& w, const LogicalType& lt) {
  w.begin_struct(10);
  w.begin_struct(static_cast<int16_t>(lt.id));
  if (lt.id == kLogicalTimestamp || lt.id == kLogicalTime) {
    w.boolean(1, lt.adjusted_to_utc);
    w.begin_struct(2);
    w.begin_struct(static_cast<int16_t>(lt.time_unit));
    w.end_struct();
    w.end_struct();
  } else if (lt.id == kLogicalInteger) {
    w.field(1, kByte);
    w.out.push_back(static_cast<char>(lt.bit_width));
    w.boolean(2, lt.is_signed);
  } else if (lt.id == kLogicalDecimal) {
    w.i32(1, lt.scale);
    w.i32(2, lt.precision);
  }
  w.end_struct();
  w.end_struct();
}

void write_schema_element(Writer& w, const SchemaElement& e) {
  w.begin_element();
  if (e.has_type) w.i32(1, e.type);
  if (e.has_type && e.type == kFixedLenByteArray) w.i32(2, e.type_length);
  if (e.has_repetition) w.i32(3, e.repetition);
  w.binary(4, e.name);
  if (e.num_children > 0) w.i32(5, e.num_children);
  if (e.has_converted_type) w.i32(6, e.converted_type);
  if (e.logical.id != kLogicalNone) write_logical(w, e.logical);
  w.end_struct();
}

void write_column_chunk(Writer& w, const ColumnChunk& c) {
  w.begin_element();
  w.i64(2, c.file_offset);
  w.begin_struct(3);
  const ColumnMetaData& m = c.meta_data;
  w.i32(1, m.type);
  w.list(2, kI32, m.encodings.size());
  for (int32_t e : m.encodings) w.zigzag(e);
  w.list(3, kBinary, m.path_in_schema.size());
  for (const auto& p : m.path_in_schema) w.binary(p);
  w.i32(4, m.codec);
  w.i64(5, m.num_values);
  w.i64(6, m.total_uncompressed_size);
  w.i64(7, m.total_compressed_size);
  w.i64(9, m.data_page_offset);
  if (m.has_dictionary_page_offset) w.i64(11, m.dictionary_page_offset);
  w.end_struct();
  w.end_struct();
}

}  // namespace

FileMetaData decode_file_metadata(const uint8_t* data, size_t size) {
  Reader r(data, size, "malformed footer");
  FileMetaData m;
  bool has_schema = false, has_rows = false, has_groups = false;
  read_struct(r, 0, [&](uint8_t type, int16_t id) {
    switch (id) {
      case 1: m.version = get_i32(r, type, id); return true;
      case 2: read_list(r, type, id, kStruct, [&] { m.schema.push_back(read_schema_element(r, 1)); }); has_schema = true; return true;
      case 3: m.num_rows = get_i64(r, type, id); has_rows = true; return true;
      case 4: read_list(r, type, id, kStruct, [&] { m.row_groups.push_back(read_row_group(r, 1)); }); has_groups = true; return true;
      case 5: read_list(r, type, id, kStruct, [&] { m.key_value_metadata.push_back(read_key_value(r, 1)); }); return true;
      case 6: m.created_by = get_bin(r, type, id); return true;
      case 8: m.encrypted = true; return false;
      default: return false;
    }
  });
  if (!has_schema || !has_rows || !has_groups) r.fail("missing required field (schema, num_rows or row_groups)");
  return m;
}

PageHeader decode_page_header(const uint8_t* data, size_t size, size_t* header_size) {
  Reader r(data, size, "malformed page header");
  PageHeader h;
  bool has_type = false, has_sizes = false;
  read_struct(r, 0, [&](uint8_t type, int16_t id) {
    switch (id) {
      case 1: h.type = get_i32(r, type, id); has_type = true; return true;
      case 2: h.uncompressed_page_size = get_i32(r, type, id); return true;
      case 3: h.compressed_page_size = get_i32(r, type, id); has_sizes = true; return true;
      case 4: h.crc = get_i32(r, type, id); h.has_crc = true; return true;
      case 5:
        r.expect(type, kStruct, id);
        h.has_data_page = true;
        read_struct(r, 1, [&](uint8_t t, int16_t f) {
          DataPageHeader& d = h.data_page;
          switch (f) {
            case 1: d.num_values = get_i32(r, t, f); return true;
            case 2: d.encoding = get_i32(r, t, f); return true;
            case 3: d.definition_level_encoding = get_i32(r, t, f); return true;
            case 4: d.repetition_level_encoding = get_i32(r, t, f); return true;
            default: return false;
          }
        });
        return true;
      case 7:
        r.expect(type, kStruct, id);
        h.has_dictionary_page = true;
        read_struct(r, 1, [&](uint8_t t, int16_t f) {
          DictionaryPageHeader& d = h.dictionary_page;
          switch (f) {
            case 1: d.num_values = get_i32(r, t, f); return true;
            case 2: d.encoding = get_i32(r, t, f); return true;
            case 3: d.is_sorted = get_bool(r, t, f); return true;
            default: return false;
          }
        });
        return true;
      case 8:
        r.expect(type, kStruct, id);
        h.has_data_page_v2 = true;
        read_struct(r, 1, [&](uint8_t t, int16_t f) {
          DataPageHeaderV2& d = h.data_page_v2;
          switch (f) {
            case 1: d.num_values = get_i32(r, t, f); return true;
            case 2: d.num_nulls = get_i32(r, t, f); return true;
            case 3: d.num_rows = get_i32(r, t, f); return true;
            case 4: d.encoding = get_i32(r, t, f); return true;
            case 5: d.definition_levels_byte_length = get_i32(r, t, f); return true;
            case 6: d.repetition_levels_byte_length = get_i32(r, t, f); return true;
            case 7: d.is_compressed = get_bool(r, t, f); return true;
            default: return false;
          }
        });
        return true;
      default: return false;
    }
  });
  if (!has_type || !has_sizes) r.fail("missing type or compressed_page_size");
  *header_size = r.consumed();
  return h;
}

std::string encode_file_metadata(const FileMetaData& meta) {
  Writer w;
  w.i32(1, meta.version);
  w.list(2, kStruct, meta.schema.size());
  for (const auto& e : meta.schema) write_schema_element(w, e);
  w.i64(3, meta.num_rows);
  w.list(4, kStruct, meta.row_groups.size());
  for (const auto& g : meta.row_groups) {
    w.begin_element();
    w.list(1, kStruct, g.columns.size());
    for (const auto& c : g.columns) write_column_chunk(w, c);
    w.i64(2, g.total_byte_size);
    w.i64(3, g.num_rows);
    w.end_struct();
  }
  if (!meta.key_value_metadata.empty()) {
    w.list(5, kStruct, meta.key_value_metadata.size());
    for (const auto& kv : meta.key_value_metadata) {
      w.begin_element();
      w.binary(1, kv.key);
      w.binary(2, kv.value);
      w.end_struct();
    }
  }
  if (!meta.created_by.empty()) w.binary(6, meta.created_by);
  w.out.push_back(static_cast<char>(kStop));
  return w.out;
}

std::string encode_page_header(const PageHeader& h) {
  Writer w;
  w.i32(1, h.type);
  w.i32(2, h.uncompressed_page_size);
  w.i32(3, h.compressed_page_size);
  if (h.has_crc) w.i32(4, h.crc);
  if (h.has_data_page) {
    w.begin_struct(5);
    w.i32(1, h.data_page.num_values);
    w.i32(2, h.data_page.encoding);
    w.i32(3, h.data_page.definition_level_encoding);
    w.i32(4, h.data_page.repetition_level_encoding);
    w.end_struct();
  }
  if (h.has_dictionary_page) {
    w.begin_struct(7);
    w.i32(1, h.dictionary_page.num_values);
    w.i32(2, h.dictionary_page.encoding);
    w.end_struct();
  }
  if (h.has_data_page_v2) {
    w.begin_struct(8);
    const DataPageHeaderV2& d = h.data_page_v2;
    w.i32(1, d.num_values);
    w.i32(2, d.num_nulls);
    w.i32(3, d.num_rows);
    w.i32(4, d.encoding);
    w.i32(5, d.definition_levels_byte_length);
    w.i32(6, d.repetition_levels_byte_length);
    w.boolean(7, d.is_compressed);
    w.end_struct();
  }
  w.out.push_back(static_cast<char>(kStop));
  return w.out;
}

}  // namespace seqrec::data::parquet::thrift
