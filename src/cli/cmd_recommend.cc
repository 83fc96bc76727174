// seqrec recommend: top-k items for a known user or an explicit history (raw ids in, raw ids out).
#include <torch/torch.h>

#include <cstdio>
#include <sstream>

#include "cli/commands.h"
#include "seqrec/common/error.h"
#include "seqrec/config/config_node.h"
#include "seqrec/config/options.h"
#include "seqrec/data/interaction_store.h"
#include "seqrec/data/item_catalog.h"
#include "seqrec/eval/evaluator.h"
#include "seqrec/train/checkpoint.h"

namespace seqrec::cli {

int run_recommend(const CliArgs& args) {
  if (args.user.empty() == args.history.empty())
    throw RequestError("give exactly one of --user RAW_ID or --history 'ID ID ...'");
  if (args.k < 1) throw RequestError("--k must be >= 1, got " + std::to_string(args.k));
  config::ConfigNode root = load_run_config(args);
  config::DataOptions data_opts = config::read_data_options(root.child("data"));
  ignore_sections(root, "data");
  root.finish();
  if (data_opts.dir.empty()) throw ConfigError("data.dir", "required key is missing (or pass --data DIR)");
  set_threads(0);
  data::ItemCatalog catalog = data::ItemCatalog::load(data_opts.dir);
  train::LoadedModel loaded = train::load_checkpoint(args.checkpoint, data_opts.dir);

  if (!args.token_cache.empty() && args.user.empty())
    throw RequestError("--token-cache holds per-user state: use it with --user, not --history");
  install_token_cache(*loaded.model, args, "all");
  std::vector<int32_t> history;
  std::vector<int64_t> history_ts;  // with --user: the time bias sees the real gaps
  int64_t u = 0;
  if (!args.user.empty()) {
    data::UserMap users = data::UserMap::load(data_opts.dir);
    u = users.find(args.user);
    if (u < 0) throw RequestError("--user: unknown user id '" + args.user + "' (not in " + data_opts.dir + "/users.tsv)");
    data::InteractionStore store = open_store(data_opts);
    for (int32_t item : store.items(u)) history.push_back(item);
    if (store.has_timestamps())
      for (int64_t t : store.timestamps(u)) history_ts.push_back(t);
  } else {
    std::string text = args.history;
    for (char& c : text)
      if (c == ',') c = ' ';
    std::istringstream in(text);
    std::string raw;
    while (in >> raw) {
      const int64_t id = catalog.find(raw);
      if (id < 0) throw RequestError("--history: unknown item id '" + raw + "' (not in " + data_opts.dir + "/items.tsv)");
      history.push_back(static_cast<int32_t>(id));
    }
  }
  eval::TopK top = eval::recommend(*loaded.model, history, args.k, loaded.context.max_seq_len, u, history_ts);
  std::printf("rank\titem_id\tscore\ttitle\n");
  for (size_t i = 0; i < top.ids.size(); ++i)
    std::printf("%zu\t%s\t%.4f\t%s\n", i + 1, catalog.raw_id(top.ids[i]).c_str(), top.scores[i],
                catalog.title(top.ids[i]).c_str());
  return 0;
}

}  // namespace seqrec::cli
