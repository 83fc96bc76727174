// Most-popular through a checkpoint: its counts are a buffer, saved and loaded back, so a loaded
// model scores by the training counts it was built with (scoring itself: sasrec_test.cc's
// MostPop.ScoresEqualTrainingCounts, next to the registry's test).
#include "seqrec/models/most_pop.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "seqrec/config/config_node.h"
#include "seqrec/models/registry.h"
#include "seqrec/train/checkpoint.h"
#include "support.h"

namespace seqrec::models {
namespace {

ModelContext counts_context() {
  ModelContext c;
  c.num_items = 4;
  c.max_seq_len = 3;
  c.item_counts = {0, 5, 0, 9, 2};  // [V+1], row 0 padding
  return c;
}

/// Scores of every item for each row of `histories` ([B, W]): user state . item embeddings.
torch::Tensor scores(SequenceRecommenderImpl& m, const torch::Tensor& histories) {
  data::SequenceBatch b;
  b.item_ids = histories;
  b.last_only = true;
  auto h = m.encode(b);                                              // [B, 1 or W, D]
  return torch::matmul(h.select(1, h.size(1) - 1), m.all_item_embeddings().t());  // [B, V+1]
}

TEST(MostPop, ACheckpointKeepsTheCounts) {
  seqrec::testing::TempDir dir;
  auto model = make_model(config::ConfigNode::parse("name: most_pop\n"), counts_context());
  train::save_checkpoint(dir.file("pop.safetensors"), *model, "name: most_pop\n", counts_context());
  train::LoadedModel loaded = train::load_checkpoint(dir.file("pop.safetensors"));
  EXPECT_EQ(loaded.context.num_items, 4);
  auto s = scores(*loaded.model, torch::tensor({1, 2, 3}, torch::kLong).view({1, 3}));
  EXPECT_TRUE(s[0].allclose(torch::tensor({0.0f, 5.0f, 0.0f, 9.0f, 2.0f}))) << s;
}

}  // namespace
}  // namespace seqrec::models
