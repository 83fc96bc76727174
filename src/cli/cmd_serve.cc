// seqrec serve: the HTTP recommendation server over a checkpoint and its prepared data.
#include <unistd.h>
#include <torch/torch.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <thread>

#include "cli/commands.h"
#include "cli/lsvcr_cli.h"
#include "seqrec/common/error.h"
#include "seqrec/common/fs.h"
#include "seqrec/common/log.h"
#include "seqrec/config/config_node.h"
#include "seqrec/config/options.h"
#include "seqrec/data/lcrec_tasks.h"
#include "seqrec/models/lcrec.h"
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

// Signals reach the server through a pipe: the handler only writes the signal's number (the one
// async-signal-safe thing to do), whichever thread the kernel picked; a thread reads the pipe.
// SIGHUP reloads, SIGINT / SIGTERM stop; 0 (written by run_serve) only ends the thread.
int g_signal_pipe[2] = {-1, -1};

void on_signal(int sig) {
  const int saved = errno;
  const unsigned char byte = static_cast<unsigned char>(sig);
  [[maybe_unused]] const ssize_t n = ::write(g_signal_pipe[1], &byte, 1);
  errno = saved;
}

void install_signal_handlers() {
  if (::pipe(g_signal_pipe) != 0) throw Error("serve: cannot create the signal pipe");
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) ::sigaction(sig, &sa, nullptr);
}

void handle_signals(serve::HttpServer& server) {
  unsigned char sig = 0;
  while (::read(g_signal_pipe[0], &sig, 1) == 1) {
    if (sig == SIGHUP) {
      log_info("serve: SIGHUP: reloading the checkpoint");
      server.reload();
      continue;
    }
    if (sig != 0) log_info("serve: %s: finishing in-flight requests, then exiting", sig == SIGINT ? "SIGINT" : "SIGTERM");
    server.stop();
    return;
  }
}

// LC-Rec: the folder's model with its run config (seqrec_finetune.yaml unless --config, with --set
// and --data), generating as `seqrec recommend` does: the first test template over the history,
// eval.num_beams beams (k is refused above them), one beam search per micro-batch.
std::shared_ptr<const serve::GenerativeBackend> load_lcrec_backend(const CliArgs& args, const std::string& folder,
                                                                   int64_t max_batch) {
  CliArgs folder_args = args;
  folder_args.checkpoint = folder;
  config::ConfigNode root = load_generative_run_config(folder_args);
  const config::EvalOptions eval_opts = config::read_eval_options(root.child("eval"));
  LcRecInputs inputs = load_lcrec_inputs(root);
  ignore_sections(root, "eval lcrec");
  root.child("lcrec").ignore("out_dir");
  root.child("lcrec").ignore("epochs");
  root.finish();
  models::LcRecOptions gen = generative_options(eval_opts);
  gen.batch_size = std::max(gen.batch_size, max_batch);
  auto model = std::make_unique<models::LcRec>(folder, inputs.index, gen);
  const int64_t template_id = inputs.tasks->options().test_prompt_ids.front();
  std::shared_ptr<const data::LcRecTaskSet> tasks = std::move(inputs.tasks);
  return std::make_shared<serve::GenerativeBackend>(std::move(model), [tasks, template_id](const std::vector<int32_t>& history) {
    return tasks->query_example(history, template_id).prompt;
  });
}

}  // namespace

int run_serve(const CliArgs& args) {
  CliArgs with_flags = args;
  for (const auto& [key, value] : args.serve_flags)
    if (!value.empty()) with_flags.overrides.push_back("serve." + key + "=" + value);
  const bool generative = is_directory(args.checkpoint);  // an LC-Rec folder: its seqrec_finetune.yaml
  const bool lsvcr = is_lsvcr_checkpoint(args.checkpoint);
  config::ConfigNode root = generative ? load_generative_run_config(with_flags) : load_run_config(with_flags);
  const config::DataOptions data_opts = config::read_data_options(root.child("data"));
  const serve::ServeOptions options = serve::read_serve_options(root.child("serve"));
  ignore_sections(root, "data serve");
  root.finish();
  if (data_opts.dir.empty()) throw ConfigError("data.dir", "required key is missing (or pass --data DIR)");
  if ((generative || lsvcr) && !args.token_cache.empty())
    throw ConfigError("--token-cache", args.checkpoint + (lsvcr ? " is an LSVCR model" : " is a generative model (LC-Rec)") +
                                           ": it keeps no per-user tokens");
  const std::string token = read_token(args.token_file);
  if (!is_loopback(options.host) && token.empty())
    log_warn("serve: listening on %s without --token-file: anyone who reaches this address can query and reload",
             options.host.c_str());
  set_threads(options.torch_threads);

  serve::ServiceData data = lsvcr ? lsvcr_service_data(data_opts.dir)
                                  : serve::ServiceData{data_opts.dir, data::ItemCatalog::load(data_opts.dir),
                                                       data::UserMap::load(data_opts.dir), open_store(data_opts)};
  serve::ServiceOptions service_options;
  service_options.checkpoint = args.checkpoint;
  service_options.block_items = options.block_items;
  service_options.index = options.index;
  service_options.index_file = args.index_file;
  service_options.save_index = args.save_index;
  service_options.per_user_state = !args.token_cache.empty();
  service_options.prepare_model = [&args](models::SequenceRecommenderImpl& model) { install_token_cache(model, args, "all"); };
  service_options.load_generative = [&args, max_batch = options.max_batch](const std::string& folder) {
    return load_lcrec_backend(args, folder, max_batch);
  };
  if (lsvcr)  // the next-video task; a reload must name an LSVCR checkpoint again
    service_options.load_lsvcr = [&args](const std::string& checkpoint) {
      auto backend = load_lsvcr_backend(args, checkpoint);
      if (!backend) throw CheckpointError(checkpoint + ": not an LSVCR checkpoint, and this server serves " + args.checkpoint);
      return backend;
    };
  serve::RecommenderService service(std::move(data), service_options);
  const auto snap = service.snapshot();
  log_info("serve: %s: %ld items, %ld users, %s top-k, loaded in %.2fs", snap->checkpoint.c_str(), long(snap->context.num_items),
           long(service.data().users.num_users()), snap->index_description.c_str(), snap->load_seconds);

  serve::HttpServer server(service, options, token);
  const int port = server.bind();
  std::printf("{\"listening\": \"http://%s:%d\", \"host\": \"%s\", \"port\": %d}\n", options.host.c_str(), port,
              options.host.c_str(), port);
  std::fflush(stdout);
  install_signal_handlers();
  std::thread signals([&server] { handle_signals(server); });
  server.listen();
  on_signal(0);  // the server stopped on its own: end the signal thread
  signals.join();
  log_info("serve: stopped");
  return 0;
}

}  // namespace seqrec::cli
