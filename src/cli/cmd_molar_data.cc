// seqrec molar-data: a prepared store + its item table -> Molar's item-model pre-training mixtures
// as prompt/response JSONL for seqrec finetune (data/molar_tasks.h).
#include <nlohmann/json.hpp>

#include <cstdio>
#include <map>

#include "cli/data_cli.h"
#include "seqrec/common/error.h"
#include "seqrec/common/log.h"
#include "seqrec/config/config_node.h"
#include "seqrec/data/interaction_store.h"
#include "seqrec/data/item_catalog.h"
#include "seqrec/data/molar_tasks.h"

namespace seqrec::cli {

int run_molar_data(const CliArgs& args) {
  refuse_to_run_as_a_rank();
  std::vector<std::string> overrides = args.overrides;
  if (!args.data_dir.empty()) overrides.push_back("data.dir=" + args.data_dir);
  if (!args.out.empty()) overrides.push_back("molar_data.out=" + args.out);
  config::ConfigNode root = config::load_config(args.config_file, overrides);
  config::ConfigNode d = root.child("data");
  const std::string data_dir = d.require<std::string>("dir");
  data::MolarTaskOptions o;
  o.holdout = d.get<int64_t>("holdout", o.holdout);
  config::ConfigNode n = root.child("molar_data");
  const std::string out = n.require<std::string>("out");
  if (n.has("tasks")) {
    o.tasks.clear();
    for (const std::string& t : n.get<std::vector<std::string>>("tasks", {}))
      o.tasks.push_back(data::parse_molar_task(t, n.path() + ".tasks"));
    if (o.tasks.empty()) throw ConfigError(n.path() + ".tasks", "must name at least one task");
  }
  o.attribute_fields = n.get<std::vector<std::string>>("attribute_fields", o.attribute_fields);
  o.description_field = n.get<std::string>("description_field", o.description_field);
  o.title_field = n.get<std::string>("title_field", o.title_field);
  o.examples_per_task = n.get<int64_t>("examples_per_task", o.examples_per_task);
  o.max_history = n.get<int64_t>("max_history", o.max_history);
  o.seed = static_cast<uint64_t>(n.get<int64_t>("seed", static_cast<int64_t>(o.seed)));
  ignore_sections(root, "molar_data");  // data: dir and holdout are read
  root.finish();

  const data::InteractionStore store = data::InteractionStore::open(data_dir + "/interactions.bin");
  const data::ItemCatalog catalog = data::ItemCatalog::load(data_dir);
  const std::vector<data::MolarExample> examples = data::molar_pretraining_examples(store, catalog, o);
  data::write_molar_data(out, examples);
  std::map<std::string, int64_t> counts;
  for (const auto& e : examples) ++counts[data::molar_task_name(e.task)];
  for (const auto& [task, count] : counts) log_info("molar-data: %s: %ld examples", task.c_str(), long(count));
  log_info("molar-data: wrote %s", out.c_str());
  std::printf("%s\n", nlohmann::json({{"out", out}, {"examples", counts}}).dump().c_str());
  return 0;
}

}  // namespace seqrec::cli
