// seqrec serve: the HTTP recommendation server over a checkpoint and its prepared data.
#include <pthread.h>
#include <torch/torch.h>

#include <csignal>
#include <cstdio>
#include <thread>

#include "cli/commands.h"
#include "seqrec/common/error.h"
#include "seqrec/common/fs.h"
#include "seqrec/common/log.h"
#include "seqrec/config/config_node.h"
#include "seqrec/config/options.h"
#include "seqrec/serve/http_server.h"
#include "seqrec/serve/recommender_service.h"
#include "seqrec/serve/serve_options.h"

namespace seqrec::cli {
namespace {

// The bearer token of --token-file: its content without surrounding whitespace.
std::string read_token(const std::string& path) {
  if (path.empty()) return "";
  std::string token = read_file(path);
  const size_t begin = token.find_first_not_of(" \t\r\n"), end = token.find_last_not_of(" \t\r\n");
  if (begin == std::string::npos) throw ConfigError("--token-file", path + ": the file is empty");
  return token.substr(begin, end - begin + 1);
}

bool is_loopback(const std::string& host) { return host == "127.0.0.1" || host == "::1" || host == "localhost"; }

// SIGHUP reloads, SIGINT / SIGTERM stop; they are blocked in every thread and taken here by sigwait.
// SIGUSR1 only ends this thread (sent when the server stops for another reason).
void handle_signals(serve::HttpServer& server, sigset_t set) {
  for (;;) {
    int sig = 0;
    if (sigwait(&set, &sig) != 0) return;
    if (sig == SIGHUP) {
      log_info("serve: SIGHUP: reloading the checkpoint");
      server.reload();
    } else {
      if (sig != SIGUSR1) log_info("serve: %s: finishing in-flight requests, then exiting", sig == SIGINT ? "SIGINT" : "SIGTERM");
      server.stop();
      return;
    }
  }
}

}  // namespace

int run_serve(const CliArgs& args) {
  CliArgs with_flags = args;
  for (const auto& [key, value] : args.serve_flags)
    if (!value.empty()) with_flags.overrides.push_back("serve." + key + "=" + value);
  config::ConfigNode root = load_run_config(with_flags);
  const config::DataOptions data_opts = config::read_data_options(root.child("data"));
  const serve::ServeOptions options = serve::read_serve_options(root.child("serve"));
  ignore_sections(root, "data serve");
  root.finish();
  if (data_opts.dir.empty()) throw ConfigError("data.dir", "required key is missing (or pass --data DIR)");
  const std::string token = read_token(args.token_file);
  if (!is_loopback(options.host) && token.empty())
    log_warn("serve: listening on %s without --token-file: anyone who reaches this address can query and reload",
             options.host.c_str());
  set_threads(options.torch_threads);

  // Signals first, so that every thread started from here on (OpenMP, httplib, batcher) blocks them.
  sigset_t set;
  sigemptyset(&set);
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGUSR1}) sigaddset(&set, sig);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);

  serve::ServiceData data{data_opts.dir, data::ItemCatalog::load(data_opts.dir), data::UserMap::load(data_opts.dir),
                          open_store(data_opts)};
  serve::ServiceOptions service_options;
  service_options.checkpoint = args.checkpoint;
  service_options.block_items = options.block_items;
  service_options.index = options.index;
  service_options.index_file = args.index_file;
  service_options.save_index = args.save_index;
  service_options.per_user_state = !args.token_cache.empty();
  service_options.prepare_model = [&args](models::SequenceRecommenderImpl& model) { install_token_cache(model, args, "all"); };
  serve::RecommenderService service(std::move(data), service_options);
  const auto snap = service.snapshot();
  log_info("serve: %s: %ld items, %ld users, %s top-k, loaded in %.2fs", snap->checkpoint.c_str(), long(snap->context.num_items),
           long(service.data().users.num_users()), snap->index_description.c_str(), snap->load_seconds);

  serve::HttpServer server(service, options, token);
  const int port = server.bind();
  std::printf("{\"listening\": \"http://%s:%d\", \"host\": \"%s\", \"port\": %d}\n", options.host.c_str(), port,
              options.host.c_str(), port);
  std::fflush(stdout);
  std::thread signals([&server, set] { handle_signals(server, set); });
  server.listen();
  pthread_kill(signals.native_handle(), SIGUSR1);
  signals.join();
  log_info("serve: stopped");
  return 0;
}

}  // namespace seqrec::cli
