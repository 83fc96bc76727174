// `seqrec`, the launcher: the data commands (cli::kDataCommands: synth, prepare, ...) run here,
// in a process that never loads LibTorch; every other command execs `seqrec-torch` beside this
// binary with the same arguments. Debian's LibTorch costs about half a second of start-up per
// process (290 shared libraries, operator registration), and the full binary used to pay it twice
// (it re-execs itself to set OMP_WAIT_POLICY); now data commands pay nothing and the others once.
#include <CLI/CLI.hpp>

#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "cli/data_cli.h"

namespace {

bool is_data_command(const char* arg) {
  for (const char* name : seqrec::cli::kDataCommands) {
    if (std::strcmp(arg, name) == 0) return true;
  }
  return false;
}

/// Replaces this process with seqrec-torch from this binary's folder.
int exec_full(char** argv) {
  char self[PATH_MAX];
  const ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) {
    std::fprintf(stderr, "error: cannot find this executable's folder: %s\n", std::strerror(errno));
    return 1;
  }
  self[n] = '\0';
  std::string path(self);
  path = path.substr(0, path.rfind('/') + 1) + "seqrec-torch";
  // LibTorch's OpenMP threads must sleep when idle (the full binary would re-exec itself for it).
  if (std::getenv("OMP_WAIT_POLICY") == nullptr) setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
  ::execv(path.c_str(), argv);
  std::fprintf(stderr, "error: cannot run %s: %s\n", path.c_str(), std::strerror(errno));
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || !is_data_command(argv[1])) return exec_full(argv);
  CLI::App app{"seqrec: sequential recommenders -- prepare, train, evaluate, recommend, serve"};
  app.require_subcommand(1);
  seqrec::cli::CliArgs args;
  const seqrec::cli::DataCli data = seqrec::cli::add_data_commands(app, args);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  return seqrec::cli::guarded([&] {
    seqrec::cli::refuse_to_run_as_a_rank();
    return seqrec::cli::run_data_command(data, args);
  });
}
