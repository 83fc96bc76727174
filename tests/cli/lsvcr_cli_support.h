// The small LSVCR data set of the CLI tests: synth (40 users, 16 videos, 4 topics, sections of up to
// 24 comments) and prepare through the CLI into <dir>/data, and random 8-wide text embeddings
// (seed 1) standing in for embed-items' output, <dir>/v.safetensors (videos) and c.safetensors.
#pragma once

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdint>
#include <fstream>
#include <string>

#include "cli/cli_support.h"
#include "seqrec/train/checkpoint.h"

namespace seqrec::testing::cli {

/// Makes the data set in `dir`; a failed command fails the calling test (check HasFatalFailure()).
/// `commenter`: a user added with one comment event (the first comment) and no video.
inline void make_small_lsvcr_data(const TempDir& dir, const std::string& commenter = "") {
  Result r = run_seqrec("synth --set synth.mode=lsvcr --set synth.num_users=40 --set synth.num_videos=16 "
                        "--set synth.num_topics=4 --set synth.max_comments=24 --out " + dir.file("raw"), dir);
  ASSERT_EQ(r.code, 0) << r.err;
  if (!commenter.empty()) {
    const std::string first = split_tabs(lines_of(slurp(dir.file("raw/comments.tsv"))).at(1)).at(0);
    std::ofstream(dir.file("raw/comment_history.tsv"), std::ios::app) << commenter << "\t" << first << "\t1\n";
  }
  r = run_seqrec("prepare --set prepare.format=lsvcr --input " + dir.file("raw") + " --out " + dir.file("data"), dir);
  ASSERT_EQ(r.code, 0) << r.err;
  const auto counts = last_json(r.out);
  torch::manual_seed(1);
  train::save_tensors(dir.file("v.safetensors"), {{"embeddings", torch::randn({counts["videos"].get<int64_t>(), 8})}}, {});
  train::save_tensors(dir.file("c.safetensors"), {{"embeddings", torch::randn({counts["comments"].get<int64_t>(), 8})}}, {});
}

}  // namespace seqrec::testing::cli
