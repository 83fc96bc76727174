// Helpers of the LSVCR training tests: a synthetic two-behaviour store prepared in a scratch folder,
// and random text tables for it.
#pragma once

#include <torch/torch.h>

#include <cstdint>

#include "seqrec/data/lsvcr_data.h"
#include "seqrec/data/lsvcr_synth.h"
#include "seqrec/models/lsvcr.h"
#include "support.h"

namespace seqrec::testing {

/// `seqrec synth` (mode lsvcr) with `options` (its output set here), prepared, loaded and split.
struct SyntheticLsvcr {
  TempDir raw, prepared;
  data::LsvcrStore store;
  data::LsvcrSplits splits;

  explicit SyntheticLsvcr(data::LsvcrSynthOptions options) {
    options.output = raw.path();
    data::generate_lsvcr_synthetic(options);
    data::prepare_lsvcr(raw.path(), prepared.path());
    store = data::LsvcrStore::load(prepared.file(data::kLsvcrStoreFile));
    splits = data::split_lsvcr(store);
  }
};

/// Random title and comment embeddings of width `dim` (drawn from the current torch seed, videos
/// first) and the store's comment -> video and hot-comment maps.
inline models::LsvcrTextTables random_text_tables(const data::LsvcrStore& store, int64_t dim) {
  models::LsvcrTextTables t;
  t.video_title = torch::randn({store.num_videos + 1, dim});
  t.comment_text = torch::randn({store.num_comments + 1, dim});
  t.comment_video = torch::tensor(store.comment_video, torch::kInt64);
  t.video_hot_comment = torch::tensor(store.video_hot_comment, torch::kInt64);
  return t;
}

/// Synthesis options of the tests: users, videos, 3 topics, sections of min..max comments.
inline data::LsvcrSynthOptions small_lsvcr(int64_t users, int64_t videos, int64_t min_comments, int64_t max_comments) {
  data::LsvcrSynthOptions o;
  o.num_users = users;
  o.num_videos = videos;
  o.num_topics = 3;
  o.min_comments = min_comments;
  o.max_comments = max_comments;
  return o;
}

}  // namespace seqrec::testing
