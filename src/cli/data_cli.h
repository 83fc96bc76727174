// The data commands (synth, prepare, parquet-info, parquet-cat, report, molar-data): LibTorch-free, so that the `seqrec`
// launcher runs them in-process without loading LibTorch (see launcher.cc), and the full binary
// registers them the same way.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <string>

#include "cli/commands.h"

namespace seqrec::cli {

/// Runs a command behind the top-level error boundary: ConfigError / RequestError exit 2,
/// DataError / CheckpointError / other exceptions exit 1, each printed on one stderr line.
int guarded(const std::function<int()>& run);

/// Whether `command` divides its work among the ranks of a data-parallel job (train, finetune);
/// every other command would run once per rank on the same outputs.
bool runs_data_parallel(const std::string& command);

/// Throws ConfigError (WORLD_SIZE) when this process was started as one rank of a data-parallel job
/// (torchrun, srun, seqrec launch): for the commands that do not run data-parallel.
void refuse_to_run_as_a_rank();

/// The names of the data commands (the launcher runs them in-process).
inline constexpr const char* kDataCommands[] = {"synth", "prepare", "parquet-info", "parquet-cat", "report",
                                                "molar-data"};

/// --config and --set, shared by every subcommand.
void add_common_options(CLI::App* cmd, CliArgs& args);

/// The data subcommands of `app`.
struct DataCli {
  CLI::App* synth = nullptr;
  CLI::App* prepare = nullptr;
  CLI::App* parquet_info = nullptr;
  CLI::App* parquet_cat = nullptr;
  CLI::App* report = nullptr;
  CLI::App* molar_data = nullptr;
};

/// Adds the kDataCommands to `app`, their options bound to `args`.
DataCli add_data_commands(CLI::App& app, CliArgs& args);

/// Runs the data subcommand that was parsed; -1 when none was.
int run_data_command(const DataCli& cli, const CliArgs& args);

}  // namespace seqrec::cli
