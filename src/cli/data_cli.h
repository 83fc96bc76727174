// The data commands (synth, prepare, parquet-info, parquet-cat, report): LibTorch-free, so that the `seqrec`
// launcher runs them in-process without loading LibTorch (see launcher.cc), and the full binary
// registers them the same way.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>

#include "cli/commands.h"

namespace seqrec::cli {

/// Runs a command behind the top-level error boundary: ConfigError / RequestError exit 2,
/// DataError / CheckpointError / other exceptions exit 1, each printed on one stderr line.
int guarded(const std::function<int()>& run);

/// Throws ConfigError (WORLD_SIZE) when this process was started as one rank of a data-parallel job
/// (torchrun, srun, seqrec launch): for every command but train, which alone divides its work;
/// the others would run once per rank on the same outputs.
void refuse_to_run_as_a_rank();

/// --config and --set, shared by every subcommand.
void add_common_options(CLI::App* cmd, CliArgs& args);

/// The data subcommands of `app`.
struct DataCli {
  CLI::App* synth = nullptr;
  CLI::App* prepare = nullptr;
  CLI::App* parquet_info = nullptr;
  CLI::App* parquet_cat = nullptr;
  CLI::App* report = nullptr;
};

/// Adds synth, prepare, parquet-info, parquet-cat and report to `app`, their options bound to `args`.
DataCli add_data_commands(CLI::App& app, CliArgs& args);

/// Runs the data subcommand that was parsed; -1 when none was.
int run_data_command(const DataCli& cli, const CliArgs& args);

}  // namespace seqrec::cli
