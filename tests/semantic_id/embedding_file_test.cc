// Embedding matrices: .npy files written byte by byte (v1 and v2 headers, float32 and float16) and
// safetensors; the refusals name the file and what is wrong.
#include "seqrec/semantic_id/embedding_file.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstring>

#include "seqrec/train/checkpoint.h"
#include "support.h"

namespace seqrec::semantic_id {
namespace {

using seqrec::testing::TempDir;

// A .npy file: magic, version, header length (u16 for v1, u32 for v2), the header dict padded with
// spaces to a multiple of 64 and ending in '\n', then the raw data.
std::string npy_bytes(int major, const std::string& dict, const std::string& data) {
  const size_t prefix = 6 + 2 + (major == 1 ? 2 : 4);
  std::string header = dict;
  while ((prefix + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  std::string out = "\x93NUMPY";
  out += static_cast<char>(major);
  out += '\0';
  const uint32_t len = static_cast<uint32_t>(header.size());
  for (size_t i = 0; i < (major == 1 ? 2u : 4u); ++i) out += static_cast<char>((len >> (8 * i)) & 0xFF);
  return out + header + data;
}

std::string float_bytes(const std::vector<float>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
}

TEST(EmbeddingFileTest, ReadsNpyVersion1Float32) {
  TempDir dir;
  const std::vector<float> values = {1, 2, 3, 4, 5, 6.5f};
  const std::string path = dir.write(
      "e.npy", npy_bytes(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2), }", float_bytes(values)));
  auto t = read_embeddings(path);
  ASSERT_EQ(t.sizes(), (std::vector<int64_t>{3, 2}));
  EXPECT_EQ(t.scalar_type(), torch::kFloat);
  EXPECT_FLOAT_EQ(t[1][0].item<float>(), 3.0f);
  EXPECT_FLOAT_EQ(t[2][1].item<float>(), 6.5f);
}

TEST(EmbeddingFileTest, ReadsNpyVersion2Float16) {
  TempDir dir;
  // float16 1.0 = 0x3C00, -2.0 = 0xC000, 0.5 = 0x3800, 0 = 0x0000 (little endian)
  const std::string data = std::string("\x00\x3C\x00\xC0\x00\x38\x00\x00", 8);
  const std::string path =
      dir.write("h.npy", npy_bytes(2, "{'descr': '<f2', 'fortran_order': False, 'shape': (2, 2), }", data));
  auto t = read_embeddings(path);
  EXPECT_TRUE(torch::equal(t, torch::tensor({{1.0f, -2.0f}, {0.5f, 0.0f}})));
}

TEST(EmbeddingFileTest, RefusesWhatItCannotRead) {
  TempDir dir;
  const std::string six = float_bytes({1, 2, 3, 4, 5, 6});
  auto write = [&](const std::string& name, const std::string& dict, const std::string& data) {
    return dir.write(name, npy_bytes(1, dict, data));
  };
  std::string p = write("f.npy", "{'descr': '<f4', 'fortran_order': True, 'shape': (3, 2), }", six);
  ASSERT_THROWS_WITH(read_embeddings(p), p + ": Fortran-ordered arrays are not supported");
  p = write("d.npy", "{'descr': '<f8', 'fortran_order': False, 'shape': (3, 1), }", six);
  ASSERT_THROWS_WITH(read_embeddings(p), p + ": dtype '<f8' is not supported");
  p = write("b.npy", "{'descr': '>f4', 'fortran_order': False, 'shape': (3, 2), }", six);
  ASSERT_THROWS_WITH(read_embeddings(p), p + ": dtype '>f4' is not supported");
  p = write("v.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (6,), }", six);
  ASSERT_THROWS_WITH(read_embeddings(p), p + ": expected a 2-D array [items, dim], got 1 dimensions");
  p = write("t.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (4, 2), }", six);
  ASSERT_THROWS_WITH(read_embeddings(p), p + ": data is 24 bytes, shape (4, 2) needs 32 (truncated)");
  p = write("n.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2), }", float_bytes({1, NAN}));
  ASSERT_THROWS_WITH(read_embeddings(p), p + ": contains NaN or infinite values");
  std::string bad = npy_bytes(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2), }", six);
  bad[6] = 3;
  p = dir.write("v3.npy", bad);
  ASSERT_THROWS_WITH(read_embeddings(p), p + ": .npy format version 3 is not supported");
  p = dir.write("junk.bin", "not an array at all");
  ASSERT_THROWS_WITH(read_embeddings(p), "(expected a .npy or safetensors file)");
  ASSERT_THROWS_WITH(read_embeddings(dir.file("absent.npy")), "cannot open " + dir.file("absent.npy"));
}

TEST(EmbeddingFileTest, ReadsSafetensorsByNameOrTheOnlyTensor) {
  TempDir dir;
  auto a = torch::arange(6, torch::kFloat).view({3, 2});
  train::save_tensors(dir.file("one.safetensors"), {{"x", a.to(torch::kBFloat16)}}, {});
  EXPECT_TRUE(torch::equal(read_embeddings(dir.file("one.safetensors")), a));
  const std::string two = dir.file("two.safetensors");
  train::save_tensors(two, {{"emb", a}, {"ids", torch::arange(3)}}, {});
  EXPECT_TRUE(torch::equal(read_embeddings(two, "emb"), a));
  ASSERT_THROWS_WITH(read_embeddings(two), two + ": holds 2 tensors (emb, ids); name the embedding tensor");
  ASSERT_THROWS_WITH(read_embeddings(two, "ids"), two + ": tensor 'ids' has dtype I64, expected F32, F16 or BF16");
  ASSERT_THROWS_WITH(read_embeddings(two, "nope"), two + ": no tensor 'nope'");
  train::save_tensors(dir.file("v.safetensors"), {{"v", torch::ones({4})}}, {});
  ASSERT_THROWS_WITH(read_embeddings(dir.file("v.safetensors")), "expected a 2-D matrix [items, dim], got shape [4]");
}

}  // namespace
}  // namespace seqrec::semantic_id
