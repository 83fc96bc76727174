// seqrec eval: evaluates a checkpoint under the configured protocol; prints one JSON line.
#include <torch/torch.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <tuple>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/lsvcr_cli.h"
#include "seqrec/common/error.h"
#include "seqrec/common/fs.h"
#include "seqrec/common/log.h"
#include "seqrec/config/config_node.h"
#include "seqrec/config/options.h"
#include "seqrec/data/interaction_store.h"
#include "seqrec/data/lcrec_tasks.h"
#include "seqrec/data/lsvcr_data.h"
#include "seqrec/eval/evaluator.h"
#include "seqrec/eval/report.h"
#include "seqrec/common/safetensors.h"
#include "seqrec/models/lcrec.h"
#include "seqrec/models/lsvcr.h"
#include "seqrec/train/checkpoint.h"
#include "seqrec/train/lsvcr_trainer.h"

namespace seqrec::cli {
namespace {

std::string dir_of(const std::string& path) {
  std::string p = path;
  while (p.size() > 1 && p.back() == '/') p.pop_back();  // a folder checkpoint: its parent
  const auto slash = p.find_last_of('/');
  return slash == std::string::npos ? "." : p.substr(0, slash);
}

// The metrics line with what produced it: the checkpoint (eval.jsonl sits beside several: best,
// last) and, when one stood in for the user tokens' forward pass, the token cache.
std::string with_inputs(const std::string& line, const CliArgs& args) {
  nlohmann::json inputs = {{"checkpoint", args.checkpoint}};
  if (!args.token_cache.empty()) inputs["token_cache"] = args.token_cache;
  return line.substr(0, line.size() - 1) + "," + inputs.dump().substr(1);  // both are JSON objects
}

// The metric table on stderr, in people's order (hr@5 before hr@10; eval::metric_name_less), not
// the map's string order (which put ndcg@10 before ndcg@5).
void print_metric_table(const eval::MetricSet& metrics, int width) {
  std::vector<std::pair<std::string, double>> rows(metrics.begin(), metrics.end());
  std::stable_sort(rows.begin(), rows.end(),
                   [](const auto& a, const auto& b) { return eval::metric_name_less(a.first, b.first); });
  for (const auto& [name, value] : rows) std::fprintf(stderr, "%-*s %.4f\n", width, name.c_str(), value);
}

}  // namespace

config::ConfigNode load_generative_run_config(const CliArgs& args) {
  std::string file = args.config_file;
  const std::string run_config = args.checkpoint + "/seqrec_finetune.yaml";
  if (file.empty() && path_exists(run_config)) file = run_config;
  if (file.empty())
    throw ConfigError("--config", args.checkpoint + " is a folder without seqrec_finetune.yaml: pass the LC-Rec config");
  std::vector<std::string> overrides = args.overrides;
  if (!args.data_dir.empty()) overrides.push_back("data.dir=" + args.data_dir);
  config::ConfigNode root = config::load_config(file, overrides);
  if (!root.child("eval").has("protocol")) root.child("eval").get<std::string>("protocol", "generative");
  return root;
}

models::LcRecOptions generative_options(const config::EvalOptions& eval_opts) {
  models::LcRecOptions gen;
  gen.num_beams = eval_opts.num_beams;
  gen.constraint = eval_opts.constraint == config::GenerationConstraint::kWhitelist
                       ? semantic_id::CodeConstraint::kLevelWhitelist
                       : semantic_id::CodeConstraint::kTrie;
  gen.filter_non_items = eval_opts.filter_items;
  gen.batch_size = eval_opts.generation_batch;
  return gen;
}

namespace {

// LC-Rec: --checkpoint is the Hugging Face folder written by `seqrec finetune`; the config (its
// seqrec_finetune.yaml unless --config) names the prepared store, the index and the test prompts.
int run_generative_eval(const CliArgs& args) {
  config::ConfigNode root = load_generative_run_config(args);
  const config::EvalOptions eval_opts = config::read_eval_options(root.child("eval"));
  if (eval_opts.protocol != config::Protocol::kGenerative)
    throw ConfigError("eval.protocol", "'" + config::name(eval_opts.protocol) + "': " + args.checkpoint +
                                           " is a generative model (LC-Rec); its protocol is generative");
  const int64_t threads = root.child("finetune").get<int64_t>("threads", 0);  // the tuning run's budget
  LcRecInputs inputs = load_lcrec_inputs(root);
  ignore_sections(root, "eval lcrec");  // data: only data.dir is used
  root.child("lcrec").ignore("out_dir");
  root.child("lcrec").ignore("epochs");
  root.finish();
  const data::Split split = data::parse_split(args.split, "--split");
  set_threads(threads);

  std::vector<data::LcRecExample> examples;
  if (split == data::Split::kValid) {
    examples = inputs.tasks->valid_examples();
  } else {
    inputs.tasks->for_each_test_example([&](const data::LcRecExample& e) { examples.push_back(e); });
  }
  if (eval_opts.max_users > 0) {  // the first N users (every template of theirs)
    std::vector<int64_t> users;
    std::vector<data::LcRecExample> kept;
    for (auto& e : examples) {
      if (std::find(users.begin(), users.end(), e.user) == users.end()) {
        if (static_cast<int64_t>(users.size()) == eval_opts.max_users) continue;
        users.push_back(e.user);
      }
      kept.push_back(std::move(e));
    }
    examples = std::move(kept);
  }
  models::LcRec model(args.checkpoint, inputs.index, generative_options(eval_opts));
  const models::GenerativeResult r = models::evaluate_generative(model, examples, eval_opts.ks, "eval");
  const std::string line =
      with_inputs(eval::to_json_line(r.metrics, data::split_name(split), "generative", r.queries), args);
  std::printf("%s\n", line.c_str());
  append_line(dir_of(args.checkpoint) + "/eval.jsonl", line);
  std::fprintf(stderr, "generative, %s constraint, %ld beams, %ld prompts, %zu template(s), %.2fs\n",
               config::name(eval_opts.constraint).c_str(), long(eval_opts.num_beams), long(r.queries), r.template_ids.size(),
               r.seconds);
  print_metric_table(r.metrics, 22);
  return 0;
}

// An LSVCR checkpoint (stage 2, `seqrec train` with model.name lsvcr) under the lsvcr protocol of
// its run's config: videos among 1 + 99 candidates, comments among their video's, as train does.
int run_lsvcr_eval(const CliArgs& args) {
  const data::Split which = data::parse_split(args.split, "--split");
  LsvcrCheckpoint c = load_lsvcr_checkpoint(args, "eval");
  set_threads(c.train.threads);
  const data::LsvcrSplits splits = data::split_lsvcr(c.store);
  const eval::MetricSet m = train::evaluate_lsvcr(*c.model, c.store, which == data::Split::kValid ? splits.valid : splits.test,
                                                  c.run, c.train.batch_size);
  const std::string line = with_inputs(
      eval::to_json_line(m, data::split_name(which), "lsvcr", static_cast<int64_t>(m.at("video_samples"))), args);
  std::printf("%s\n", line.c_str());
  append_line(dir_of(args.checkpoint) + "/eval.jsonl", line);
  std::fprintf(stderr, "%-22s %s (lsvcr, %ld video and %ld comment samples)\n", "metric", "value",
               long(m.at("video_samples")), long(m.at("comment_samples")));
  print_metric_table(m, 22);
  return 0;
}

}  // namespace

data::InteractionStore window_store(const data::InteractionStore& raw, const config::DataOptions& data) {
  if (data.item_start_position == 0 && data.item_end_position == 0) return raw;
  return data::window_rows(raw, data.item_start_position, data.item_end_position);
}

data::InteractionStore open_store(const config::DataOptions& data) {
  return window_store(data::InteractionStore::open(data.dir + "/interactions.bin"), data);
}

config::ConfigNode load_run_config(const CliArgs& args) {
  std::string file = args.config_file;
  if (file.empty() && path_exists(dir_of(args.checkpoint) + "/config.yaml")) file = dir_of(args.checkpoint) + "/config.yaml";
  std::vector<std::string> overrides = args.overrides;
  if (!args.data_dir.empty()) overrides.push_back("data.dir=" + args.data_dir);
  return config::load_config(file, overrides);
}

bool is_lsvcr_checkpoint(const std::string& path) {
  if (!path_exists(path) || is_directory(path)) return false;
  try {
    const auto meta = SafetensorsFile::open(path).metadata();
    const auto format = meta.find("format");
    return format != meta.end() && format->second == train::kLsvcrCheckpointFormat;
  } catch (const std::exception&) {
    return false;  // not a readable checkpoint: the command's own loading says why
  }
}

void refuse_lsvcr_checkpoint(const CliArgs& args, const std::string& command) {
  if (is_lsvcr_checkpoint(args.checkpoint))
    throw ConfigError("--checkpoint", args.checkpoint + " is an LSVCR checkpoint: seqrec " + command +
                                          " does not take LSVCR models yet (seqrec eval, recommend and serve do)");
}

int run_eval(const CliArgs& args) {
  if (is_directory(args.checkpoint)) return run_generative_eval(args);
  if (is_lsvcr_checkpoint(args.checkpoint)) return run_lsvcr_eval(args);
  config::ConfigNode root = load_run_config(args);
  config::DataOptions data_opts = config::read_data_options(root.child("data"));
  config::EvalOptions eval_opts = config::read_eval_options(root.child("eval"));
  config::ConfigNode train_node = root.child("train");
  const int64_t threads = train_node.get<int64_t>("threads", 0);
  ignore_sections(root, "data eval");
  root.finish();
  if (data_opts.dir.empty()) throw ConfigError("data.dir", "required key is missing (or pass --data DIR)");
  const data::Split split = data::parse_split(args.split, "--split");
  if (split == data::Split::kValid && data_opts.holdout == 1)
    throw ConfigError("--split", "valid: data.holdout is 1, so the validation item was trained on (use --split test)");
  set_threads(threads);

  data::InteractionStore store = open_store(data_opts);
  train::LoadedModel loaded = train::load_checkpoint(args.checkpoint, data_opts.dir);
  if (loaded.context.num_items != store.num_items())
    throw CheckpointError(args.checkpoint + ": built for " + std::to_string(loaded.context.num_items) +
                          " items, but " + data_opts.dir + " has " + std::to_string(store.num_items()) +
                          " (a different prepared dataset?)");
  install_token_cache(*loaded.model, args, data::split_name(split));
  eval::EvalResult r = eval::evaluate(
      *loaded.model, store, split, eval_opts, loaded.context.max_seq_len,
      data::cold_items(store.num_items(), data_opts.cold_item_share, static_cast<uint64_t>(data_opts.cold_item_seed)));
  const std::string line = with_inputs(
      eval::to_json_line(r.metrics, data::split_name(split), config::name(eval_opts.protocol), r.users), args);
  std::printf("%s\n", line.c_str());
  append_line(dir_of(args.checkpoint) + "/eval.jsonl", line);
  std::fprintf(stderr, "%-10s %s (%s, %ld users, %.2fs)\n", "metric", "value", config::name(eval_opts.protocol).c_str(),
               long(r.users), r.seconds);
  print_metric_table(r.metrics, 10);
  return 0;
}

}  // namespace seqrec::cli
