// The `seqrec semantic-ids` and `seqrec embed-items` commands end to end: a tiny generated .npy ->
// RQ-VAE -> index.json, metrics and summary; prepare -> embed-items (stories260K, skipped without
// ../shared) -> semantic-ids on its output; and the errors a user meets.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include "cli/cli_support.h"
#include "seqrec/semantic_id/embedding_file.h"
#include "seqrec/semantic_id/item_index.h"
#include "support.h"

namespace {

using seqrec::testing::TempDir;
using namespace seqrec::testing::cli;

const std::string kStories = SEQREC_SOURCE_DIR "/../shared/models/stories260K/hf";

// 8 clusters x 12 items in 12 dimensions as a version-1 float32 .npy file.
std::string write_clustered_npy(const TempDir& dir, const std::string& name) {
  torch::manual_seed(5);
  auto x = (torch::randn({8, 12}) * 2).repeat_interleave(12, 0);
  x = (x + 0.2 * torch::randn(x.sizes())).contiguous();                                  // [96, 12]
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (96, 12), }";
  while ((10 + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  std::string bytes = "\x93NUMPY";
  bytes += '\x01';
  bytes += '\x00';
  bytes += static_cast<char>(header.size() & 0xFF);
  bytes += static_cast<char>(header.size() >> 8);
  bytes += header;
  bytes.append(reinterpret_cast<const char*>(x.data_ptr<float>()), x.numel() * sizeof(float));
  return dir.write(name, bytes);
}

std::string sid_config(const TempDir& dir, const std::string& embeddings, const std::string& extra = "") {
  return dir.write("sid.yaml", "semantic_id:\n  embeddings: " + embeddings + "\n  dataset: Tiny\n  out_dir: " +
                                   dir.file("sid") + "\n  hidden_dims: [8]\n  code_dim: 4\n  levels: 3\n"
                                   "  num_codes: 8\n  batch_size: 64\n  epochs: 20\n  warmup_epochs: 1\n"
                                   "  eval_every: 5\n  lr: 0.003\n  threads: 1\n" + extra);
}

TEST(SemanticIdCliTest, TrainsWritesTheIndexAndReports) {
  TempDir dir;
  const std::string npy = write_clustered_npy(dir, "emb.npy");
  const Result r = run_seqrec("semantic-ids --config " + sid_config(dir, npy), dir);
  ASSERT_EQ(r.code, 0) << r.err;
  const auto summary = last_json(r.out);
  EXPECT_EQ(summary["items"], 96);
  EXPECT_EQ(summary["levels"], 3);
  EXPECT_EQ(summary["index"], dir.file("sid/Tiny.index.json"));
  EXPECT_LE(summary["collision_rate_after"].get<double>(), summary["collision_rate_before"].get<double>());
  // The index is LC-Rec's file: 96 rows, 3 tokens each, and its stats are the summary's.
  seqrec::semantic_id::IndexFileReport report;
  const auto index = seqrec::semantic_id::read_index_json(dir.file("sid/Tiny.index.json"), 96, &report);
  EXPECT_EQ(index.num_levels, 3);
  EXPECT_NEAR(report.collisions.rate(), summary["collision_rate_after"].get<double>(), 1e-6);
  EXPECT_EQ(summary["used_codes"], seqrec::semantic_id::used_codes_per_level(index.codes, 3));
  // metrics.jsonl: evaluations at epochs 5, 10, 15, 20.
  const auto lines = lines_of(slurp(dir.file("sid/metrics.jsonl")));
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_EQ(nlohmann::json::parse(lines[3])["epoch"], 20);
  EXPECT_EQ(nlohmann::json::parse(lines[3])["used_codes"].size(), 3u);
  // The resolved config (defaults included) and the checkpoint are next to it.
  const std::string config = slurp(dir.file("sid/config.yaml"));
  EXPECT_NE(config.find("sk_epsilons: [0.0, 0.0, 0.003]"), std::string::npos) << config;
  EXPECT_NE(config.find("schedule: linear"), std::string::npos);
  EXPECT_TRUE(std::filesystem::exists(dir.file("sid/rqvae.safetensors")));
  EXPECT_NE(r.err.find("collision rate"), std::string::npos);
}

TEST(SemanticIdCliTest, ConfigAndDataErrorsNameTheKeyOrFile) {
  TempDir dir;
  const std::string npy = write_clustered_npy(dir, "emb.npy");
  Result r = run_seqrec("semantic-ids --config " + sid_config(dir, npy, "  levls: 2\n"), dir);
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("semantic_id.levls: unknown key (did you mean 'levels'?)"), std::string::npos) << r.err;
  r = run_seqrec("semantic-ids --config " + sid_config(dir, npy) + " --set 'semantic_id.sk_epsilons=[0,0.1]'", dir);
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("semantic_id.sk_epsilons: needs one epsilon per level (3), got 2"), std::string::npos) << r.err;
  r = run_seqrec("semantic-ids --config " + sid_config(dir, npy) + " --set semantic_id.num_codes=128", dir);
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("semantic_id.num_codes: 128 codes per level cannot be seeded by k-means on a first batch of 64"),
            std::string::npos) << r.err;
  r = run_seqrec("semantic-ids --config " + sid_config(dir, dir.file("nothing.npy")), dir);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("cannot open " + dir.file("nothing.npy")), std::string::npos) << r.err;
  std::filesystem::create_directories(dir.file("data"));
  dir.write("data/items.tsv", "item_id\traw_id\ttitle\n1\tx\tX\n2\ty\tY\n");
  r = run_seqrec("semantic-ids --config " + sid_config(dir, npy, "  data_dir: " + dir.file("data") + "\n"), dir);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find(npy + ": has 96 rows, the prepared data " + dir.file("data") + " has 2 items"), std::string::npos)
      << r.err;
  EXPECT_FALSE(std::filesystem::exists(dir.file("sid/rqvae.safetensors")));
}

TEST(SemanticIdCliTest, EmbedItemsThenSemanticIdsOnAPreparedDataset) {
  if (!std::filesystem::exists(kStories + "/config.json")) GTEST_SKIP() << "no " << kStories;
  TempDir dir;
  std::string seqs, items = "item_id\tasin\ttitle\n";
  const char* words[] = {"red", "blue", "green", "small", "big", "soft", "bright", "dark"};
  for (int i = 1; i <= 40; ++i)
    items += std::to_string(i) + "\tA" + std::to_string(i) + "\t" + words[i % 8] + " " + words[(i / 8) % 8] +
             " thing number " + std::to_string(i) + "\n";
  for (int u = 1; u <= 30; ++u) {
    seqs += std::to_string(u);
    for (int k = 0; k < 5; ++k) seqs += " " + std::to_string((u * 7 + k * 3) % 40 + 1);
    seqs += "\n";
  }
  dir.write("seqs.txt", seqs);
  dir.write("items.tsv", items);
  Result r = run_seqrec("prepare --input " + dir.file("seqs.txt") + " --format user_sequences --items " +
                            dir.file("items.tsv") + " --items-format table --out " + dir.file("data"),
                        dir);
  ASSERT_EQ(r.code, 0) << r.err;
  r = run_seqrec("embed-items --model " + kStories + " --data " + dir.file("data") + " --fields title --out " +
                     dir.file("emb.safetensors") + " --batch-tokens 256",
                 dir);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(last_json(r.out)["dim"], 64);
  const int64_t v = last_json(r.out)["items"];
  auto emb = seqrec::semantic_id::read_embeddings(dir.file("emb.safetensors"));
  EXPECT_EQ(emb.sizes(), (std::vector<int64_t>{v, 64}));
  r = run_seqrec("embed-items --model " + kStories + " --data " + dir.file("data") + " --fields title,brand --out " +
                     dir.file("bad.safetensors"),
                 dir);
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("--fields: 'brand' is not a column of the item table (columns: asin, title)"), std::string::npos)
      << r.err;
  dir.write("sid2.yaml", "semantic_id:\n  embeddings: " + dir.file("emb.safetensors") + "\n  data_dir: " +
                             dir.file("data") + "\n  dataset: Toy\n  out_dir: " + dir.file("sid2") +
                             "\n  levels: 2\n  num_codes: 8\n  code_dim: 8\n  batch_size: 32\n  epochs: 10\n"
                             "  eval_every: 5\n  warmup_epochs: 1\n  threads: 1\n");
  r = run_seqrec("semantic-ids --config " + dir.file("sid2.yaml"), dir);
  ASSERT_EQ(r.code, 0) << r.err;
  // Automatic hidden dims for d = 64 and code_dim 8: 64 is not below d, so none: 64 -> 8.
  EXPECT_NE(r.err.find("RQ-VAE 64->8"), std::string::npos) << r.err;
  seqrec::semantic_id::read_index_json(dir.file("sid2/Toy.index.json"), v);
}

}  // namespace
