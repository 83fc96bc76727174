// seqrec synth: the synthetic datasets (synth.mode default | long_term | bursty | scale | lsvcr).
#include <cstdio>

#include "cli/commands.h"
#include "seqrec/common/error.h"
#include "seqrec/common/log.h"
#include "seqrec/config/config_node.h"
#include "seqrec/data/lsvcr_synth.h"
#include "seqrec/data/synthetic.h"
#include "seqrec/data/synthetic_scale.h"

namespace seqrec::cli {
namespace {

/// Reads synth.<key> into `value` when `mode` uses it; rejects it, naming the field, otherwise.
template <typename T>
void read_mode_option(config::ConfigNode& node, const char* key, data::SynthMode uses, data::SynthMode mode,
                      T& value) {
  if (mode == uses) {
    value = node.get<T>(key, value);
  } else if (node.has(key)) {
    throw ConfigError(std::string("synth.") + key, std::string("is only read by synth.mode ") +
                                                       data::synth_mode_name(uses) + ", not " +
                                                       data::synth_mode_name(mode));
  }
}

/// synth.mode scale: the Pixel8M-shaped log, streamed.
int run_synth_scale(config::ConfigNode& root, config::ConfigNode& node) {
  data::ScaleSynthOptions o;
  o.num_users = node.get<int64_t>("num_users", o.num_users);
  o.num_items = node.get<int64_t>("num_items", o.num_items);
  o.min_seq_len = node.get<int64_t>("min_seq_len", o.min_seq_len);
  o.mean_seq_len = node.get<double>("mean_seq_len", o.mean_seq_len);
  o.max_seq_len = node.get<int64_t>("max_seq_len", o.max_seq_len);
  o.zipf_exponent = node.get<double>("zipf_exponent", o.zipf_exponent);
  o.users_per_chunk = node.get<int64_t>("users_per_chunk", o.users_per_chunk);
  o.threads = node.get<int64_t>("threads", o.threads);
  o.seed = static_cast<uint64_t>(node.get<int64_t>("seed", static_cast<int64_t>(o.seed)));
  o.format = node.get<std::string>("format", o.format);
  o.output = node.require<std::string>("output");
  ignore_sections(root, "synth");
  root.finish();
  const int64_t events = data::generate_scale_log(o);
  log_info("synth (scale): %ld users, %ld items, %ld events -> %s/interactions.%s", long(o.num_users),
           long(o.num_items), long(events), o.output.c_str(), o.format.c_str());
  std::printf("{\"users\":%ld,\"items\":%ld,\"events\":%ld,\"output\":\"%s\"}\n", long(o.num_users),
              long(o.num_items), long(events), o.output.c_str());
  return 0;
}

/// synth.mode lsvcr: the two-behaviour data of LSVCR (data/lsvcr_synth.h).
int run_synth_lsvcr(config::ConfigNode& root, config::ConfigNode& node) {
  data::LsvcrSynthOptions o;
  for (auto [key, field] : {std::pair{"num_users", &o.num_users}, {"num_videos", &o.num_videos},
                            {"num_topics", &o.num_topics}, {"num_styles", &o.num_styles},
                            {"min_comments", &o.min_comments}, {"max_comments", &o.max_comments},
                            {"min_videos", &o.min_videos}, {"max_videos", &o.max_videos},
                            {"phase_len", &o.phase_len}, {"max_session_comments", &o.max_session_comments}})
    *field = node.get<int64_t>(key, *field);
  for (auto [key, field] : {std::pair{"topic_share", &o.topic_share}, {"comment_prob", &o.comment_prob},
                            {"preview_prob", &o.preview_prob}, {"style_share", &o.style_share},
                            {"style_follows_topic", &o.style_follows_topic}})
    *field = node.get<double>(key, *field);
  o.seed = static_cast<uint64_t>(node.get<int64_t>("seed", static_cast<int64_t>(o.seed)));
  o.output = node.require<std::string>("output");
  ignore_sections(root, "synth");
  root.finish();
  const data::LsvcrSynthReport r = data::generate_lsvcr_synthetic(o);
  log_info("synth (lsvcr): %ld users, %ld videos, %ld comments, %ld video events, %ld comment events -> %s",
           long(o.num_users), long(o.num_videos), long(r.num_comments), long(r.num_video_events),
           long(r.num_comment_events), o.output.c_str());
  std::printf("{\"users\":%ld,\"videos\":%ld,\"comments\":%ld,\"video_events\":%ld,\"comment_events\":%ld,"
              "\"output\":\"%s\"}\n",
              long(o.num_users), long(o.num_videos), long(r.num_comments), long(r.num_video_events),
              long(r.num_comment_events), o.output.c_str());
  return 0;
}

}  // namespace

int run_synth(const CliArgs& args) {
  std::vector<std::string> overrides = args.overrides;
  if (!args.out.empty()) overrides.push_back("synth.output=" + args.out);
  config::ConfigNode root = config::load_config(args.config_file, overrides);
  config::ConfigNode node = root.child("synth");
  const std::string mode_name = node.get<std::string>("mode", "default");
  if (mode_name == "scale") return run_synth_scale(root, node);
  if (mode_name == "lsvcr") return run_synth_lsvcr(root, node);
  const data::SynthMode mode = data::parse_synth_mode(mode_name);
  data::SynthOptions o = data::synth_defaults(mode);
  o.num_users = node.get<int64_t>("num_users", o.num_users);
  o.num_items = node.get<int64_t>("num_items", o.num_items);
  o.num_clusters = node.get<int64_t>("num_clusters", o.num_clusters);
  o.min_seq_len = node.get<int64_t>("min_seq_len", o.min_seq_len);
  o.max_seq_len = node.get<int64_t>("max_seq_len", o.max_seq_len);
  o.transition_prob = node.get<double>("transition_prob", o.transition_prob);
  o.taste_concentration = node.get<double>("taste_concentration", o.taste_concentration);
  o.seed = static_cast<uint64_t>(node.get<int64_t>("seed", static_cast<int64_t>(o.seed)));
  o.output = node.require<std::string>("output");
  o.image_size = node.get<int64_t>("image_size", o.image_size);
  if (o.image_size < 0 || o.image_size > 1024) throw ConfigError("synth.image_size", "must be in 0..1024 (0 = no images)");
  using data::SynthMode;
  read_mode_option(node, "recent_window", SynthMode::kLongTerm, mode, o.recent_window);
  read_mode_option(node, "long_term_share", SynthMode::kLongTerm, mode, o.long_term_share);
  read_mode_option(node, "profile_kind", SynthMode::kLongTerm, mode, o.profile_kind);
  read_mode_option(node, "profile_items", SynthMode::kLongTerm, mode, o.profile_items);
  read_mode_option(node, "profile_clusters", SynthMode::kLongTerm, mode, o.profile_clusters);
  read_mode_option(node, "profile_share", SynthMode::kLongTerm, mode, o.profile_share);
  read_mode_option(node, "profile_phase", SynthMode::kLongTerm, mode, o.profile_phase);
  read_mode_option(node, "profile_timing", SynthMode::kLongTerm, mode, o.profile_timing);
  read_mode_option(node, "profile_weights", SynthMode::kLongTerm, mode, o.profile_weights);
  read_mode_option(node, "min_interest_len", SynthMode::kLongTerm, mode, o.min_interest_len);
  read_mode_option(node, "max_interest_len", SynthMode::kLongTerm, mode, o.max_interest_len);
  read_mode_option(node, "min_burst_len", SynthMode::kBursty, mode, o.min_burst_len);
  read_mode_option(node, "max_burst_len", SynthMode::kBursty, mode, o.max_burst_len);
  read_mode_option(node, "long_gap_share", SynthMode::kBursty, mode, o.long_gap_share);
  read_mode_option(node, "stay_prob", SynthMode::kBursty, mode, o.stay_prob);
  for (const char* k : {"num_users", "num_items", "num_clusters", "min_seq_len"})
    if (node.get<int64_t>(k, 1) < 1) throw ConfigError("synth." + std::string(k), "must be >= 1");
  if (o.max_seq_len < o.min_seq_len) throw ConfigError("synth.max_seq_len", "must be >= synth.min_seq_len");
  if (o.transition_prob < 0 || o.transition_prob > 1) throw ConfigError("synth.transition_prob", "must be in [0, 1]");
  if (!(o.taste_concentration > 0)) throw ConfigError("synth.taste_concentration", "must be > 0");
  ignore_sections(root, "synth");
  root.finish();
  data::SynthReport r = data::generate_synthetic(o);  // validates the mode's options
  log_info("synth: %ld users, %ld items, %ld events -> %s", long(o.num_users), long(o.num_items),
           long(r.num_events), o.output.c_str());
  std::printf("{\"users\":%ld,\"items\":%ld,\"events\":%ld,\"output\":\"%s\"}\n", long(o.num_users),
              long(o.num_items), long(r.num_events), o.output.c_str());
  return 0;
}

}  // namespace seqrec::cli
