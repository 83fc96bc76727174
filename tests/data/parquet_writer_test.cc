// The Parquet writer: files read back identically in seqrec's reader for every type, codec,
// null pattern and row-group split; bad batches refused; nothing left behind without close().
#include "seqrec/data/parquet_writer.h"

#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "seqrec/common/error.h"
#include "support.h"

namespace seqrec::data::parquet {
namespace {

const std::vector<WriteColumn> kSchema = {
    {"user", WriteType::kInt64, false},   {"item", WriteType::kInt32, false},  {"score", WriteType::kDouble, true},
    {"title", WriteType::kString, true},  {"seq", WriteType::kInt64List, true}, {"ts", WriteType::kInt64, true},
};

// A deterministic batch of `rows` rows starting at row `first`: nulls, empty strings, empty and null lists.
std::vector<Column> make_batch(int64_t first, int64_t rows, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<Column> b(kSchema.size());
  b[0].physical = PhysicalType::kInt64;
  b[1].physical = PhysicalType::kInt32;
  b[2].physical = PhysicalType::kDouble;
  b[3].physical = PhysicalType::kByteArray;
  b[3].byte_offsets.push_back(0);
  b[4].physical = PhysicalType::kInt64;
  b[4].is_list = true;
  b[4].list_offsets.push_back(0);
  b[5].physical = PhysicalType::kInt64;
  for (int64_t i = 0; i < rows; ++i) {
    const int64_t r = first + i;
    b[0].ints.push_back(r * 1000003 - (int64_t{1} << 40));
    b[1].ints.push_back(static_cast<int32_t>(rng() % 50) - 25);  // few distinct values: dictionary-friendly
    b[2].reals.push_back(r % 7 == 0 ? 0.0 : static_cast<double>(rng() % 100000) / 7.0);
    b[2].valid.push_back(r % 7 != 0);
    const std::string title = r % 5 == 0 ? "" : "item \"" + std::to_string(rng() % 30) + "\", ok";
    b[3].bytes.insert(b[3].bytes.end(), title.begin(), title.end());
    b[3].byte_offsets.push_back(static_cast<int64_t>(b[3].bytes.size()));
    b[3].valid.push_back(r % 11 != 3);
    const int64_t len = r % 13 == 0 ? 0 : static_cast<int64_t>(rng() % 6);
    for (int64_t k = 0; k < len; ++k) b[4].ints.push_back(static_cast<int64_t>(rng() % 1000));
    b[4].list_offsets.push_back(static_cast<int64_t>(b[4].ints.size()));
    b[4].list_valid.push_back(r % 17 != 4);
    b[5].ints.push_back(r % 3 == 0 ? 0 : 1700000000000 + r);
    b[5].valid.push_back(r % 3 != 0);
  }
  for (auto& c : b) c.num_rows = rows;
  return b;
}

// Normalizes null slots the way the reader fills them (0, empty), so batches compare equal.
Column normalized(Column c) {
  for (size_t i = 0; i < c.valid.size(); ++i) {
    if (c.valid[i]) continue;
    if (!c.ints.empty()) c.ints[i] = 0;
    if (!c.reals.empty()) c.reals[i] = 0;
  }
  if (!c.byte_offsets.empty() && !c.valid.empty()) {
    Column out = c;
    out.bytes.clear();
    out.byte_offsets.assign(1, 0);
    for (int64_t i = 0; i < c.num_slots(); ++i) {
      if (c.is_valid(i)) {
        const std::string s = c.string_at(i);
        out.bytes.insert(out.bytes.end(), s.begin(), s.end());
      }
      out.byte_offsets.push_back(static_cast<int64_t>(out.bytes.size()));
    }
    c = out;
  }
  // A null list holds no elements.
  if (c.is_list && !c.list_valid.empty()) {
    Column out = c;
    out.ints.clear();
    out.list_offsets.assign(1, 0);
    for (int64_t r = 0; r < c.num_rows; ++r) {
      if (c.list_valid[static_cast<size_t>(r)]) {
        out.ints.insert(out.ints.end(), c.ints.begin() + c.list_offsets[static_cast<size_t>(r)],
                        c.ints.begin() + c.list_offsets[static_cast<size_t>(r) + 1]);
      }
      out.list_offsets.push_back(static_cast<int64_t>(out.ints.size()));
    }
    c = out;
  }
  if (std::find(c.valid.begin(), c.valid.end(), 0) == c.valid.end()) c.valid.clear();
  if (std::find(c.list_valid.begin(), c.list_valid.end(), 0) == c.list_valid.end()) c.list_valid.clear();
  return c;
}

void expect_same(const Column& got, const Column& want, const std::string& what) {
  EXPECT_EQ(got.num_rows, want.num_rows) << what;
  EXPECT_EQ(got.ints, want.ints) << what;
  EXPECT_EQ(got.reals, want.reals) << what;
  EXPECT_EQ(got.bytes, want.bytes) << what;
  EXPECT_EQ(got.byte_offsets, want.byte_offsets) << what;
  EXPECT_EQ(got.valid, want.valid) << what;
  EXPECT_EQ(got.list_offsets, want.list_offsets) << what;
  EXPECT_EQ(got.list_valid, want.list_valid) << what;
}

// Writes `total` rows in batches of `batch_rows`; returns the concatenated input (normalized).
std::vector<Column> write_file(const std::string& path, const WriterOptions& o, int64_t total, int64_t batch_rows) {
  Writer w(path, kSchema, o);
  std::vector<Column> all(kSchema.size());
  for (int64_t r = 0; r < total; r += batch_rows) {
    const auto batch = make_batch(r, std::min(batch_rows, total - r), static_cast<uint64_t>(r) + 1);
    w.write(batch);
    for (size_t c = 0; c < batch.size(); ++c) append_rows(all[c], batch[c], 0, batch[c].num_rows);
  }
  EXPECT_EQ(w.num_rows(), total);
  w.close();
  for (auto& c : all) c = normalized(c);
  return all;
}

TEST(ParquetWriterTest, RoundTripsEveryTypeCodecAndRowGroupSplit) {
  testing::TempDir dir;
  for (Compression codec : {Compression::kNone, Compression::kSnappy, Compression::kGzip, Compression::kZstd}) {
    for (bool dictionary : {false, true}) {
      WriterOptions o;
      o.compression = codec;
      o.dictionary = dictionary;
      o.row_group_rows = 700;
      o.page_rows = 128;
      const std::string path = dir.file("t.parquet");
      const auto want = write_file(path, o, 2500, 333);
      File f = File::open(path);
      const std::string what = "codec " + std::to_string(static_cast<int>(codec)) + " dict " + std::to_string(dictionary);
      ASSERT_EQ(f.num_rows(), 2500) << what;
      ASSERT_EQ(f.num_row_groups(), 4) << what;  // 700 + 700 + 700 + 400
      EXPECT_EQ(f.row_group_rows(3), 400);
      EXPECT_EQ(f.columns()[3].logical, LogicalKind::kString);
      EXPECT_TRUE(f.columns()[4].is_list);
      EXPECT_EQ(f.columns()[4].path, "seq.list.element");
      EXPECT_EQ(f.find_column("seq"), 4);
      const auto got = f.read_all({}, 3);
      ASSERT_EQ(got.size(), want.size());
      for (size_t c = 0; c < got.size(); ++c) expect_same(got[c], want[c], what + " column " + kSchema[c].name);
      const auto encodings = f.chunk_encodings(0, 1);
      EXPECT_EQ(std::find(encodings.begin(), encodings.end(), "RLE_DICTIONARY") != encodings.end(), dictionary) << what;
    }
  }
}

TEST(ParquetWriterTest, ParallelReadEqualsOneThreadAndProjectionReadsOnlyNamedColumns) {
  testing::TempDir dir;
  WriterOptions o;
  o.row_group_rows = 1000;
  const std::string path = dir.file("p.parquet");
  write_file(path, o, 9500, 2048);
  File f = File::open(path);
  EXPECT_EQ(f.num_row_groups(), 10);
  const auto one = f.read_all({"seq", "title"}, 1);
  ASSERT_EQ(one.size(), 2u);
  EXPECT_EQ(one[0].path, "seq.list.element");
  for (int threads : {2, 4, 0}) {
    const auto many = f.read_all({"seq", "title"}, threads);
    for (size_t c = 0; c < 2; ++c) expect_same(many[c], one[c], "threads " + std::to_string(threads));
  }
}

TEST(ParquetWriterTest, EmptyFileAndSingleRow) {
  testing::TempDir dir;
  {
    Writer w(dir.file("e.parquet"), kSchema);
    w.close();
  }
  File e = File::open(dir.file("e.parquet"));
  EXPECT_EQ(e.num_rows(), 0);
  EXPECT_EQ(e.num_row_groups(), 0);
  EXPECT_EQ(e.read_all({"user"}, 2)[0].num_rows, 0);
  const auto want = write_file(dir.file("one.parquet"), WriterOptions{}, 1, 1);
  const auto got = File::open(dir.file("one.parquet")).read_all({}, 1);
  for (size_t c = 0; c < got.size(); ++c) expect_same(got[c], want[c], kSchema[c].name);
}

TEST(ParquetWriterTest, RefusesBatchesThatDoNotFitTheSchema) {
  testing::TempDir dir;
  const std::string path = dir.file("bad.parquet");
  {
    Writer w(path, kSchema);
    auto batch = make_batch(0, 10, 1);
    batch[0].valid.assign(10, 1);
    batch[0].valid[2] = 0;
    ASSERT_THROWS_WITH(w.write(batch), "column 'user': nulls in a non-nullable column");
    batch = make_batch(0, 10, 1);
    batch[1].ints[3] = int64_t{1} << 40;
    ASSERT_THROWS_WITH(w.write(batch), "column 'item': value 1099511627776 does not fit in INT32");
    batch = make_batch(0, 10, 1);
    batch.pop_back();
    ASSERT_THROWS_WITH(w.write(batch), "batch of 5 columns, the schema has 6");
    EXPECT_TRUE(std::filesystem::exists(path + ".tmp." + std::to_string(::getpid())));
  }
  // Never closed: neither the file nor its temp remains.
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp." + std::to_string(::getpid())));
  ASSERT_THROWS_WITH(parse_compression("lz4", "synth.compression"), "synth.compression: unknown compression 'lz4'");
}

}  // namespace
}  // namespace seqrec::data::parquet
