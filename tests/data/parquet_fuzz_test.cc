// Fuzzing the Parquet reader: thousands of seeded mutations (byte flips, truncations, inserted bytes)
// of small files must each read or throw DataError -- no crash, no other exception, no hang.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "seqrec/common/error.h"
#include "seqrec/common/fs.h"
#include "seqrec/data/parquet.h"
#include "seqrec/data/parquet_writer.h"
#include "support.h"

namespace seqrec::data::parquet {
namespace {

// A small file of every type the writer has, with nulls and lists.
std::string small_file(const testing::TempDir& dir, Compression codec, bool dictionary) {
  const std::string path = dir.file("seed_" + std::to_string(static_cast<int>(codec)) + (dictionary ? "d" : "p") + ".parquet");
  WriterOptions o;
  o.compression = codec;
  o.dictionary = dictionary;
  o.row_group_rows = 40;
  o.page_rows = 16;
  Writer w(path, {{"u", WriteType::kInt64, false}, {"i", WriteType::kInt32, true}, {"s", WriteType::kString, true},
                  {"d", WriteType::kDouble, false}, {"l", WriteType::kInt64List, true}}, o);
  std::vector<Column> b(5);
  b[0].physical = PhysicalType::kInt64;
  b[1].physical = PhysicalType::kInt32;
  b[2].physical = PhysicalType::kByteArray;
  b[2].byte_offsets = {0};
  b[3].physical = PhysicalType::kDouble;
  b[4].physical = PhysicalType::kInt64;
  b[4].is_list = true;
  b[4].list_offsets = {0};
  for (int r = 0; r < 100; ++r) {
    b[0].ints.push_back(r * 37);
    b[1].ints.push_back(r % 4);
    b[1].valid.push_back(r % 5 != 0);
    const std::string s = "v" + std::to_string(r % 6);
    b[2].bytes.insert(b[2].bytes.end(), s.begin(), s.end());
    b[2].byte_offsets.push_back(static_cast<int64_t>(b[2].bytes.size()));
    b[2].valid.push_back(r % 7 != 0);
    b[3].reals.push_back(r * 0.5);
    for (int k = 0; k < r % 4; ++k) b[4].ints.push_back(r + k);
    b[4].list_offsets.push_back(static_cast<int64_t>(b[4].ints.size()));
    b[4].list_valid.push_back(r % 9 != 1);
  }
  for (auto& c : b) c.num_rows = 100;
  w.write(b);
  w.close();
  return path;
}

std::string mutate(const std::string& in, std::mt19937_64& rng) {
  std::string s = in;
  const int edits = 1 + static_cast<int>(rng() % 3);
  for (int e = 0; e < edits && !s.empty(); ++e) {
    const size_t at = rng() % s.size();
    switch (rng() % 6) {
      case 0: case 1: s[at] = static_cast<char>(s[at] ^ (1u << (rng() % 8))); break;   // bit flip
      case 2: s[at] = static_cast<char>(rng()); break;                                 // byte set
      case 3: s.resize(at); break;                                                     // truncation
      case 4: s.insert(at, 1 + rng() % 4, static_cast<char>(rng())); break;             // inserted bytes
      default: s.erase(at, 1 + rng() % 4); break;                                      // deleted bytes
    }
  }
  return s;
}

TEST(ParquetFuzzTest, MutatedFilesReadOrFailWithDataError) {
  testing::TempDir dir;
  std::vector<std::string> seeds;
  for (auto codec : {Compression::kNone, Compression::kSnappy, Compression::kGzip, Compression::kZstd}) {
    seeds.push_back(read_file(small_file(dir, codec, codec == Compression::kNone || codec == Compression::kZstd)));
  }
  const std::string corpus = std::string(SEQREC_SOURCE_DIR) + "/../shared/datasets/parquet-testing/data/";
  for (const char* name : {"datapage_v2.snappy.parquet", "alltypes_dictionary.parquet", "list_columns.parquet",
                           "delta_encoding_optional_column.parquet", "rle_boolean_encoding.parquet"}) {
    if (std::filesystem::exists(corpus + name)) seeds.push_back(read_file(corpus + name));
  }
  // SEQREC_FUZZ_SEED / SEQREC_FUZZ_MUTATIONS: longer or different runs by hand (the suite uses the defaults).
  const char* seed_env = std::getenv("SEQREC_FUZZ_SEED");
  const char* count_env = std::getenv("SEQREC_FUZZ_MUTATIONS");
  std::mt19937_64 rng(seed_env ? std::strtoull(seed_env, nullptr, 10) : 20240519);
  const std::string path = dir.file("mutant.parquet");
  int ok = 0, refused = 0;
  const int kMutations = count_env ? std::atoi(count_env) : 3000;
  for (int i = 0; i < kMutations; ++i) {
    const std::string& seed = seeds[static_cast<size_t>(i) % seeds.size()];
    {
      std::ofstream out(path, std::ios::binary | std::ios::trunc);
      const std::string m = mutate(seed, rng);
      out.write(m.data(), static_cast<std::streamsize>(m.size()));
    }
    const auto start = std::chrono::steady_clock::now();
    try {
      File f = File::open(path);
      f.read_all({}, 1 + i % 2);
      ++ok;
    } catch (const DataError&) {
      ++refused;
    } catch (const std::exception& e) {
      FAIL() << "mutation " << i << ": not a DataError: " << e.what();
    }
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    ASSERT_LT(secs, 5.0) << "mutation " << i << " took " << secs << " s";
  }
  EXPECT_EQ(ok + refused, kMutations);
  EXPECT_GT(refused, kMutations / 10);  // the mutations do hit the decoder
}

}  // namespace
}  // namespace seqrec::data::parquet
