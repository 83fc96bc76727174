// seqrec recommend: top-k items for a known user or an explicit history (raw ids in, raw ids out);
// LSVCR checkpoints go to run_recommend_lsvcr (cmd_lsvcr.cc): next videos, or a video's comments.
#include <torch/torch.h>

#include <cstdio>
#include <utility>
#include <sstream>

#include "cli/commands.h"
#include "cli/lsvcr_cli.h"
#include "seqrec/common/error.h"
#include "seqrec/common/fs.h"
#include "seqrec/config/config_node.h"
#include "seqrec/config/options.h"
#include "seqrec/data/interaction_store.h"
#include "seqrec/data/item_catalog.h"
#include "seqrec/data/lcrec_tasks.h"
#include "seqrec/eval/evaluator.h"
#include "seqrec/models/lcrec.h"
#include "seqrec/train/checkpoint.h"

namespace seqrec::cli {
namespace {

// Dense ids of --history's raw ids (comma or space separated).
std::vector<int32_t> parse_history(const std::string& history, const data::ItemCatalog& catalog,
                                   const std::string& data_dir) {
  std::string text = history;
  for (char& c : text)
    if (c == ',') c = ' ';
  std::istringstream in(text);
  std::string raw;
  std::vector<int32_t> out;
  while (in >> raw) {
    const int64_t id = catalog.find(raw);
    if (id < 0) throw RequestError("--history: unknown item id '" + raw + "' (not in " + data_dir + "/items.tsv)");
    out.push_back(static_cast<int32_t>(id));
  }
  return out;
}

// LC-Rec: the test prompt (lcrec.test_prompt_ids' first template) over the history, beam search
// over the item codes; the first k beams. Beams that are no item (whitelist) print as "-".
int recommend_generative(const CliArgs& args) {
  config::ConfigNode root = load_generative_run_config(args);
  config::EvalOptions eval_opts = config::read_eval_options(root.child("eval"));
  const int64_t threads = root.child("finetune").get<int64_t>("threads", 0);  // the tuning run's budget
  const std::string data_dir = root.child("data").require<std::string>("dir");
  LcRecInputs inputs = load_lcrec_inputs(root);
  ignore_sections(root, "eval lcrec");
  root.child("lcrec").ignore("out_dir");
  root.child("lcrec").ignore("epochs");
  root.finish();
  set_threads(threads);
  const data::ItemCatalog catalog = data::ItemCatalog::load(data_dir);
  std::vector<int32_t> history;
  if (!args.user.empty()) {
    const data::UserMap users = data::UserMap::load(data_dir);
    const int64_t u = users.find(args.user);
    if (u < 0) throw RequestError("--user: unknown user id '" + args.user + "' (not in " + data_dir + "/users.tsv)");
    const data::InteractionStore store = data::InteractionStore::open(data_dir + "/interactions.bin");
    for (int32_t item : store.items(u)) history.push_back(item);
  } else {
    history = parse_history(args.history, catalog, data_dir);
  }
  if (history.empty()) throw RequestError("the history is empty: LC-Rec's prompt lists the user's items");
  models::LcRecOptions gen = generative_options(eval_opts);
  gen.num_beams = std::max(gen.num_beams, args.k);  // k beams at least: one per item returned
  models::LcRec model(args.checkpoint, inputs.index, gen);
  const int64_t template_id = inputs.tasks->options().test_prompt_ids.front();
  const data::LcRecExample query = inputs.tasks->query_example(history, template_id);
  const semantic_id::RankedItems ranked = model.generate({query.prompt}).front();
  std::printf("rank\titem_id\tscore\ttitle\n");
  for (size_t i = 0; i < ranked.items.size() && static_cast<int64_t>(i) < args.k; ++i) {
    const int64_t item = ranked.items[i];
    std::printf("%zu\t%s\t%.4f\t%s\n", i + 1, item > 0 ? catalog.raw_id(item).c_str() : "-", ranked.scores[i],
                item > 0 ? catalog.title(item).c_str() : "");
  }
  return 0;
}

}  // namespace

int run_recommend(const CliArgs& args) {
  if (args.k < 1) throw RequestError("--k must be >= 1, got " + std::to_string(args.k));
  if (is_lsvcr_checkpoint(args.checkpoint)) return run_recommend_lsvcr(args);
  for (const auto& [flag, value] : {std::pair<const char*, const std::string&>{"--video", args.video},
                                    {"--comment-history", args.comment_history}})
    if (!value.empty())
      throw RequestError(std::string(flag) + " is for LSVCR checkpoints (comments of a video), and " + args.checkpoint +
                         " is not one");
  if (args.user.empty() == args.history.empty())
    throw RequestError("give exactly one of --user RAW_ID or --history 'ID ID ...'");
  if (is_directory(args.checkpoint)) return recommend_generative(args);
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
    history = parse_history(args.history, catalog, data_opts.dir);
  }
  eval::TopK top = eval::recommend(*loaded.model, history, args.k, loaded.context.max_seq_len, u, history_ts);
  std::printf("rank\titem_id\tscore\ttitle\n");
  for (size_t i = 0; i < top.ids.size(); ++i)
    std::printf("%zu\t%s\t%.4f\t%s\n", i + 1, catalog.raw_id(top.ids[i]).c_str(), top.scores[i],
                catalog.title(top.ids[i]).c_str());
  return 0;
}

}  // namespace seqrec::cli
