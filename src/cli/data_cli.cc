// Registration of the data subcommands (shared by the launcher and the full binary).
#include "cli/data_cli.h"

#include <cstdio>

#include "seqrec/common/error.h"
#include "seqrec/config/config_node.h"
#include "seqrec/dist/env.h"

namespace seqrec::cli {

bool runs_data_parallel(const std::string& command) { return command == "train" || command == "finetune"; }

void refuse_to_run_as_a_rank() {
  if (dist::is_distributed(dist::process_env()))
    throw ConfigError("WORLD_SIZE", "this command runs in one process; only train and finetune run data-parallel "
                                    "(every rank would write the same outputs)");
}

int guarded(const std::function<int()>& run) {
  try {
    return run();
  } catch (const ConfigError& e) {
    std::fprintf(stderr, "ConfigError: %s\n", e.what());
    return 2;
  } catch (const DataError& e) {
    std::fprintf(stderr, "DataError: %s\n", e.what());
    return 1;
  } catch (const CheckpointError& e) {
    std::fprintf(stderr, "CheckpointError: %s\n", e.what());
    return 1;
  } catch (const RequestError& e) {
    std::fprintf(stderr, "RequestError: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}

void add_common_options(CLI::App* cmd, CliArgs& args) {
  cmd->add_option("-c,--config", args.config_file, "YAML config file");
  cmd->add_option("--set", args.overrides, "override a config key: dotted.key=value (repeatable)");
}

void ignore_sections(config::ConfigNode& root, const std::string& own) {
  const std::string owned = " " + own + " ";  // whole names: "molar_data" does not own "data"
  for (const char* s :
       {"synth", "prepare", "data", "model", "train", "eval", "serve", "semantic_id", "lcrec", "finetune", "lsvcr",
        "molar_data"})
    if (owned.find(" " + std::string(s) + " ") == std::string::npos) root.ignore(s);
}

DataCli add_data_commands(CLI::App& app, CliArgs& args) {
  DataCli d;
  d.synth = app.add_subcommand("synth", "generate the synthetic demo dataset (or a scale log)");
  add_common_options(d.synth, args);
  d.synth->add_option("-o,--out", args.out, "output directory (synth.output)");
  d.prepare = app.add_subcommand("prepare", "raw interactions -> prepared store");
  add_common_options(d.prepare, args);
  d.prepare->add_option("-i,--input", args.input, "interactions file (prepare.input)");
  d.prepare->add_option("-f,--format", args.format,
                        "csv | parquet | movielens_dat | movielens_csv | sasrec_pairs | user_sequences | lsvcr (prepare.format)");
  d.prepare->add_option("--items", args.items, "item table file (prepare.items)");
  d.prepare->add_option("--items-format", args.items_format,
                        "none | table | movielens_dat | parquet (prepare.items_format; default: by the file extension)");
  d.prepare->add_option("-o,--out", args.out, "output directory (prepare.output)");
  d.parquet_info = app.add_subcommand("parquet-info", "schema, row groups, codecs and encodings of a Parquet file");
  d.parquet_info->add_option("file", args.input, "Parquet file")->required();
  d.parquet_cat = app.add_subcommand("parquet-cat", "a Parquet file's rows as CSV on stdout");
  d.parquet_cat->add_option("file", args.input, "Parquet file")->required();
  d.parquet_cat->add_option("--columns", args.columns, "columns to print, comma separated (default: all)");
  d.parquet_cat->add_option("--limit", args.limit, "print at most this many rows");
  d.report = app.add_subcommand("report", "a Markdown page with SVG charts from training runs' metrics.jsonl");
  d.report->add_option("runs", args.run_dirs, "run folders (train.out_dir)")->required();
  d.report->add_option("-o,--out", args.out, "output folder of report.md and its charts")->required();
  d.report->add_option("--metrics", args.report_metrics,
                        "metrics plotted by epoch and compared (default ndcg@10 hr@10; LSVCR: video_ndcg@5 comment_ndcg@5)");
  d.molar_data = app.add_subcommand("molar-data", "Molar: item-model pre-training mixtures as prompt/response JSONL");
  add_common_options(d.molar_data, args);
  d.molar_data->add_option("--data", args.data_dir, "prepared data dir (data.dir)");
  d.molar_data->add_option("-o,--out", args.out, "output JSONL file (molar_data.out)");
  return d;
}

int run_data_command(const DataCli& cli, const CliArgs& args) {
  if (cli.synth->parsed()) return run_synth(args);
  if (cli.prepare->parsed()) return run_prepare(args);
  if (cli.parquet_info->parsed()) return run_parquet_info(args);
  if (cli.parquet_cat->parsed()) return run_parquet_cat(args);
  if (cli.report->parsed()) return run_report(args);
  if (cli.molar_data->parsed()) return run_molar_data(args);
  return -1;
}

}  // namespace seqrec::cli
