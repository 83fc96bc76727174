// libFuzzer target: the Parquet reader (footer thrift, schema, row groups, pages, codecs, encodings,
// levels). The input is the whole file: it is opened, then every readable column of every row
// group is decoded and its slots formatted. DataError is expected; anything else is a finding, as
// is a decoded column whose offsets disagree with its values.
#include <cstdint>
#include <string>

#include "fuzz_support.h"
#include "seqrec/data/parquet.h"

namespace {

namespace pq = seqrec::data::parquet;

void check_column(const pq::Column& c, int64_t rows) {
  const int64_t slots = c.num_slots();
  if (!c.valid.empty() && static_cast<int64_t>(c.valid.size()) != slots) seqrec::fuzz::finding("valid size != slots");
  if (!c.byte_offsets.empty()) {
    if (static_cast<int64_t>(c.byte_offsets.size()) != slots + 1) seqrec::fuzz::finding("byte_offsets size");
    for (size_t i = 1; i < c.byte_offsets.size(); ++i) {
      if (c.byte_offsets[i] < c.byte_offsets[i - 1]) seqrec::fuzz::finding("byte_offsets decrease");
    }
    if (c.byte_offsets.back() != static_cast<int64_t>(c.bytes.size())) seqrec::fuzz::finding("byte_offsets end");
  }
  if (c.is_list) {
    if (static_cast<int64_t>(c.list_offsets.size()) != rows + 1) seqrec::fuzz::finding("list_offsets size != rows + 1");
    if (c.list_offsets.back() != slots) seqrec::fuzz::finding("list_offsets end != slots");
  }
  for (int64_t s = 0; s < slots && s < 4096; ++s) pq::format_slot(c, s);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& path = seqrec::fuzz::write_scratch(data, size);
  seqrec::fuzz::expect_ok_or_error([&] {
    const pq::File file = pq::File::open(path);
    for (int g = 0; g < file.num_row_groups(); ++g) {
      for (const pq::ColumnSchema& col : file.columns()) {
        if (!col.unsupported.empty()) continue;
        seqrec::fuzz::expect_ok_or_error([&] { check_column(file.read(g, col.path), file.row_group_rows(g)); });
      }
    }
  });
  return 0;
}
