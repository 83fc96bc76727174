#include "seqrec/common/safetensors.h"

#include <gtest/gtest.h>

#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>

#include "seqrec/common/error.h"
#include "support.h"

namespace seqrec {
namespace {

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

/// A hand-made file: u64 LE header length, header text, data bytes.
std::string craft(const seqrec::testing::TempDir& dir, const std::string& name,
                  const std::string& header, const std::string& data, int64_t claimed_len = -1) {
  uint64_t n = claimed_len < 0 ? header.size() : static_cast<uint64_t>(claimed_len);
  std::string bytes(8, '\0');
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return dir.write(name, bytes + header + data);
}

TEST(SafetensorsTest, DtypeSizesAndNames) {
  EXPECT_EQ(dtype_size(StDtype::kF32), 4);
  EXPECT_EQ(dtype_size(StDtype::kF16), 2);
  EXPECT_EQ(dtype_size(StDtype::kBF16), 2);
  EXPECT_EQ(dtype_size(StDtype::kI64), 8);
  EXPECT_EQ(dtype_size(StDtype::kI32), 4);
  EXPECT_EQ(dtype_size(StDtype::kU8), 1);
  EXPECT_STREQ(dtype_name(StDtype::kBF16), "BF16");
  EXPECT_STREQ(dtype_name(StDtype::kI64), "I64");
}

TEST(SafetensorsTest, RoundTripTensorsAndMetadata) {
  seqrec::testing::TempDir dir;
  const std::string path = dir.file("m.safetensors");
  std::vector<float> w = {1.5f, -2.0f, 3.25f, 0.0f, 1e-3f, 7.0f};
  std::vector<int64_t> ids = {1, -2, 1LL << 40, 9};
  std::vector<uint8_t> flag = {7};
  // Deliberately unsorted: the writer sorts by name.
  write_safetensors(path,
                    {{"z.ids", StDtype::kI64, {4}, ids.data()},
                     {"a.weight", StDtype::kF32, {2, 3}, w.data()},
                     {"m.flag", StDtype::kU8, {}, flag.data()},
                     {"e.empty", StDtype::kF32, {0, 5}, nullptr}},
                    {{"format", "pt"}, {"model", "sasrec"}});
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp." + std::to_string(::getpid())));

  SafetensorsFile f = SafetensorsFile::open(path);
  EXPECT_EQ(f.path(), path);
  EXPECT_EQ(f.names(), (std::vector<std::string>{"a.weight", "e.empty", "m.flag", "z.ids"}));
  EXPECT_TRUE(f.contains("a.weight"));
  EXPECT_FALSE(f.contains("b"));
  EXPECT_EQ(f.metadata(), (std::map<std::string, std::string>{{"format", "pt"},
                                                              {"model", "sasrec"}}));

  const StTensorView& a = f.get("a.weight");
  EXPECT_EQ(a.dtype, StDtype::kF32);
  EXPECT_EQ(a.shape, (std::vector<int64_t>{2, 3}));
  ASSERT_EQ(a.nbytes, 24);
  std::vector<float> w2(6);
  std::memcpy(w2.data(), a.data, 24);
  EXPECT_EQ(w2, w);

  const StTensorView& z = f.get("z.ids");
  EXPECT_EQ(z.dtype, StDtype::kI64);
  ASSERT_EQ(z.nbytes, 32);
  std::vector<int64_t> ids2(4);
  std::memcpy(ids2.data(), z.data, 32);
  EXPECT_EQ(ids2, ids);

  EXPECT_EQ(f.get("m.flag").shape, std::vector<int64_t>{});
  EXPECT_EQ(f.get("m.flag").nbytes, 1);
  EXPECT_EQ(*static_cast<const uint8_t*>(f.get("m.flag").data), 7);
  EXPECT_EQ(f.get("e.empty").nbytes, 0);

  ASSERT_THROWS_WITH(f.get("nope"), path + ": missing tensor 'nope'");
}

TEST(SafetensorsTest, HeaderLayoutIsPaddedSortedAndContiguous) {
  seqrec::testing::TempDir dir;
  const std::string path = dir.file("layout.safetensors");
  std::vector<float> b = {1, 2, 3};        // 12 bytes
  std::vector<int64_t> a = {4, 5};         // 16 bytes
  std::vector<uint8_t> c = {1, 2, 3, 4, 5};  // 5 bytes
  write_safetensors(path,
                    {{"b", StDtype::kF32, {3}, b.data()},
                     {"c", StDtype::kU8, {5}, c.data()},
                     {"a", StDtype::kI64, {2}, a.data()}},
                    {{"k", "v"}});
  std::string bytes = read_bytes(path);
  ASSERT_GE(bytes.size(), 8u);
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= static_cast<uint64_t>(static_cast<uint8_t>(bytes[i])) << (8 * i);
  EXPECT_EQ(n % 8, 0u);
  ASSERT_EQ(bytes.size(), 8 + n + 16 + 12 + 5);
  std::string header = bytes.substr(8, n);
  // Padding is trailing spaces only.
  size_t last = header.find_last_not_of(' ');
  EXPECT_EQ(header[last], '}');
  EXPECT_LT(header.size() - last - 1, 8u);

  auto j = nlohmann::json::parse(header);
  EXPECT_EQ(j["__metadata__"]["k"], "v");
  EXPECT_EQ(j["a"]["dtype"], "I64");
  EXPECT_EQ(j["a"]["shape"], nlohmann::json::array({2}));
  EXPECT_EQ(j["a"]["data_offsets"], nlohmann::json::array({0, 16}));
  EXPECT_EQ(j["b"]["data_offsets"], nlohmann::json::array({16, 28}));
  EXPECT_EQ(j["c"]["data_offsets"], nlohmann::json::array({28, 33}));
  // Tensors appear in the header in name order.
  EXPECT_LT(header.find("\"a\""), header.find("\"b\""));
  EXPECT_LT(header.find("\"b\""), header.find("\"c\""));
  // The data block is a, b, c back to back.
  int64_t a0;
  std::memcpy(&a0, bytes.data() + 8 + n, 8);
  EXPECT_EQ(a0, 4);
  float b2;
  std::memcpy(&b2, bytes.data() + 8 + n + 16 + 8, 4);
  EXPECT_EQ(b2, 3.0f);
  EXPECT_EQ(bytes.back(), 5);
}

TEST(SafetensorsTest, OverwritesExistingFile) {
  seqrec::testing::TempDir dir;
  const std::string path = dir.write("o.safetensors", "old junk");
  std::vector<float> v = {2.0f};
  write_safetensors(path, {{"v", StDtype::kF32, {1}, v.data()}}, {});
  SafetensorsFile f = SafetensorsFile::open(path);
  EXPECT_TRUE(f.metadata().empty());
  EXPECT_EQ(*static_cast<const float*>(f.get("v").data), 2.0f);
}

TEST(SafetensorsTest, WriterRejectsDuplicateNames) {
  seqrec::testing::TempDir dir;
  std::vector<float> v = {1.0f};
  ASSERT_THROWS_WITH(write_safetensors(dir.file("d.safetensors"),
                                       {{"x", StDtype::kF32, {1}, v.data()},
                                        {"x", StDtype::kF32, {1}, v.data()}},
                                       {}),
                     "duplicate tensor name 'x'");
}

TEST(SafetensorsTest, TruncatedFiles) {
  seqrec::testing::TempDir dir;
  std::string tiny = dir.write("tiny.safetensors", "abcd");
  ASSERT_THROWS_WITH(SafetensorsFile::open(tiny), tiny + ": truncated");
  std::string empty = dir.write("empty.safetensors", "");
  ASSERT_THROWS_WITH(SafetensorsFile::open(empty), empty + ": truncated");
  // Header length claims more bytes than the file holds.
  std::string short_header = craft(dir, "short.safetensors", "{}      ", "", 1000);
  ASSERT_THROWS_WITH(SafetensorsFile::open(short_header), short_header + ": truncated");
  // A valid file cut in the middle of its data block.
  std::vector<float> v(16, 1.0f);
  std::string full = dir.file("cut.safetensors");
  write_safetensors(full, {{"v", StDtype::kF32, {16}, v.data()}}, {});
  std::string bytes = read_bytes(full);
  std::string cut = dir.write("cut.safetensors", bytes.substr(0, bytes.size() - 4));
  ASSERT_THROWS_WITH(SafetensorsFile::open(cut), cut + ": tensor 'v': ");
}

TEST(SafetensorsTest, MissingFile) {
  ASSERT_THROWS_WITH(SafetensorsFile::open("/nonexistent/m.safetensors"),
                     "/nonexistent/m.safetensors: cannot open");
}

TEST(SafetensorsTest, BadHeader) {
  seqrec::testing::TempDir dir;
  std::string p = craft(dir, "bad.safetensors", "{not json", "");
  ASSERT_THROWS_WITH(SafetensorsFile::open(p), p + ": bad header: ");
  std::string arr = craft(dir, "arr.safetensors", "[1, 2]  ", "");
  ASSERT_THROWS_WITH(SafetensorsFile::open(arr), arr + ": bad header: ");
  std::string no_dtype =
      craft(dir, "nodtype.safetensors", R"({"x":{"shape":[1],"data_offsets":[0,4]}})", "abcd");
  ASSERT_THROWS_WITH(SafetensorsFile::open(no_dtype), "tensor 'x': missing string 'dtype'");
  std::string meta = craft(dir, "meta.safetensors", R"({"__metadata__":{"a":1}})", "");
  ASSERT_THROWS_WITH(SafetensorsFile::open(meta), meta + ": bad header: ");
}

TEST(SafetensorsTest, UnsupportedDtype) {
  seqrec::testing::TempDir dir;
  std::string p = craft(dir, "f64.safetensors",
                        R"({"x":{"dtype":"F64","shape":[1],"data_offsets":[0,8]}})",
                        std::string(8, '\0'));
  ASSERT_THROWS_WITH(SafetensorsFile::open(p), p + ": unsupported dtype 'F64' for tensor 'x'");
}

TEST(SafetensorsTest, OffsetsOutOfRangeOrInconsistent) {
  seqrec::testing::TempDir dir;
  // Offsets run past the 4-byte data block.
  std::string past = craft(dir, "past.safetensors",
                           R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
                           std::string(4, '\0'));
  ASSERT_THROWS_WITH(SafetensorsFile::open(past), past + ": tensor 'x': ");
  ASSERT_THROWS_WITH(SafetensorsFile::open(past), "outside the data block of 4 bytes");
  // Span 8 bytes but shape [3] of F32 needs 12.
  std::string mismatch = craft(dir, "mismatch.safetensors",
                               R"({"x":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})",
                               std::string(12, '\0'));
  ASSERT_THROWS_WITH(SafetensorsFile::open(mismatch), mismatch + ": tensor 'x': ");
  ASSERT_THROWS_WITH(SafetensorsFile::open(mismatch), "needs 12");
  // begin > end.
  std::string reversed = craft(dir, "rev.safetensors",
                               R"({"x":{"dtype":"U8","shape":[0],"data_offsets":[4,0]}})",
                               std::string(4, '\0'));
  ASSERT_THROWS_WITH(SafetensorsFile::open(reversed), reversed + ": tensor 'x': ");
  // Negative shape entries are malformed.
  std::string neg = craft(dir, "neg.safetensors",
                          R"({"x":{"dtype":"U8","shape":[-1],"data_offsets":[0,0]}})", "");
  ASSERT_THROWS_WITH(SafetensorsFile::open(neg), neg + ": bad header: tensor 'x'");
}

// Issue 21, defect 6: a header length one short was accepted (the data read a byte off), and
// flipped bytes in the weights went unnoticed.
TEST(SafetensorsTest, DataBlockMustBeCoveredExactly) {
  seqrec::testing::TempDir dir;
  const std::string x = R"("x":{"dtype":"U8","shape":[4],"data_offsets":[0,4]})";
  // The header one byte short: its last padding space becomes a byte of the data block.
  const std::string padded = "{" + x + "}   ";
  std::string shifted = craft(dir, "shifted.safetensors", padded, "abcd", padded.size() - 1);
  ASSERT_THROWS_WITH(SafetensorsFile::open(shifted), shifted + ": ");
  ASSERT_THROWS_WITH(SafetensorsFile::open(shifted), "data block of 5 bytes");
  // A hole between two tensors.
  std::string hole = craft(dir, "hole.safetensors",
                           R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
                           R"("b":{"dtype":"U8","shape":[1],"data_offsets":[2,3]}})", "xyz");
  ASSERT_THROWS_WITH(SafetensorsFile::open(hole), "tensor 'b' begins at byte 2");
  // Two tensors over the same bytes.
  std::string overlap = craft(dir, "overlap.safetensors",
                              R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},)"
                              R"("b":{"dtype":"U8","shape":[2],"data_offsets":[1,3]}})", "xyz");
  ASSERT_THROWS_WITH(SafetensorsFile::open(overlap), "tensor 'b' begins at byte 1");
  // The header must be a JSON object starting at its first byte.
  std::string lead = craft(dir, "lead.safetensors", " {" + x + "}", "abcd");
  ASSERT_THROWS_WITH(SafetensorsFile::open(lead), lead + ": bad header: ");
  // Exactly covered (with zero-size tensors anywhere) is fine.
  std::string ok = craft(dir, "ok.safetensors",
                         R"({"e":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},)" + x + "}", "abcd");
  EXPECT_EQ(SafetensorsFile::open(ok).names().size(), 2u);
}

TEST(SafetensorsTest, ChecksumsCatchAFlippedByteAndForeignFilesStillLoad) {
  seqrec::testing::TempDir dir;
  const std::string path = dir.file("c.safetensors");
  std::vector<float> w = {1.5f, -2.0f, 3.25f, 0.0f};
  std::vector<int64_t> ids = {1, 2};
  write_safetensors(path, {{"w", StDtype::kF32, {4}, w.data()}, {"ids", StDtype::kI64, {2}, ids.data()}},
                    {{"format", "pt"}});
  // The checksums live in the file but are not part of the caller's metadata.
  const std::string bytes = read_bytes(path);
  EXPECT_NE(bytes.find("seqrec.checksums"), std::string::npos);
  EXPECT_EQ(SafetensorsFile::open(path).metadata(), (std::map<std::string, std::string>{{"format", "pt"}}));
  // One bit flipped in the last byte of the data block ("w" comes after "ids").
  std::string bad = bytes;
  bad.back() = static_cast<char>(bad.back() ^ 0x01);
  const std::string flipped = dir.write("flipped.safetensors", bad);
  ASSERT_THROWS_WITH(SafetensorsFile::open(flipped), flipped + ": tensor 'w': checksum mismatch");
  // A file without seqrec's checksums (written by Python, a Hugging Face model) still loads.
  std::string foreign = craft(dir, "foreign.safetensors",
                              R"({"__metadata__":{"format":"pt"},"x":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}})",
                              "ab");
  EXPECT_EQ(SafetensorsFile::open(foreign).names(), (std::vector<std::string>{"x"}));
}

}  // namespace
}  // namespace seqrec

namespace seqrec {
namespace {

// A Hugging Face folder's weight files: the single file, or each shard of the index once, sorted;
// a broken index or an empty folder named in the error.
TEST(HfWeightFilesTest, SingleFileOrTheIndexsShards) {
  testing::TempDir dir;
  ASSERT_THROWS_WITH(hf_weight_files(dir.path()),
                     dir.path() + ": neither model.safetensors nor model.safetensors.index.json found");
  dir.write("model.safetensors", "x");
  EXPECT_EQ(hf_weight_files(dir.path()), std::vector<std::string>{dir.file("model.safetensors")});
  dir.write("model.safetensors.index.json",
            R"({"metadata": {}, "weight_map": {"a": "m-00002.safetensors", "b": "m-00001.safetensors",
                "c": "m-00002.safetensors"}})");
  EXPECT_EQ(hf_weight_files(dir.path()),
            (std::vector<std::string>{dir.file("m-00001.safetensors"), dir.file("m-00002.safetensors")}));
  dir.write("model.safetensors.index.json", R"({"metadata": {}})");
  ASSERT_THROWS_WITH(hf_weight_files(dir.path()), dir.file("model.safetensors.index.json") + ": no 'weight_map'");
  dir.write("model.safetensors.index.json", R"({"weight_map": {"a": 3}})");
  ASSERT_THROWS_WITH(hf_weight_files(dir.path()), "weight_map['a'] is not a file name");
  dir.write("model.safetensors.index.json", "{");
  ASSERT_THROWS_WITH(hf_weight_files(dir.path()), dir.file("model.safetensors.index.json") + ": not valid JSON");
}

}  // namespace
}  // namespace seqrec
