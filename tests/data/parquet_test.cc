// The Parquet reader against the parquet-testing corpus (../shared/datasets/parquet-testing): values as
// the corpus documents them (data/README.md, data/*.md, *_expect.csv); unsupported and malformed files refused.
#include "seqrec/data/parquet.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "seqrec/common/error.h"
#include "support.h"

namespace seqrec::data::parquet {
namespace {

std::string corpus_dir() {
  if (const char* env = std::getenv("SEQREC_PARQUET_TESTING")) return env;
  return std::string(SEQREC_SOURCE_DIR) + "/../shared/datasets/parquet-testing/data";
}

#define REQUIRE_CORPUS()                                                                   \
  do {                                                                                     \
    if (!std::filesystem::is_directory(corpus_dir())) {                                    \
      GTEST_SKIP() << "parquet-testing corpus not found at " << corpus_dir();              \
    }                                                                                      \
  } while (0)

std::string corpus(const std::string& name) { return corpus_dir() + "/" + name; }

Column read_column(const std::string& file, const std::string& column) {
  File f = File::open(corpus(file));
  auto cols = f.read_all({column}, 2);
  return std::move(cols[0]);
}

// Rows of a list column as text: "[1,2,3]", "null" for a null list, "null" elements inside.
std::vector<std::string> list_rows(const Column& c) {
  std::vector<std::string> out;
  for (int64_t r = 0; r < c.num_rows; ++r) {
    if (!c.list_valid.empty() && !c.list_valid[static_cast<size_t>(r)]) {
      out.push_back("null");
      continue;
    }
    std::string s = "[";
    for (int64_t k = c.list_offsets[static_cast<size_t>(r)]; k < c.list_offsets[static_cast<size_t>(r) + 1]; ++k) {
      if (s.size() > 1) s += ",";
      s += c.is_valid(k) ? format_slot(c, k) : "null";
    }
    out.push_back(s + "]");
  }
  return out;
}

// A flat column as text, "null" for nulls.
std::vector<std::string> flat_rows(const Column& c) {
  std::vector<std::string> out;
  for (int64_t r = 0; r < c.num_rows; ++r) out.push_back(c.is_valid(r) ? format_slot(c, r) : "null");
  return out;
}

// RFC 4180 CSV: quoted fields may hold commas; an empty unquoted field is a null ("\x01null").
std::vector<std::vector<std::string>> read_csv(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::vector<std::string>> rows;
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    std::vector<std::string> fields;
    std::string cur;
    bool quoted = false, was_quoted = false;
    for (size_t i = 0; i <= line.size(); ++i) {
      const char ch = i < line.size() ? line[i] : ',';
      if (quoted) {
        if (ch == '"' && i + 1 < line.size() && line[i + 1] == '"') {
          cur += '"';
          ++i;
        } else if (ch == '"') {
          quoted = false;
        } else {
          cur += ch;
        }
      } else if (ch == '"') {
        quoted = was_quoted = true;
      } else if (ch == ',') {
        fields.push_back(cur.empty() && !was_quoted ? "\x01null" : cur);
        cur.clear();
        was_quoted = false;
      } else {
        cur += ch;
      }
    }
    rows.push_back(fields);
  }
  return rows;
}

// Compares every column of `file` with `expect_csv`, column by position, value by value.
void expect_matches_csv(const std::string& file, const std::string& expect_csv) {
  File f = File::open(corpus(file));
  const auto csv = read_csv(corpus(expect_csv));
  ASSERT_GT(csv.size(), 1u);
  ASSERT_EQ(static_cast<int64_t>(csv.size()) - 1, f.num_rows()) << file;
  ASSERT_EQ(csv[0].size(), f.columns().size()) << file;
  const auto cols = f.read_all({}, 2);
  for (size_t c = 0; c < cols.size(); ++c) {
    for (int64_t r = 0; r < cols[c].num_rows; ++r) {
      const std::string& want = csv[static_cast<size_t>(r) + 1][c];
      const std::string got = cols[c].is_valid(r) ? format_slot(cols[c], r) : "\x01null";
      ASSERT_EQ(got, want) << file << " column " << cols[c].path << " row " << r;
    }
  }
}

TEST(ParquetCorpusTest, AlltypesPlainMatchesTheImpalaTable) {
  REQUIRE_CORPUS();
  File f = File::open(corpus("alltypes_plain.parquet"));
  EXPECT_EQ(f.num_rows(), 8);
  ASSERT_EQ(f.columns().size(), 11u);
  const auto cols = f.read_all({}, 1);
  EXPECT_EQ(cols[0].ints, (std::vector<int64_t>{4, 5, 6, 7, 2, 3, 0, 1}));
  EXPECT_EQ(flat_rows(cols[1]), (std::vector<std::string>{"true", "false", "true", "false", "true", "false", "true", "false"}));
  EXPECT_EQ(cols[5].ints, (std::vector<int64_t>{0, 10, 0, 10, 0, 10, 0, 10}));
  EXPECT_EQ(cols[6].reals[1], static_cast<double>(1.1f));
  EXPECT_EQ(cols[7].reals[1], 10.1);
  EXPECT_EQ(flat_rows(cols[8]), (std::vector<std::string>{"03/01/09", "03/01/09", "04/01/09", "04/01/09", "02/01/09",
                                                           "02/01/09", "01/01/09", "01/01/09"}));
  EXPECT_EQ(flat_rows(cols[9]), (std::vector<std::string>{"0", "1", "0", "1", "0", "1", "0", "1"}));
  // INT96 timestamps: 2009-03-01 00:00, 00:01, 2009-04-01 ..., as ns since the epoch.
  const ColumnSchema& ts = f.columns()[10];
  EXPECT_EQ(ts.physical, PhysicalType::kInt96);
  EXPECT_EQ(ts.logical, LogicalKind::kTimestamp);
  const int64_t s = 1000000000;
  EXPECT_EQ(cols[10].ints, (std::vector<int64_t>{1235865600 * s, 1235865660 * s, 1238544000 * s, 1238544060 * s,
                                                 1233446400 * s, 1233446460 * s, 1230768000 * s, 1230768060 * s}));
}

TEST(ParquetCorpusTest, AlltypesDictionaryAndSnappy) {
  REQUIRE_CORPUS();
  EXPECT_EQ(read_column("alltypes_dictionary.parquet", "id").ints, (std::vector<int64_t>{0, 1}));
  EXPECT_EQ(flat_rows(read_column("alltypes_dictionary.parquet", "string_col")), (std::vector<std::string>{"0", "1"}));
  EXPECT_EQ(read_column("alltypes_plain.snappy.parquet", "id").ints, (std::vector<int64_t>{6, 7}));
  EXPECT_EQ(read_column("alltypes_plain.snappy.parquet", "bigint_col").ints, (std::vector<int64_t>{0, 10}));
}

TEST(ParquetCorpusTest, DataPageV2WithNullsListsDeltaAndRleBooleans) {
  REQUIRE_CORPUS();
  File f = File::open(corpus("datapage_v2.snappy.parquet"));
  const auto cols = f.read_all({"a", "b", "c", "d", "e"}, 3);
  EXPECT_EQ(f.columns()[0].logical, LogicalKind::kString);
  EXPECT_EQ(flat_rows(cols[0]), (std::vector<std::string>{"abc", "abc", "abc", "null", "abc"}));
  EXPECT_EQ(cols[1].ints, (std::vector<int64_t>{1, 2, 3, 4, 5}));
  EXPECT_EQ(cols[2].reals, (std::vector<double>{2, 3, 4, 5, 2}));
  EXPECT_EQ(cols[3].ints, (std::vector<int64_t>{1, 1, 1, 0, 1}));
  EXPECT_EQ(list_rows(cols[4]), (std::vector<std::string>{"[1,2,3]", "null", "null", "[1,2,3]", "[1,2]"}));
}

TEST(ParquetCorpusTest, NullsInsideAStruct) {
  REQUIRE_CORPUS();
  const Column c = read_column("nulls.snappy.parquet", "b_struct.b_c_int");
  EXPECT_EQ(c.num_rows, 8);
  EXPECT_EQ(flat_rows(c), std::vector<std::string>(8, "null"));
}

TEST(ParquetCorpusTest, Int32WithNullPages) {
  REQUIRE_CORPUS();
  File f = File::open(corpus("int32_with_null_pages.parquet"));
  const Column c = f.read(0, "int32_field");
  ASSERT_EQ(c.num_rows, 1000);
  ASSERT_EQ(c.valid.size(), 1000u);
  // int32_with_null_pages.md: 275 nulls; page 2 (rows 200..299) all null; page 0 min / max.
  int64_t nulls = 0, lo = INT64_MAX, hi = INT64_MIN;
  for (int64_t r = 0; r < 1000; ++r) nulls += !c.is_valid(r);
  EXPECT_EQ(nulls, 275);
  for (int64_t r = 200; r < 300; ++r) EXPECT_FALSE(c.is_valid(r)) << r;
  for (int64_t r = 0; r < 100; ++r) {
    if (!c.is_valid(r)) continue;
    lo = std::min(lo, c.ints[static_cast<size_t>(r)]);
    hi = std::max(hi, c.ints[static_cast<size_t>(r)]);
  }
  EXPECT_EQ(lo, -2135807632);
  EXPECT_EQ(hi, 2144701119);
}

TEST(ParquetCorpusTest, ListColumnsNullListsAndNullElements) {
  REQUIRE_CORPUS();
  File f = File::open(corpus("list_columns.parquet"));
  EXPECT_TRUE(f.columns()[0].is_list);
  const auto cols = f.read_all({"int64_list", "utf8_list"}, 2);
  EXPECT_EQ(list_rows(cols[0]), (std::vector<std::string>{"[1,2,3]", "[null,1]", "[4]"}));
  EXPECT_EQ(list_rows(cols[1]), (std::vector<std::string>{"[abc,efg,hij]", "null", "[efg,null,hij,xyz]"}));
  // null_list.parquet: {"emptylist": []}.
  const Column empty = read_column("null_list.parquet", "emptylist");
  EXPECT_EQ(list_rows(empty), (std::vector<std::string>{"[]"}));
}

TEST(ParquetCorpusTest, TwoLevelAndUnannotatedRepeatedFields) {
  REQUIRE_CORPUS();
  // map_no_value.md: my_list rows [1,2,3] [4,5,6] [7,8,9]; my_map values all null.
  EXPECT_EQ(list_rows(read_column("map_no_value.parquet", "my_list")),
            (std::vector<std::string>{"[1,2,3]", "[4,5,6]", "[7,8,9]"}));
  EXPECT_EQ(list_rows(read_column("map_no_value.parquet", "my_map.key_value.value")),
            (std::vector<std::string>{"[null,null,null]", "[null,null,null]", "[null,null,null]"}));
  File f = File::open(corpus("repeated_primitive_no_list.parquet"));
  const auto cols = f.read_all({"Int32_list", "String_list", "group_of_lists.Int32_list_in_group"}, 1);
  EXPECT_EQ(list_rows(cols[0]), (std::vector<std::string>{"[0,1,2,3]", "[]", "[4]", "[5,6,7,8]"}));
  EXPECT_EQ(list_rows(cols[1]), (std::vector<std::string>{"[foo,zero,one,two]", "[three]", "[four]", "[five,six,seven,eight]"}));
  EXPECT_EQ(list_rows(cols[2]), list_rows(cols[0]));
}

TEST(ParquetCorpusTest, DeltaEncodingsMatchTheirExpectCsv) {
  REQUIRE_CORPUS();
  expect_matches_csv("delta_binary_packed.parquet", "delta_binary_packed_expect.csv");
  expect_matches_csv("delta_byte_array.parquet", "delta_byte_array_expect.csv");
  expect_matches_csv("delta_encoding_optional_column.parquet", "delta_encoding_optional_column_expect.csv");
  expect_matches_csv("delta_encoding_required_column.parquet", "delta_encoding_required_column_expect.csv");
}

TEST(ParquetCorpusTest, DeltaLengthByteArray) {
  REQUIRE_CORPUS();
  const Column c = read_column("delta_length_byte_array.parquet", "FRUIT");
  ASSERT_EQ(c.num_rows, 1000);
  for (int64_t i = 0; i < 1000; ++i) ASSERT_EQ(c.string_at(i), "apple_banana_mango" + std::to_string(i * i));
}

TEST(ParquetCorpusTest, ByteStreamSplitEqualsPlain) {
  REQUIRE_CORPUS();
  File f = File::open(corpus("byte_stream_split_extended.gzip.parquet"));
  for (const std::string kind : {"float16", "float", "double", "int32", "int64", "flba5", "decimal"}) {
    const auto cols = f.read_all({kind + "_plain", kind + "_byte_stream_split"}, 2);
    EXPECT_EQ(flat_rows(cols[0]), flat_rows(cols[1])) << kind;
    EXPECT_EQ(cols[0].num_rows, 200);
  }
  const auto z = File::open(corpus("byte_stream_split.zstd.parquet")).read_all({"f32", "f64"}, 1);
  EXPECT_EQ(z[0].num_rows, 300);
  EXPECT_EQ(z[1].num_rows, 300);
}

TEST(ParquetCorpusTest, ChecksummedPagesReadAndCorruptOnesAreRefused) {
  REQUIRE_CORPUS();
  const auto plain = File::open(corpus("datapage_v1-uncompressed-checksum.parquet")).read_all({}, 1);
  const auto snappy = File::open(corpus("datapage_v1-snappy-compressed-checksum.parquet")).read_all({}, 1);
  ASSERT_EQ(plain.size(), 2u);
  EXPECT_EQ(plain[0].num_rows, 5120);
  EXPECT_EQ(plain[0].ints, snappy[0].ints);
  EXPECT_EQ(plain[1].ints, snappy[1].ints);
  const auto rle = File::open(corpus("rle-dict-snappy-checksum.parquet")).read_all({}, 1);
  EXPECT_EQ(rle[1].string_at(0), "c95e263a-f5d4-401f-8107-5ca7146a1f98");
  const auto plain_dict = File::open(corpus("plain-dict-uncompressed-checksum.parquet")).read_all({}, 1);
  EXPECT_EQ(plain_dict[1].string_at(0), "a655fd0e-9949-4059-bcae-fd6a002a4652");
  EXPECT_EQ(plain_dict[0].ints[0], 0);
  File bad = File::open(corpus("datapage_v1-corrupt-checksum.parquet"));
  ASSERT_THROWS_WITH(bad.read(0, "a"), "column 'a' row group 0: page CRC mismatch");
  ASSERT_THROWS_WITH(bad.read(0, "b"), "page CRC mismatch");
  File bad_dict = File::open(corpus("rle-dict-uncompressed-corrupt-checksum.parquet"));
  ASSERT_THROWS_WITH(bad_dict.read_all({}, 2), "page CRC mismatch");
}

TEST(ParquetCorpusTest, CodecsAndPageEdgeCases) {
  REQUIRE_CORPUS();
  // 513 UINT64 values 1..513 in a page of two concatenated gzip members.
  const Column gz = read_column("concatenated_gzip_members.parquet", "long_col");
  ASSERT_EQ(gz.num_rows, 513);
  for (int64_t i = 0; i < 513; ++i) ASSERT_EQ(gz.ints[static_cast<size_t>(i)], i + 1);
  // v2 pages whose value section is empty (nothing to decompress) or an empty ZSTD frame.
  EXPECT_EQ(flat_rows(read_column("datapage_v2_empty_datapage.snappy.parquet", "value")), (std::vector<std::string>{"null"}));
  const Column empty = read_column("page_v2_empty_compressed.parquet", "integer_column");
  EXPECT_GT(empty.num_rows, 0);
  for (int64_t r = 0; r < empty.num_rows; ++r) EXPECT_FALSE(empty.is_valid(r));
  // A dictionary page whose dictionary_page_offset is stored as 0.
  const Column dict0 = read_column("dict-page-offset-zero.parquet", "l_partkey");
  EXPECT_EQ(dict0.ints.front(), 1552);
  // RLE-encoded booleans with nulls: true,false,null,true,true,false,false,true,true,true, ...
  const Column rle = read_column("rle_boolean_encoding.parquet", "datatype_boolean");
  const std::vector<std::string> all = flat_rows(rle);
  ASSERT_GE(all.size(), 10u);
  const std::vector<std::string> head(all.begin(), all.begin() + 10);
  EXPECT_EQ(head, (std::vector<std::string>{"true", "false", "null", "true", "true", "false", "false", "true", "true", "true"}));
  // More than INT16_MAX pages in one chunk.
  EXPECT_EQ(File::open(corpus("overflow_i16_page_cnt.parquet")).num_rows(), 40000);
}

TEST(ParquetCorpusTest, FixedLengthByteArrayDescendingWithNulls) {
  REQUIRE_CORPUS();
  const Column c = read_column("fixed_length_byte_array.parquet", "flba_field");
  ASSERT_EQ(c.num_rows, 1000);
  int64_t nulls = 0;
  for (int64_t r = 0; r < 1000; ++r) {
    if (!c.is_valid(r)) {
      ++nulls;
      continue;
    }
    const std::string b = c.string_at(r);
    ASSERT_EQ(b.size(), 4u);
    const int64_t v = (uint8_t(b[0]) << 24) | (uint8_t(b[1]) << 16) | (uint8_t(b[2]) << 8) | uint8_t(b[3]);
    ASSERT_EQ(v, 1000 - r) << r;
  }
  EXPECT_EQ(nulls, 105);
}

TEST(ParquetCorpusTest, UnsupportedFeaturesAreRefusedByName) {
  REQUIRE_CORPUS();
  ASSERT_THROWS_WITH(File::open(corpus("lz4_raw_compressed.parquet")).read_all({}, 1), "LZ4_RAW compression");
  ASSERT_THROWS_WITH(File::open(corpus("hadoop_lz4_compressed.parquet")).read_all({}, 1), "LZ4 compression");
  ASSERT_THROWS_WITH(File::open(corpus("large_string_map.brotli.parquet")).read_all({}, 1), "BROTLI compression");
  ASSERT_THROWS_WITH(File::open(corpus("nested_lists.snappy.parquet")).read_all({}, 1),
                     "column 'a.list.element.list.element.list.element' row group 0: unsupported feature: nested lists");
  // old_list_structure.md: LIST<LIST<INT32>> in the legacy 2-level form: two repeated levels.
  ASSERT_THROWS_WITH(File::open(corpus("old_list_structure.parquet")).read(0, "a"), "nested lists");
  // int96_from_spark.md: year 9999 and 290000 do not fit int64 nanoseconds.
  ASSERT_THROWS_WITH(File::open(corpus("int96_from_spark.parquet")).read(0, "a"), "outside the int64 nanosecond range");
  // The schema of refused columns is still listed.
  EXPECT_FALSE(File::open(corpus("old_list_structure.parquet")).columns()[0].unsupported.empty());
}

TEST(ParquetCorpusTest, MalformedDictionaryIsRefusedCleanly) {
  REQUIRE_CORPUS();
  try {
    File::open(corpus("nation.dict-malformed.parquet")).read_all({}, 2);
    FAIL() << "expected a DataError";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("nation.dict-malformed.parquet: column '"), std::string::npos) << e.what();
  }
}

// Every file either reads (with identical results for 1 and 3 threads) or throws DataError.
TEST(ParquetCorpusTest, EveryFileReadsOrFailsWithDataError) {
  REQUIRE_CORPUS();
  int read_ok = 0;
  for (const auto& entry : std::filesystem::directory_iterator(corpus_dir())) {
    if (entry.path().extension() != ".parquet") continue;
    const std::string name = entry.path().filename().string();
    try {
      File f = File::open(entry.path().string());
      const auto one = f.read_all({}, 1);
      const auto three = f.read_all({}, 3);
      ASSERT_EQ(one.size(), three.size());
      for (size_t c = 0; c < one.size(); ++c) {
        EXPECT_EQ(one[c].num_rows, f.num_rows()) << name;
        const auto text = [](const Column& col) { return col.is_list ? list_rows(col) : flat_rows(col); };
        EXPECT_EQ(text(one[c]), text(three[c])) << name;
        EXPECT_EQ(one[c].ints, three[c].ints) << name;
        EXPECT_EQ(one[c].bytes, three[c].bytes) << name;
        EXPECT_EQ(one[c].list_offsets, three[c].list_offsets) << name;
      }
      ++read_ok;
    } catch (const DataError&) {
      // refused cleanly
    } catch (const std::exception& e) {
      ADD_FAILURE() << name << ": not a DataError: " << e.what();
    }
  }
  EXPECT_GE(read_ok, 50);
}

}  // namespace
}  // namespace seqrec::data::parquet
