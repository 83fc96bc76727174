// LSVCR's two-behaviour data (systems.md §4): videos with titles, comments on videos, and per user a
// chronological video history and comment history. Read from a folder of four TSV files, prepared
// into a versioned binary store, and split into the samples of the two tasks.
//
// Input layout (`seqrec prepare --format lsvcr --input DIR`; every file tab-separated, with the
// header line shown; blank lines skipped; ids are free-form strings without tabs):
//   DIR/videos.tsv           video_id  title
//   DIR/comments.tsv         comment_id  video_id  text     (video_id must be in videos.tsv)
//   DIR/video_history.tsv    user_id  video_id  timestamp   (integer seconds; a video the user watched)
//   DIR/comment_history.tsv  user_id  comment_id  timestamp (a comment the user engaged with)
// A video's "hot comment" (its second text, after the title) is the first comment listed for it in
// comments.tsv; a video without comments has none (an all-zero text embedding).
//
// Prepared layout (under the output folder):
//   lsvcr.bin               the store below (magic, format version, counts, int64 arrays)
//   videos/items.tsv        item_id raw_id title        (dense video v = row v; `seqrec embed-items
//                                                        --data OUT/videos --fields title`)
//   comments/items.tsv      item_id raw_id text video   (dense comment c = row c; --fields text)
//   users.tsv               dense user index -> raw user id
//
// Dense ids: videos 1..V, comments 1..C, 0 = padding. Each user's events are sorted by timestamp
// (stable: equal timestamps keep file order).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace seqrec::data {

/// File name of the prepared two-behaviour store.
constexpr const char* kLsvcrStoreFile = "lsvcr.bin";

/// One user's events of one behaviour, in time order.
struct LsvcrHistory {
  std::vector<int64_t> ids;         ///< dense video or comment ids
  std::vector<int64_t> timestamps;  ///< non-decreasing
};

/// The prepared two-behaviour store (in memory).
struct LsvcrStore {
  int64_t num_videos = 0;                       ///< V
  int64_t num_comments = 0;                     ///< C
  std::vector<int64_t> comment_video;           ///< [C+1] video of each comment (0 at index 0)
  std::vector<int64_t> video_hot_comment;       ///< [V+1] first listed comment of each video, 0 = none
  std::vector<std::vector<int64_t>> video_comments;  ///< [V+1] the comment section of each video
  std::vector<LsvcrHistory> video_histories;    ///< [U] videos watched
  std::vector<LsvcrHistory> comment_histories;  ///< [U] comments engaged with

  int64_t num_users() const { return static_cast<int64_t>(video_histories.size()); }

  /// Writes the store to `path` atomically.
  void save(const std::string& path) const;
  /// Reads a store written by save(); throws DataError naming the file when the magic, version or
  /// size does not match.
  static LsvcrStore load(const std::string& path);
};

/// Counts of a prepare run.
struct LsvcrPrepareReport {
  int64_t num_users = 0;
  int64_t num_videos = 0;
  int64_t num_comments = 0;
  int64_t num_video_events = 0;
  int64_t num_comment_events = 0;
};

/// Reads the four input files of `input_dir` and writes the prepared layout into `output_dir` as
/// prepare writes its store: in a temp folder beside it, with an ownership marker
/// (".seqrec-owned", kind lsvcr-store) written last, swapped in atomically; an existing folder is
/// replaced only when empty or an earlier lsvcr output whose marker lists everything in it (else
/// ConfigError naming prepare.output). Throws DataError "<file>:<line>: ..." for a malformed line,
/// a duplicate id, a bad timestamp, or a reference to a video / comment that does not exist.
LsvcrPrepareReport prepare_lsvcr(const std::string& input_dir, const std::string& output_dir);

// ---- the two tasks' samples -------------------------------------------------------------------

/// One sample: the user's histories before the target time, and the target.
struct LsvcrSample {
  int64_t user = 0;            ///< dense user index
  int64_t video_end = 0;       ///< the video history is video_histories[user].ids[0, video_end)
  int64_t comment_end = 0;     ///< the comment history is comment_histories[user].ids[0, comment_end)
  int64_t target_video = 0;    ///< video task: the next video; comment task: the current video
  std::vector<int64_t> positive_comments;  ///< comment task: the comments engaged with (>= 1); video task: empty
};

/// The samples of one split.
struct LsvcrSplit {
  std::vector<LsvcrSample> video;    ///< next-video samples
  std::vector<LsvcrSample> comment;  ///< comment-ranking samples
};

/// The three splits.
struct LsvcrSplits {
  LsvcrSplit train, valid, test;
};

/// Splits every user leave-one-out on each task. Video task: the last video is the test target, the
/// second-to-last the validation target (users with >= 3 videos). Comment task: a "session" is a run
/// of consecutive comment events on one video; its comments are the positives and its video the
/// current video; the last session is the test sample, the second-to-last the validation one (users
/// with >= 3 sessions). Training samples are all earlier video targets and sessions that start
/// before the user's first held-out event (so no held-out event is ever a training input), each with
/// a non-empty video or comment history. Histories hold the events strictly before the sample's
/// time: for a video target the previous videos and the comments with an earlier timestamp; for a
/// session the previous comments and the videos with a timestamp not after the session's start (the
/// current video is watched before it is commented on).
LsvcrSplits split_lsvcr(const LsvcrStore& store);

}  // namespace seqrec::data
