// seqrec lcrec-data: a prepared store + an LC-Rec index.json (+ user.json) -> train/valid/test JSONL.
#include <nlohmann/json.hpp>

#include <cstdio>

#include "cli/commands.h"
#include "seqrec/common/error.h"
#include "seqrec/common/log.h"
#include "seqrec/config/config_node.h"
#include "seqrec/data/item_catalog.h"
#include "seqrec/data/lcrec_item_codes.h"
#include "seqrec/data/lcrec_jsonl.h"
#include "seqrec/data/lcrec_tasks.h"
#include "seqrec/data/lcrec_user_texts.h"

namespace seqrec::cli {
namespace {

/// The `lcrec:` file paths and output settings (generation options are read by the library).
struct LcRecDataFiles {
  std::string data_dir;           // data.dir: the prepared store
  std::string index;              // lcrec.index: index.json, row r = dense item r + 1
  std::string user_texts;         // lcrec.user_texts: upstream <D>.user.json ("" = none)
  std::string title_field;        // lcrec.title_field: items.tsv column of titles
  std::string description_field;  // lcrec.description_field
  data::LcRecOutputOptions out;   // lcrec.out_dir, lcrec.epochs
};

LcRecDataFiles read_files(config::ConfigNode& root) {
  LcRecDataFiles f;
  f.data_dir = root.child("data").require<std::string>("dir");
  config::ConfigNode n = root.child("lcrec");
  f.index = n.require<std::string>("index");
  f.user_texts = n.get<std::string>("user_texts", "");
  f.title_field = n.get<std::string>("title_field", "title");
  f.description_field = n.get<std::string>("description_field", "description");
  f.out.out_dir = n.require<std::string>("out_dir");
  f.out.epochs = n.get<int64_t>("epochs", f.out.epochs);
  if (f.out.epochs < 1) throw ConfigError("lcrec.epochs", "must be >= 1 (training files to write)");
  return f;
}

void warn_missing_column(const data::ItemCatalog& catalog, const std::string& column, const char* key) {
  for (const std::string& c : catalog.columns())
    if (c == column) return;
  log_warn("lcrec: items.tsv has no '%s' column (lcrec.%s): templates that need it are not used", column.c_str(), key);
}

}  // namespace

int run_lcrec_data(const CliArgs& args) {
  std::vector<std::string> overrides = args.overrides;
  if (!args.data_dir.empty()) overrides.push_back("data.dir=" + args.data_dir);
  if (!args.out.empty()) overrides.push_back("lcrec.out_dir=" + args.out);
  config::ConfigNode root = config::load_config(args.config_file, overrides);
  const LcRecDataFiles files = read_files(root);
  const data::LcRecDataOptions options = data::read_lcrec_data_options(root.child("lcrec"));
  ignore_sections(root, "lcrec");  // data: only data.dir is used
  root.ignore("finetune");         // sibling LC-Rec commands may share the file
  root.ignore("semantic_id");
  root.finish();

  data::InteractionStore store = data::InteractionStore::open(files.data_dir + "/interactions.bin");
  const data::ItemCatalog catalog = data::ItemCatalog::load(files.data_dir);
  warn_missing_column(catalog, files.title_field, "title_field");
  warn_missing_column(catalog, files.description_field, "description_field");
  std::vector<std::string> codes = data::read_lcrec_item_codes(files.index, store.num_items());
  data::LcRecUserTexts users;
  if (!files.user_texts.empty()) {
    const data::UserMap user_map = data::UserMap::load(files.data_dir);
    users = data::read_lcrec_user_texts(
        files.user_texts, [&](const std::string& raw) { return user_map.find(raw); },
        [&](const std::string& raw) { return catalog.find(raw); });
    log_info("lcrec: %s: preferences of %zu users, intentions of %zu (train) / %zu (test) users",
             files.user_texts.c_str(), users.preferences.size(), users.train_intentions.size(),
             users.test_intentions.size());
  }
  data::LcRecTaskSet set(store, data::lcrec_items(catalog, std::move(codes), files.title_field, files.description_field),
                         std::move(users), options);
  data::LcRecOutputOptions out = files.out;
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
