// The subcommands of the seqrec CLI: one run_<cmd> per cmd_<cmd>.cc, dispatched by main.cc.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "seqrec/config/options.h"
#include "seqrec/data/interaction_store.h"
#include "seqrec/semantic_id/item_index.h"

namespace seqrec::dist {
class ProcessGroup;
}

namespace seqrec::cli {

/// Parsed command-line arguments (paths and overrides; hyper-parameters live in the config).
struct CliArgs {
  std::string config_file;              ///< --config
  std::vector<std::string> overrides;   ///< --set key=value (repeatable)
  std::string out;                      ///< --out (synth/prepare output dir)
  std::string input;                    ///< --input (prepare)
  std::string format;                   ///< --format (prepare)
  std::string items;                    ///< --items (prepare)
  std::string items_format;             ///< --items-format (prepare)
  std::string checkpoint;               ///< --checkpoint (eval/recommend)
  std::string data_dir;                 ///< --data (eval/recommend)
  std::string split = "test";           ///< --split (eval)
  bool resume = false;                  ///< --resume (train)
  std::string user;                     ///< --user raw id (recommend)
  std::string history;                  ///< --history raw ids, comma/space separated (recommend)
  int64_t k = 10;                       ///< --k (recommend)
  std::string video;                    ///< --video raw id: LSVCR comment ranking (recommend)
  std::string comment_history;          ///< --comment-history raw comment ids (recommend, LSVCR)
  std::string lm_action;                ///< generate | score (lm)
  std::string model_dir;                ///< --model Hugging Face folder (lm)
  std::string prompt;                   ///< --prompt / --text (lm)
  int64_t max_new_tokens = 64;          ///< --max-new-tokens (lm generate)
  std::string strategy = "greedy";      ///< --strategy greedy|sample|beam (lm generate)
  double temperature = 1.0;             ///< --temperature (lm generate)
  double top_p = 1.0;                   ///< --top-p (lm generate)
  int64_t seed = 0;                     ///< --seed (lm generate)
  int64_t num_beams = 4;                ///< --num-beams (lm generate)
  int64_t nproc_per_node = 1;           ///< --nproc-per-node (launch)
  int64_t nnodes = 1;                   ///< --nnodes (launch)
  int64_t node_rank = 0;                ///< --node-rank (launch)
  std::string master_addr = "127.0.0.1";  ///< --master-addr (launch)
  int64_t master_port = 0;              ///< --master-port (launch; 0: a free port on one node, 29500 on several)
  std::vector<std::string> command;     ///< seqrec arguments after `--` (launch)
  std::string token_cache;              ///< --token-cache dir (eval/recommend, PerSRec)
  int64_t users_per_shard = 65536;      ///< --users-per-shard (compress)
  std::string fields = "title,description";  ///< --fields item-table columns, comma separated (embed-items)
  int64_t max_text_tokens = 2048;       ///< --max-tokens per field text (embed-items)
  int64_t batch_tokens = 8192;          ///< --batch-tokens per packed forward (embed-items)
  std::string columns;                  ///< --columns a,b (parquet-cat; empty: all)
  int64_t limit = -1;                   ///< --limit rows (parquet-cat; -1: all)
  std::map<std::string, std::string> serve_flags;  ///< serve: --host, --port, ... (each given one = --set serve.<key>=...)
  std::string token_file;               ///< --token-file bearer token (serve)
  std::string index_file;               ///< --index-file faiss index to read at start (serve)
  std::string save_index;               ///< --save-index where to write the built faiss index (serve)
  std::vector<std::string> run_dirs;    ///< RUN_DIR... (report)
  std::vector<std::string> report_metrics;  ///< --metrics plotted by epoch (report)
};

int run_synth(const CliArgs& args);
int run_prepare(const CliArgs& args);
int run_train(const CliArgs& args);
int run_eval(const CliArgs& args);
int run_recommend(const CliArgs& args);
int run_lm(const CliArgs& args);
int run_launch(const CliArgs& args);
int run_compress(const CliArgs& args);
int run_lcrec_data(const CliArgs& args);
int run_semantic_ids(const CliArgs& args);
int run_embed_items(const CliArgs& args);
int run_finetune(const CliArgs& args);
int run_parquet_info(const CliArgs& args);
int run_parquet_cat(const CliArgs& args);
int run_serve(const CliArgs& args);
int run_report(const CliArgs& args);
int run_molar_data(const CliArgs& args);

}  // namespace seqrec::cli

namespace seqrec::config {
class ConfigNode;
}
namespace seqrec::models {
class SequenceRecommenderImpl;
struct LcRecOptions;
}
namespace seqrec::data {
class LcRecTaskSet;
}

namespace seqrec::cli {

/// Marks the top-level sections of other commands (synth, prepare, data, model, train, eval, serve,
/// lcrec, semantic_id, finetune, lsvcr, molar_data) as read, except the `own` ones (names separated
/// by spaces), so one YAML file can drive every command; unknown sections still fail.
void ignore_sections(config::ConfigNode& root, const std::string& own);

/// LC-Rec's inputs named by a config: the item index (lcrec.index) and the task set over the prepared
/// store of data.dir (lcrec.* generation keys; lcrec.out_dir / epochs are lcrec-data's, not read).
/// Destroy it where data/lcrec_tasks.h is included.
struct LcRecInputs {
  semantic_id::ItemIndex index;
  std::unique_ptr<data::LcRecTaskSet> tasks;
};
LcRecInputs load_lcrec_inputs(config::ConfigNode& root);

/// LC-Rec (--checkpoint is a `seqrec finetune` folder): --config, else the folder's
/// seqrec_finetune.yaml, with --set/--data applied; eval.protocol defaults to generative.
config::ConfigNode load_generative_run_config(const CliArgs& args);
/// The generation settings of the `eval:` keys (num_beams, constraint, filter_items, generation_batch).
models::LcRecOptions generative_options(const config::EvalOptions& eval_opts);

/// `seqrec train` with model.name lsvcr (cmd_lsvcr.cc): LSVCR stage 2 on a two-behaviour store.
int run_train_lsvcr(config::ConfigNode& root);
/// Joins the data-parallel job when the environment describes one (WORLD_SIZE or SLURM_NTASKS > 1;
/// null otherwise), makes it the default group and quiets the ranks other than 0; sets this
/// process's local rank (it picks the GPU of train.device: cuda). cmd_train.cc.
std::shared_ptr<dist::ProcessGroup> join_job(int64_t* local_rank);

/// Sets LibTorch's intra-op threads (0 = all cores).
void set_threads(int64_t threads);

/// The prepared store of data.dir, with data.item_start_position / item_end_position applied.
data::InteractionStore open_store(const config::DataOptions& data);
/// `raw` (data.dir's store as prepared) with data.item_start_position / item_end_position applied.
data::InteractionStore window_store(const data::InteractionStore& raw, const config::DataOptions& data);

/// The run config next to a checkpoint (written by train) unless --config is given.
config::ConfigNode load_run_config(const CliArgs& args);

/// Whether `path` is a checkpoint file of LSVCR (stage 2 or the aligned SR model).
bool is_lsvcr_checkpoint(const std::string& path);
/// Throws ConfigError naming --checkpoint when it is an LSVCR checkpoint, which `command` does not
/// take (seqrec eval, recommend and serve do).
void refuse_lsvcr_checkpoint(const CliArgs& args, const std::string& command);

/// PerSRec: installs the token cache of --token-cache (if given) into a model with user tokens;
/// split: the split the cache must have been made for (test | valid | all).
void install_token_cache(models::SequenceRecommenderImpl& model, const CliArgs& args, const std::string& split);

}  // namespace seqrec::cli
