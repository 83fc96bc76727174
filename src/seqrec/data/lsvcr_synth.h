// Synthetic two-behaviour data for LSVCR (`seqrec synth` with synth.mode: lsvcr), written in the
// input layout of data/lsvcr_data.h.
//
// Structure:
//  - videos belong to topics (video v: topic (v - 1) % num_topics) with a Zipf popularity inside
//    each topic; titles are drawn from the topic's words;
//  - every video has a comment section of min..max_comments comments; each comment has a style
//    (one of num_styles) and its text is drawn from the style's words and the video's topic words;
//  - each user walks through interest phases (a topic each, phase_len videos); liked videos come
//    from the phase's topic (else a popular video of any topic);
//  - comment preferences correlate with video preferences: the user's favourite comment style is the
//    style of their first topic (topic % num_styles) with probability style_follows_topic, else a
//    random style; in a session the user engages with 1..max_session_comments comments of the
//    video, each of the favourite style with probability style_share;
//  - sessions follow a liked video with probability comment_prob; with probability preview_prob a
//    session is instead on a video of the user's next topic, before it is liked: the comment history
//    carries information about the next videos that the video history does not.
#pragma once

#include <cstdint>
#include <string>

namespace seqrec::data {

/// Options of synth.mode lsvcr (the `synth:` section).
struct LsvcrSynthOptions {
  int64_t num_users = 600;           ///< users
  int64_t num_videos = 400;          ///< videos
  int64_t num_topics = 12;           ///< video topics
  int64_t num_styles = 4;            ///< comment styles
  int64_t min_comments = 20;         ///< comment section size, drawn in [min, max]
  int64_t max_comments = 200;        ///< upper bound of the comment section size
  int64_t min_videos = 10;           ///< liked videos per user, drawn in [min, max]
  int64_t max_videos = 30;           ///< upper bound of the liked videos per user
  int64_t phase_len = 6;             ///< liked videos per interest phase
  double topic_share = 0.85;         ///< P(a liked video is of the phase's topic)
  double comment_prob = 0.5;         ///< P(a session on a liked video, after it)
  double preview_prob = 0.3;         ///< P(a session on a video of the next phase's topic), per liked video
  int64_t max_session_comments = 3;  ///< comments per session, drawn in [1, max]
  double style_share = 0.85;         ///< P(an engaged comment is of the user's favourite style)
  double style_follows_topic = 0.8;  ///< P(favourite style = first topic's style)
  uint64_t seed = 42;                ///< the only source of randomness
  std::string output;                ///< directory: videos.tsv, comments.tsv, video_history.tsv, comment_history.tsv
};

/// What a run wrote.
struct LsvcrSynthReport {
  int64_t num_comments = 0;        ///< rows of comments.tsv
  int64_t num_video_events = 0;    ///< rows of video_history.tsv
  int64_t num_comment_events = 0;  ///< rows of comment_history.tsv
};

/// Validates the options (ConfigError naming synth.<field>).
void validate(const LsvcrSynthOptions& options);

/// Generates and writes the four files atomically. Deterministic for a seed.
LsvcrSynthReport generate_lsvcr_synthetic(const LsvcrSynthOptions& options);

}  // namespace seqrec::data
