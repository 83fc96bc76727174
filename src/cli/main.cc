// seqrec command-line entry point: a table of subcommands and the top-level error boundary.
#include <CLI/CLI.hpp>

#include <array>
#include <cstdio>
#include <functional>
#include <string>

#include "cli/commands.h"
#include "cli/data_cli.h"
#include "seqrec/common/allocator.h"
#include "seqrec/common/error.h"

namespace {

using seqrec::cli::CliArgs;

void add_common(CLI::App* cmd, CliArgs& args) { seqrec::cli::add_common_options(cmd, args); }

}  // namespace

int main(int argc, char** argv) {
  seqrec::ensure_passive_openmp(argv);
  seqrec::tune_allocator();
  CLI::App app{"seqrec: sequential recommenders -- prepare, train, evaluate, recommend"};
  app.require_subcommand(1);
  CliArgs args;
  struct Command {
    const char* name;
    const char* help;
    int (*run)(const CliArgs&);
  };
  const Command commands[] = {
      {"train", "train a model (validation each epoch, test at the end)", seqrec::cli::run_train},
      {"eval", "evaluate a checkpoint", seqrec::cli::run_eval},
      {"recommend", "top-k items for a user or a history", seqrec::cli::run_recommend},
      {"compress", "PerSRec: cache each user's token keys/values from the old items", seqrec::cli::run_compress},
      {"lcrec-data", "LC-Rec: prompt/response JSONL of the six tuning tasks", seqrec::cli::run_lcrec_data},
      {"finetune", "fine-tune a Hugging Face LM on prompt/response JSONL (LC-Rec)", seqrec::cli::run_finetune},
  };
  const seqrec::cli::DataCli data_cli = seqrec::cli::add_data_commands(app, args);
  std::vector<std::pair<CLI::App*, const Command*>> subs;
  for (const auto& c : commands) {
    CLI::App* sub = app.add_subcommand(c.name, c.help);
    add_common(sub, args);
    subs.emplace_back(sub, &c);
  }
  subs[0].first->add_flag("--resume", args.resume, "continue from train.out_dir/last.* if present");
  CLI::App* eval = subs[1].first;
  eval->add_option("--checkpoint", args.checkpoint, "checkpoint (.safetensors)")->required();
  eval->add_option("--data", args.data_dir, "prepared data dir (default: data.dir of the run's config)");
  eval->add_option("--split", args.split, "valid | test");
  eval->add_option("--token-cache", args.token_cache, "PerSRec: predict from this cache (seqrec compress)");
  CLI::App* rec = subs[2].first;
  rec->add_option("--checkpoint", args.checkpoint, "checkpoint (.safetensors)")->required();
  rec->add_option("--data", args.data_dir, "prepared data dir (default: data.dir of the run's config)");
  rec->add_option("--user", args.user, "raw user id: recommend after the user's whole history");
  rec->add_option("--history", args.history, "raw item ids, oldest first (comma or space separated)");
  rec->add_option("-k,--k", args.k, "number of items");
  rec->add_option("--token-cache", args.token_cache, "PerSRec: predict from this cache (compress --split all)");
  rec->add_option("--video", args.video, "LSVCR: rank this video's comments for the user (raw video id)");
  rec->add_option("--comment-history", args.comment_history,
                  "LSVCR, with --history: raw comment ids engaged with, oldest first");
  CLI::App* compress = subs[3].first;
  compress->add_option("--checkpoint", args.checkpoint, "checkpoint of a model with user tokens")->required();
  compress->add_option("--data", args.data_dir, "prepared data dir (default: data.dir of the run's config)");
  compress->add_option("--split", args.split, "test | valid (the histories eval reads) | all (whole rows: recommend)");
  compress->add_option("-o,--out", args.out, "cache directory")->required();
  compress->add_option("--users-per-shard", args.users_per_shard, "users per shard file");
  CLI::App* lcrec_data = subs[4].first;
  lcrec_data->add_option("--data", args.data_dir, "prepared data dir (data.dir)");
  lcrec_data->add_option("-o,--out", args.out, "output directory (lcrec.out_dir)");
  app.get_subcommand("finetune")->add_flag("--resume", args.resume, "continue after the last finished epoch (<out_dir>.resume.safetensors)");
  CLI::App* lm = app.add_subcommand("lm", "check a Hugging Face decoder LM: generate text or score it");
  lm->require_subcommand(1);
  CLI::App* lm_gen = lm->add_subcommand("generate", "generate a continuation of --prompt");
  CLI::App* lm_score = lm->add_subcommand("score", "per-token log-probabilities of --text");
  for (CLI::App* c : {lm_gen, lm_score}) {
    c->add_option("--model", args.model_dir, "Hugging Face model folder (config.json, *.safetensors, tokenizer)")->required();
    c->add_option("--prompt,--text", args.prompt, "input text")->required();
  }
  lm_gen->add_option("--max-new-tokens", args.max_new_tokens, "tokens to generate");
  lm_gen->add_option("--strategy", args.strategy, "greedy | sample | beam");
  lm_gen->add_option("--temperature", args.temperature, "sampling temperature");
  lm_gen->add_option("--top-p", args.top_p, "nucleus sampling mass");
  lm_gen->add_option("--seed", args.seed, "sampling seed");
  lm_gen->add_option("--num-beams", args.num_beams, "beam width");

  CLI::App* sid = app.add_subcommand("semantic-ids", "LC-Rec: train an RQ-VAE on item embeddings and write the item index");
  add_common(sid, args);
  CLI::App* embed = app.add_subcommand("embed-items", "LC-Rec: item text embeddings from a Hugging Face decoder LM");
  embed->add_option("--model", args.model_dir, "Hugging Face model folder")->required();
  embed->add_option("--data", args.data_dir, "prepared data dir (its items.tsv)")->required();
  embed->add_option("--fields", args.fields, "item-table columns to embed and average, comma separated");
  embed->add_option("-o,--out", args.out, "output safetensors file [V, D]")->required();
  embed->add_option("--max-tokens", args.max_text_tokens, "tokens per field text, BOS included");
  embed->add_option("--batch-tokens", args.batch_tokens, "token slots per packed forward pass");

  CLI::App* launch = app.add_subcommand(
      "launch", "run N data-parallel workers of a seqrec command on this machine (torchrun-style): launch [opts] -- train ...");
  launch->add_option("--nproc-per-node", args.nproc_per_node, "workers on this machine")->required();
  launch->add_option("--nnodes", args.nnodes, "machines in the job");
  launch->add_option("--node-rank", args.node_rank, "this machine, 0..nnodes-1");
  launch->add_option("--master-addr", args.master_addr, "address of node 0 (rendezvous)");
  launch->add_option("--master-port", args.master_port, "rendezvous port (default: a free one on one node, 29500 on several)");
  launch->add_option("command", args.command, "the seqrec command every worker runs, after --")->required();

  CLI::App* serve = app.add_subcommand("serve", "HTTP recommendation server over a checkpoint (docs/serving.md)");
  add_common(serve, args);
  serve->add_option("--checkpoint", args.checkpoint, "checkpoint (.safetensors), or an LC-Rec folder of seqrec finetune")->required();
  serve->add_option("--data", args.data_dir, "prepared data dir (default: data.dir of the run's config)");
  serve->add_option("--token-cache", args.token_cache, "PerSRec: predict from this cache (compress --split all)");
  serve->add_option("--token-file", args.token_file, "file holding a bearer token that requests must carry");
  serve->add_option("--index-file", args.index_file, "read the faiss index from this file at start (if it exists)");
  serve->add_option("--save-index", args.save_index, "write the built faiss index to this file");
  for (const auto& [flag, key, help] : std::vector<std::array<const char*, 3>>{
           {"--host", "host", "bind address (serve.host, default 127.0.0.1)"},
           {"--port", "port", "TCP port, 0 = ephemeral (serve.port, default 8080)"},
           {"--threads", "threads", "HTTP connection threads (serve.threads)"},
           {"--workers", "workers", "concurrent model batches (serve.workers)"},
           {"--max-batch", "max_batch", "queries per forward (serve.max_batch)"},
           {"--max-wait-us", "max_wait_us", "wait to fill a batch, microseconds (serve.max_wait_us)"},
           {"--timeout-ms", "timeout_ms", "per-request deadline (serve.timeout_ms)"},
           {"--index", "index.kind", "exact | hnsw | ivfpq | ivfflat (serve.index.kind)"}})
    serve->add_option(flag, args.serve_flags[key], help);

  // A first word that is no command (and no option) is refused by name: CLI11 alone would print
  // the main help with exit 0 when --help follows it, or "A subcommand is required".
  if (argc >= 2 && argv[1][0] != '-') {
    std::string names;
    bool known = false;
    for (const CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; })) {
      known = known || sub->get_name() == argv[1];
      names += (names.empty() ? "" : ", ") + sub->get_name();
    }
    if (!known) {
      std::fprintf(stderr, "error: unknown command '%s' (commands: %s)\n", argv[1], names.c_str());
      return 2;
    }
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  return seqrec::cli::guarded([&]() -> int {
    const auto parsed = app.get_subcommands();
    const std::string command = parsed.empty() ? "" : parsed[0]->get_name();
    if (command != "launch" && !seqrec::cli::runs_data_parallel(command)) seqrec::cli::refuse_to_run_as_a_rank();
    for (const auto& [sub, cmd] : subs)
      if (sub->parsed()) return cmd->run(args);
    if (launch->parsed()) return seqrec::cli::run_launch(args);
    if (serve->parsed()) return seqrec::cli::run_serve(args);
    if (sid->parsed()) return seqrec::cli::run_semantic_ids(args);
    if (embed->parsed()) return seqrec::cli::run_embed_items(args);
    if (const int rc = seqrec::cli::run_data_command(data_cli, args); rc >= 0) return rc;
    if (lm->parsed()) {
      args.lm_action = lm_gen->parsed() ? "generate" : "score";
      return seqrec::cli::run_lm(args);
    }
    return 1;
  });
}
