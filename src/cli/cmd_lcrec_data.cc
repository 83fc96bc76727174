// seqrec lcrec-data: a prepared store + an LC-Rec index.json (+ user.json) -> train/valid/test JSONL.
#include <nlohmann/json.hpp>

#include <cstdio>

#include "cli/commands.h"
#include "seqrec/common/error.h"
#include "seqrec/common/log.h"
#include "seqrec/config/config_node.h"
#include "seqrec/data/item_catalog.h"
#include "seqrec/data/lcrec_jsonl.h"
#include "seqrec/data/lcrec_tasks.h"
#include "seqrec/data/lcrec_user_texts.h"
#include "seqrec/semantic_id/item_index.h"

namespace seqrec::cli {
namespace {

/// The `lcrec:` output settings (lcrec-data only).
data::LcRecOutputOptions read_output(config::ConfigNode& root) {
  data::LcRecOutputOptions out;
  config::ConfigNode n = root.child("lcrec");
  out.out_dir = n.require<std::string>("out_dir");
  out.epochs = n.get<int64_t>("epochs", out.epochs);
  if (out.epochs < 1) throw ConfigError("lcrec.epochs", "must be >= 1 (training files to write)");
  return out;
}

void warn_missing_column(const data::ItemCatalog& catalog, const std::string& column, const char* key) {
  for (const std::string& c : catalog.columns())
    if (c == column) return;
  log_warn("lcrec: items.tsv has no '%s' column (lcrec.%s): templates that need it are not used", column.c_str(), key);
}

}  // namespace

LcRecInputs load_lcrec_inputs(config::ConfigNode& root) {
  const std::string data_dir = root.child("data").require<std::string>("dir");
  config::ConfigNode n = root.child("lcrec");
  const std::string index_path = n.require<std::string>("index");
  const std::string user_texts = n.get<std::string>("user_texts", "");
  const std::string title_field = n.get<std::string>("title_field", "title");
  const std::string description_field = n.get<std::string>("description_field", "description");
  const data::LcRecDataOptions options = data::read_lcrec_data_options(n);
  data::InteractionStore store = data::InteractionStore::open(data_dir + "/interactions.bin");
  const data::ItemCatalog catalog = data::ItemCatalog::load(data_dir);
  warn_missing_column(catalog, title_field, "title_field");
  warn_missing_column(catalog, description_field, "description_field");
  LcRecInputs inputs;
  inputs.index = semantic_id::read_index_json(index_path, store.num_items());
  data::LcRecUserTexts users;
  if (!user_texts.empty()) {
    const data::UserMap user_map = data::UserMap::load(data_dir);
    users = data::read_lcrec_user_texts(
        user_texts, [&](const std::string& raw) { return user_map.find(raw); },
        [&](const std::string& raw) { return catalog.find(raw); });
    log_info("lcrec: %s: preferences of %zu users, intentions of %zu (train) / %zu (test) users", user_texts.c_str(),
             users.preferences.size(), users.train_intentions.size(), users.test_intentions.size());
  }
  inputs.tasks = std::make_unique<data::LcRecTaskSet>(
      std::move(store), data::lcrec_items(catalog, inputs.index.item_texts(), title_field, description_field),
      std::move(users), options);
  return inputs;
}

int run_lcrec_data(const CliArgs& args) {
  std::vector<std::string> overrides = args.overrides;
  if (!args.data_dir.empty()) overrides.push_back("data.dir=" + args.data_dir);
  if (!args.out.empty()) overrides.push_back("lcrec.out_dir=" + args.out);
  config::ConfigNode root = config::load_config(args.config_file, overrides);
  const data::LcRecOutputOptions files_out = read_output(root);
  LcRecInputs inputs = load_lcrec_inputs(root);
  ignore_sections(root, "lcrec");  // data: only data.dir is used
  root.finish();
  const data::LcRecTaskSet& set = *inputs.tasks;
  data::LcRecOutputOptions out = files_out;
  out.config_yaml = root.dump() + "\n";
  const std::vector<data::LcRecFileReport> written = data::write_lcrec_data(set, out);

  nlohmann::json summary = {{"out_dir", out.out_dir}, {"files", nlohmann::json::object()},
                             {"skipped_tasks", nlohmann::json::array()}};
  for (const data::LcRecFileReport& f : written)
    if (f.name != "config.yaml") summary["files"][f.name] = f.lines;
  for (const data::LcRecTaskReport& r : set.reports())
    if (r.skipped) summary["skipped_tasks"].push_back(data::lcrec_task_name(r.task));
  std::printf("%s\n", summary.dump().c_str());
  return 0;
}

}  // namespace seqrec::cli
