// seqrec launch: starts --nproc-per-node workers of a seqrec command on this machine with the
// torchrun variables set (WORLD_SIZE, RANK, LOCAL_RANK, LOCAL_WORLD_SIZE, GROUP_RANK, MASTER_ADDR,
// MASTER_PORT), forwards SIGINT/SIGTERM/SIGHUP to them, and fails the job when one worker fails:
// the others are stopped (SIGTERM, then SIGKILL after a grace period) and the exit status says which
// rank failed and how.
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "cli/commands.h"
#include "cli/data_cli.h"
#include "seqrec/common/error.h"
#include "seqrec/common/log.h"

namespace seqrec::cli {
namespace {

volatile std::sig_atomic_t received_signal = 0;

void on_signal(int sig) { received_signal = sig; }

// A port nobody listens on now (the kernel's pick); rank 0 binds it moments later.
int64_t free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw Error(std::string("launch: cannot open a socket to find a free port: ") + std::strerror(errno));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ::close(fd);
    throw Error(std::string("launch: cannot find a free port: ") + std::strerror(errno));
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

std::string describe(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status))
    return "was killed by signal " + std::to_string(WTERMSIG(status)) + " (" + strsignal(WTERMSIG(status)) + ")";
  return "stopped (status " + std::to_string(status) + ")";
}

// Shell convention: the worker's status, or 128 + signal.
int exit_code(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

struct Worker {
  int64_t rank = 0;
  int64_t local_rank = 0;
  pid_t pid = -1;
  bool running = false;
};

pid_t start_worker(const std::string& self, const std::vector<std::string>& command,
                   const std::vector<std::pair<std::string, std::string>>& env) {
  std::vector<char*> argv;
  argv.push_back(const_cast<char*>(self.c_str()));
  for (const auto& a : command) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) throw Error(std::string("launch: fork failed: ") + std::strerror(errno));
  if (pid == 0) {
    for (const auto& [k, v] : env) ::setenv(k.c_str(), v.c_str(), 1);
    ::execv(self.c_str(), argv.data());
    std::fprintf(stderr, "launch: cannot execute %s: %s\n", self.c_str(), std::strerror(errno));
    ::_exit(127);
  }
  return pid;
}

void signal_all(std::vector<Worker>& workers, int sig) {
  for (const auto& w : workers)
    if (w.running) ::kill(w.pid, sig);
}

}  // namespace

int run_launch(const CliArgs& args) {
  if (args.nproc_per_node < 1) throw ConfigError("--nproc-per-node", "must be >= 1, got " + std::to_string(args.nproc_per_node));
  if (args.nnodes < 1) throw ConfigError("--nnodes", "must be >= 1, got " + std::to_string(args.nnodes));
  if (args.node_rank < 0 || args.node_rank >= args.nnodes)
    throw ConfigError("--node-rank", std::to_string(args.node_rank) + " must be in [0, " + std::to_string(args.nnodes) + ")");
  if (args.master_port < 0 || args.master_port > 65535)
    throw ConfigError("--master-port", "must be in [1, 65535], got " + std::to_string(args.master_port));
  if (args.command.empty()) throw ConfigError("launch", "no command: seqrec launch --nproc-per-node N -- train ...");
  if (args.command[0] == "launch") throw ConfigError("launch", "the workers' command cannot be launch itself");
  if (!runs_data_parallel(args.command[0]))
    throw ConfigError("launch", "'" + args.command[0] + "' runs in one process; only train and finetune run "
                                "data-parallel (seqrec launch -- train ...)");

  const int64_t world = args.nproc_per_node * args.nnodes;
  const int64_t port = args.master_port > 0 ? args.master_port : args.nnodes == 1 ? free_port() : 29500;
  char self[4096];
  const ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) throw Error(std::string("launch: cannot find the seqrec executable: ") + std::strerror(errno));
  self[n] = '\0';

  struct sigaction action {};
  action.sa_handler = on_signal;
  sigemptyset(&action.sa_mask);
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) ::sigaction(sig, &action, nullptr);

  std::vector<Worker> workers;
  for (int64_t local = 0; local < args.nproc_per_node; ++local) {
    Worker w;
    w.local_rank = local;
    w.rank = args.node_rank * args.nproc_per_node + local;
    const std::vector<std::pair<std::string, std::string>> env = {
        {"WORLD_SIZE", std::to_string(world)},
        {"RANK", std::to_string(w.rank)},
        {"LOCAL_RANK", std::to_string(local)},
        {"LOCAL_WORLD_SIZE", std::to_string(args.nproc_per_node)},
        {"GROUP_RANK", std::to_string(args.node_rank)},
        {"MASTER_ADDR", args.master_addr},
        {"MASTER_PORT", std::to_string(port)}};
    w.pid = start_worker(self, args.command, env);
    w.running = true;
    log_info("launch: started rank %ld (local rank %ld, pid %ld) of %ld, rendezvous %s:%ld", long(w.rank),
             long(local), long(w.pid), long(world), args.master_addr.c_str(), long(port));
    workers.push_back(w);
  }

  using Clock = std::chrono::steady_clock;
  constexpr auto kGrace = std::chrono::seconds(10);  // for stopped workers to exit after SIGTERM
  int result = 0;
  bool stopping = false, killed = false;
  int forwarded = 0;
  Clock::time_point stop_time;
  int64_t running = static_cast<int64_t>(workers.size());
  while (running > 0) {
    if (received_signal != 0 && forwarded != received_signal) {
      forwarded = received_signal;
      log_warn("launch: got signal %d (%s); forwarding it to the workers", forwarded, strsignal(forwarded));
      signal_all(workers, forwarded);
      if (!stopping) {
        stopping = true;
        stop_time = Clock::now();
        result = 128 + forwarded;
      }
    }
    if (stopping && !killed && Clock::now() - stop_time > kGrace) {
      log_warn("launch: workers still running %lds after being stopped; killing them", long(kGrace.count()));
      signal_all(workers, SIGKILL);
      killed = true;
    }
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, WNOHANG);
    if (pid < 0 && errno != EINTR) throw Error(std::string("launch: waitpid failed: ") + std::strerror(errno));
    if (pid <= 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      continue;
    }
    for (auto& w : workers) {
      if (w.pid != pid || !w.running) continue;
      w.running = false;
      --running;
      const bool failed = !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
      if (failed && !stopping) {
        log_error("launch: rank %ld (local rank %ld, pid %ld) %s; stopping the other %ld worker(s)", long(w.rank),
                  long(w.local_rank), long(w.pid), describe(status).c_str(), long(running));
        result = exit_code(status);
        if (result == 0) result = 1;
        stopping = true;
        stop_time = Clock::now();
        signal_all(workers, SIGTERM);
      } else if (failed) {
        log_info("launch: rank %ld (pid %ld) %s", long(w.rank), long(w.pid), describe(status).c_str());
      }
    }
  }
  if (result != 0) log_error("launch: job failed (exit status %d)", result);
  return result;
}

}  // namespace seqrec::cli
