// The LSVCR synthetic generator (structure in lsvcr_synth.h).
#include "seqrec/data/lsvcr_synth.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "seqrec/common/error.h"
#include "seqrec/common/fs.h"
#include "seqrec/common/random.h"

namespace seqrec::data {
namespace {

std::string make_word(Rng& rng) {
  static const char* kOnsets[] = {"b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "sh", "ch"};
  static const char* kVowels[] = {"a", "e", "i", "o", "u", "ai", "ou"};
  std::string w;
  const int syllables = 2 + static_cast<int>(rng.below(2));
  for (int i = 0; i < syllables; ++i) {
    w += kOnsets[rng.below(16)];
    w += kVowels[rng.below(7)];
  }
  return w;
}

std::vector<std::vector<std::string>> make_vocabularies(Rng& rng, int64_t groups, int64_t words) {
  std::vector<std::vector<std::string>> out(static_cast<size_t>(groups));
  for (auto& g : out)
    for (int64_t i = 0; i < words; ++i) g.push_back(make_word(rng));
  return out;
}

std::string pick(Rng& rng, const std::vector<std::string>& words) { return words[rng.below(words.size())]; }

/// Draws an index of `weights` proportionally.
int64_t draw(Rng& rng, const std::vector<double>& cumulative) {
  const double x = rng.uniform() * cumulative.back();
  return static_cast<int64_t>(std::upper_bound(cumulative.begin(), cumulative.end(), x) - cumulative.begin());
}

struct World {
  std::vector<std::vector<int64_t>> topic_videos;   // topic -> videos, most popular first
  std::vector<std::vector<double>> topic_cumulative;  // Zipf weights, cumulative
  std::vector<double> all_cumulative;               // over all videos (index v - 1)
  std::vector<std::vector<int64_t>> video_comments;  // [V+1] global comment ids
  std::vector<int64_t> comment_style;               // [C+1]
};

}  // namespace

void validate(const LsvcrSynthOptions& o) {
  for (auto [key, v] : {std::pair{"num_users", o.num_users}, {"num_videos", o.num_videos}, {"num_topics", o.num_topics},
                        {"num_styles", o.num_styles}, {"min_comments", o.min_comments}, {"min_videos", o.min_videos},
                        {"phase_len", o.phase_len}, {"max_session_comments", o.max_session_comments}})
    if (v < 1) throw ConfigError(std::string("synth.") + key, "must be >= 1");
  if (o.max_comments < o.min_comments) throw ConfigError("synth.max_comments", "must be >= synth.min_comments");
  if (o.max_videos < o.min_videos) throw ConfigError("synth.max_videos", "must be >= synth.min_videos");
  if (o.num_videos < o.num_topics) throw ConfigError("synth.num_videos", "must be >= synth.num_topics");
  for (auto [key, p] : {std::pair{"topic_share", o.topic_share}, {"comment_prob", o.comment_prob},
                        {"preview_prob", o.preview_prob}, {"style_share", o.style_share},
                        {"style_follows_topic", o.style_follows_topic}})
    if (!(p >= 0 && p <= 1)) throw ConfigError(std::string("synth.") + key, "must be in [0, 1]");
  if (o.output.empty()) throw ConfigError("synth.output", "required key is missing");
}

LsvcrSynthReport generate_lsvcr_synthetic(const LsvcrSynthOptions& o) {
  validate(o);
  Rng rng(o.seed);
  const auto topic_words = make_vocabularies(rng, o.num_topics, 8);
  const auto style_words = make_vocabularies(rng, o.num_styles, 8);
  LsvcrSynthReport report;
  World w;
  w.topic_videos.resize(o.num_topics);
  w.video_comments.resize(o.num_videos + 1);
  w.comment_style.push_back(0);
  std::string videos = "video_id\ttitle\n", comments = "comment_id\tvideo_id\ttext\n";
  for (int64_t v = 1; v <= o.num_videos; ++v) {
    const int64_t t = (v - 1) % o.num_topics;
    w.topic_videos[t].push_back(v);
    const auto& tw = topic_words[t];
    videos += "v" + std::to_string(v) + "\t" + pick(rng, tw) + " " + pick(rng, tw) + " " + pick(rng, tw) + " " +
              make_word(rng) + "\n";
    const int64_t n = o.min_comments + static_cast<int64_t>(rng.below(o.max_comments - o.min_comments + 1));
    for (int64_t i = 0; i < n; ++i) {
      const int64_t c = static_cast<int64_t>(w.comment_style.size());
      const int64_t s = static_cast<int64_t>(rng.below(o.num_styles));
      w.comment_style.push_back(s);
      w.video_comments[v].push_back(c);
      comments += "c" + std::to_string(c) + "\tv" + std::to_string(v) + "\t" + pick(rng, style_words[s]) + " " +
                  pick(rng, style_words[s]) + " " + pick(rng, tw) + " " + make_word(rng) + "\n";
    }
  }
  report.num_comments = static_cast<int64_t>(w.comment_style.size()) - 1;
  for (int64_t t = 0; t < o.num_topics; ++t) {
    double acc = 0;
    std::vector<double> cum;
    for (size_t r = 0; r < w.topic_videos[t].size(); ++r) cum.push_back(acc += 1.0 / std::pow(r + 1.0, 0.8));
    w.topic_cumulative.push_back(cum);
  }
  for (int64_t v = 1; v <= o.num_videos; ++v) {
    const size_t r = static_cast<size_t>((v - 1) / o.num_topics);
    w.all_cumulative.push_back((w.all_cumulative.empty() ? 0.0 : w.all_cumulative.back()) + 1.0 / std::pow(r + 1.0, 0.8));
  }

  std::string video_history = "user_id\tvideo_id\ttimestamp\n", comment_history = "user_id\tcomment_id\ttimestamp\n";
  for (int64_t u = 0; u < o.num_users; ++u) {
    const std::string user = "u" + std::to_string(u);
    const int64_t n = o.min_videos + static_cast<int64_t>(rng.below(o.max_videos - o.min_videos + 1));
    std::vector<int64_t> phases;  // topics, one per phase (plus one to preview)
    for (int64_t p = 0; p <= n / o.phase_len + 1; ++p) phases.push_back(static_cast<int64_t>(rng.below(o.num_topics)));
    const int64_t style = rng.uniform() < o.style_follows_topic ? phases[0] % o.num_styles
                                                                : static_cast<int64_t>(rng.below(o.num_styles));
    std::vector<char> liked(o.num_videos + 1, 0);
    int64_t ts = 1700000000 + static_cast<int64_t>(rng.below(86400));
    auto session = [&](int64_t v) {
      const auto& section = w.video_comments[v];
      std::vector<int64_t> fav, other;
      for (int64_t c : section) (w.comment_style[c] == style ? fav : other).push_back(c);
      const int64_t k = 1 + static_cast<int64_t>(rng.below(o.max_session_comments));
      std::vector<int64_t> chosen;
      for (int64_t i = 0; i < k; ++i) {
        auto& pool = (rng.uniform() < o.style_share && !fav.empty()) || other.empty() ? fav : other;
        const int64_t c = pool[rng.below(pool.size())];
        if (std::find(chosen.begin(), chosen.end(), c) != chosen.end()) continue;
        chosen.push_back(c);
        ts += 5 + static_cast<int64_t>(rng.below(60));
        comment_history += user + "\tc" + std::to_string(c) + "\t" + std::to_string(ts) + "\n";
        ++report.num_comment_events;
      }
    };
    for (int64_t i = 0; i < n; ++i) {
      const int64_t phase = i / o.phase_len;
      int64_t v = 0;
      for (int attempt = 0; attempt < 50 && (v == 0 || liked[v]); ++attempt) {
        if (rng.uniform() < o.topic_share) {
          const int64_t t = phases[phase];
          v = w.topic_videos[t][draw(rng, w.topic_cumulative[t])];
        } else {
          v = 1 + draw(rng, w.all_cumulative);
        }
      }
      if (liked[v]) continue;
      liked[v] = 1;
      ts += 600 + static_cast<int64_t>(rng.below(7200));
      video_history += user + "\tv" + std::to_string(v) + "\t" + std::to_string(ts) + "\n";
      ++report.num_video_events;
      if (rng.uniform() < o.comment_prob) session(v);
      if (rng.uniform() < o.preview_prob) {
        const int64_t t = phases[phase + 1];
        session(w.topic_videos[t][draw(rng, w.topic_cumulative[t])]);
      }
    }
  }
  make_dirs(o.output);
  write_file_atomic(o.output + "/videos.tsv", videos);
  write_file_atomic(o.output + "/comments.tsv", comments);
  write_file_atomic(o.output + "/video_history.tsv", video_history);
  write_file_atomic(o.output + "/comment_history.tsv", comment_history);
  return report;
}

}  // namespace seqrec::data
