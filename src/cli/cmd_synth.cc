// seqrec synth: the synthetic demo dataset.
#include <cstdio>

#include "cli/commands.h"
#include "seqrec/common/error.h"
#include "seqrec/common/log.h"
#include "seqrec/config/config_node.h"
#include "seqrec/data/synthetic.h"

namespace seqrec::cli {

int run_synth(const CliArgs& args) {
  std::vector<std::string> overrides = args.overrides;
  if (!args.out.empty()) overrides.push_back("synth.output=" + args.out);
  config::ConfigNode root = config::load_config(args.config_file, overrides);
  config::ConfigNode node = root.child("synth");
  data::SynthOptions o;
  o.num_users = node.get<int64_t>("num_users", o.num_users);
  o.num_items = node.get<int64_t>("num_items", o.num_items);
  o.num_clusters = node.get<int64_t>("num_clusters", o.num_clusters);
  o.min_seq_len = node.get<int64_t>("min_seq_len", o.min_seq_len);
  o.max_seq_len = node.get<int64_t>("max_seq_len", o.max_seq_len);
  o.transition_prob = node.get<double>("transition_prob", o.transition_prob);
  o.taste_concentration = node.get<double>("taste_concentration", o.taste_concentration);
  o.seed = static_cast<uint64_t>(node.get<int64_t>("seed", static_cast<int64_t>(o.seed)));
  o.output = node.require<std::string>("output");
  for (const char* k : {"num_users", "num_items", "num_clusters", "min_seq_len"})
    if (node.get<int64_t>(k, 1) < 1) throw ConfigError("synth." + std::string(k), "must be >= 1");
  if (o.max_seq_len < o.min_seq_len) throw ConfigError("synth.max_seq_len", "must be >= synth.min_seq_len");
  if (o.transition_prob < 0 || o.transition_prob > 1) throw ConfigError("synth.transition_prob", "must be in [0, 1]");
  if (!(o.taste_concentration > 0)) throw ConfigError("synth.taste_concentration", "must be > 0");
  ignore_sections(root, "synth");
  root.finish();
  data::SynthReport r = data::generate_synthetic(o);
  log_info("synth: %ld users, %ld items, %ld events -> %s", long(o.num_users), long(o.num_items),
           long(r.num_events), o.output.c_str());
  std::printf("{\"users\":%ld,\"items\":%ld,\"events\":%ld,\"output\":\"%s\"}\n", long(o.num_users),
              long(o.num_items), long(r.num_events), o.output.c_str());
  return 0;
}

}  // namespace seqrec::cli
