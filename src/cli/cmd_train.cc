// seqrec train: config -> model -> Trainer; prints the test metrics of the best checkpoint.
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <thread>

#include "cli/commands.h"
#include "seqrec/common/error.h"
#include "seqrec/common/fs.h"
#include "seqrec/common/log.h"
#include "seqrec/config/config_node.h"
#include "seqrec/config/options.h"
#include "seqrec/data/interaction_store.h"
#include "seqrec/data/split.h"
#include "seqrec/dist/env.h"
#include "seqrec/dist/process_group.h"
#include "seqrec/eval/metrics.h"
#include "seqrec/models/molar.h"
#include "seqrec/models/registry.h"
#include "seqrec/train/init_from.h"
#include "seqrec/train/checkpoint.h"
#include "seqrec/train/trainer.h"

namespace seqrec::cli {

void set_threads(int64_t threads) {
  int64_t n = threads;
  if (n <= 0) {
    // All cores, shared fairly between the processes of a data-parallel job on this machine.
    const char* local = std::getenv("LOCAL_WORLD_SIZE");
    const int64_t share = local != nullptr ? std::max<int64_t>(1, std::atoll(local)) : 1;
    n = std::max<int64_t>(1, std::thread::hardware_concurrency() / share);
  }
  torch::set_num_threads(static_cast<int>(n));
}

std::shared_ptr<dist::ProcessGroup> join_job(int64_t* local_rank) {
  const dist::EnvLookup env = dist::process_env();
  if (!dist::is_distributed(env)) return nullptr;
  const dist::DistEnv d = dist::read_dist_env(env);
  *local_rank = d.local_rank;
  // set_threads shares the cores by LOCAL_WORLD_SIZE; under srun it comes from Slurm's variables.
  ::setenv("LOCAL_WORLD_SIZE", std::to_string(d.local_world_size).c_str(), /*overwrite=*/0);
  dist::InitOptions options;
  if (const char* t = env("SEQREC_DIST_TIMEOUT"); t != nullptr && *t != '\0') {
    const double seconds = std::atof(t);
    if (!(seconds > 0)) throw ConfigError("SEQREC_DIST_TIMEOUT", "expected seconds > 0, got '" + std::string(t) + "'");
    options.timeout = std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
  }
  if (const char* b = env("SEQREC_DIST_BACKEND"); b != nullptr && *b != '\0') options.backend = b;
  auto group = dist::init_process_group(d, options);
  if (d.rank != 0) set_log_level(1);  // rank 0 speaks for the job; the others only warn
  log_info("rank %ld of %ld joined at %s:%ld (%s, local rank %ld)", long(d.rank), long(d.world_size),
           d.master_addr.c_str(), long(d.master_port), group->backend().c_str(), long(d.local_rank));
  dist::set_default_group(group);
  return group;
}

namespace {

// Molar's post-alignment: the frozen ID model comes from its own checkpoint, trained on the same data.
void install_id_model(models::SequenceRecommenderImpl& model, const models::ModelContext& context) {
  auto* molar = dynamic_cast<models::MolarImpl*>(&model);
  if (!molar || !molar->molar_options().aligned()) return;
  const std::string& path = molar->molar_options().post_alignment.id_checkpoint;
  train::LoadedModel id = train::load_checkpoint(path, context.data_dir);
  if (id.context.num_items != context.num_items)
    throw CheckpointError(path + ": the ID model has " + std::to_string(id.context.num_items) + " items, the data " +
                          std::to_string(context.num_items) + " (train it on the same prepared data)");
  molar->set_id_model(id.model, id.context.max_seq_len);
  log_info("post-alignment with the frozen ID model %s (alpha %g, tau %g)", path.c_str(),
           molar->molar_options().post_alignment.alpha, molar->molar_options().post_alignment.tau);
}

void check_metric_is_computed(const std::string& metric, const std::vector<int64_t>& ks) {
  const auto at = metric.find('@');
  if (at == std::string::npos) return;  // mrr
  const int64_t k = std::stoll(metric.substr(at + 1));
  if (std::find(ks.begin(), ks.end(), k) == ks.end())
    throw ConfigError("train.metric", "'" + metric + "' needs " + std::to_string(k) + " in eval.ks");
}

}  // namespace

int run_train(const CliArgs& args) {
  config::ConfigNode root = config::load_config(args.config_file, args.overrides);
  if (root.child("model").has("name") && root.child("model").get<std::string>("name", "") == "lsvcr")
    return run_train_lsvcr(root);  // two histories, two tasks: its own loop (cmd_lsvcr.cc)
  train::TrainerSetup setup;
  setup.data = config::read_data_options(root.child("data"));
  setup.train = config::read_train_options(root.child("train"));
  setup.eval = config::read_eval_options(root.child("eval"));
  if (setup.data.dir.empty()) throw ConfigError("data.dir", "required key is missing (the prepared directory)");
  if (setup.train.out_dir.empty()) throw ConfigError("train.out_dir", "required key is missing");
  check_metric_is_computed(setup.train.metric, setup.eval.ks);

  setup.group = join_job(&setup.local_rank);
  const bool writer = setup.group == nullptr || setup.group->rank() == 0;
  // Opened (and its checksum verified) once: train_feat_max_length cuts its training rows from it too.
  const data::InteractionStore raw = data::InteractionStore::open(setup.data.dir + "/interactions.bin");
  data::InteractionStore store = window_store(raw, setup.data);
  setup.context.num_items = store.num_items();
  setup.context.max_seq_len = setup.data.max_seq_len;
  setup.context.item_counts = data::train_item_counts(store, setup.data.holdout);
  // Cold-start items are never seen in training: most-popular must not count them either.
  const auto cold = data::cold_items(store.num_items(), setup.data.cold_item_share,
                                     static_cast<uint64_t>(setup.data.cold_item_seed));
  for (size_t i = 0; i < cold.size(); ++i)
    if (cold[i]) setup.context.item_counts[i] = 0;
  setup.context.data_dir = setup.data.dir;
  set_threads(setup.train.threads);
  torch::manual_seed(static_cast<uint64_t>(setup.train.seed));  // model initialisation
  config::ConfigNode model_node = root.child("model");
  models::SequenceRecommender model = models::make_model(model_node, setup.context);
  const train::InitFromOptions init = train::read_init_from_options(root.child("train"));
  install_id_model(*model, setup.context);
  ignore_sections(root, "data model train eval");
  root.finish();
  if (!init.checkpoint.empty()) train::init_from_checkpoint(*model, init);
  setup.model_yaml = model_node.dump();

  if (writer) {
    make_dirs(setup.train.out_dir);
    write_file_atomic(setup.train.out_dir + "/config.yaml", root.dump() + "\n");
  }
  log_info("train: %s on %s (%ld users, %ld items%s), resolved config in %s/config.yaml",
           model_node.get<std::string>("name", "").c_str(), setup.data.dir.c_str(), long(store.num_users()),
           long(store.num_items()), store.has_timestamps() ? "" : ", no timestamps",
           setup.train.out_dir.c_str());

  train::Trainer trainer(model, store, setup);
  if (setup.data.train_feat_max_length > 0) {
    // PerSRec's loader: training reads the last N items of each training part, then the window cut.
    trainer.set_train_rows(data::train_rows(raw, setup.data.holdout, setup.data.train_feat_max_length,
                                            setup.data.item_start_position, setup.data.item_end_position));
    if (writer)
      log_info("data.train_feat_max_length %ld: training on the last %ld items of each training part, cut to "
               "[%ld:%ld]", long(setup.data.train_feat_max_length), long(setup.data.train_feat_max_length),
               long(setup.data.item_start_position), long(setup.data.item_end_position));
  }
  train::TrainSummary s = trainer.fit(args.resume);
  const std::string protocol = config::name(setup.eval.protocol);
  if (s.epochs_run == 0)
    log_info("done: %s has no trainable parameters (fitted from the training counts); test (%s protocol) below",
             model_node.get<std::string>("name", "").c_str(), protocol.c_str());
  else if (setup.data.holdout == 1)
    log_info("done: %ld epochs in %.1fs, no validation split (data.holdout 1); test of the last epoch's model "
             "(%s protocol) below", long(s.epochs_run), s.train_seconds, protocol.c_str());
  else
    log_info("done: %ld epochs in %.1fs, best valid %s %.4f at epoch %ld; test (%s protocol) below",
             long(s.epochs_run), s.train_seconds, setup.train.metric.c_str(), s.best_metric, long(s.best_epoch),
             protocol.c_str());
  if (writer) std::printf("%s\n", eval::to_json_line(s.test, "test", protocol, s.test_users).c_str());
  dist::set_default_group(nullptr);
  return 0;
}

}  // namespace seqrec::cli
