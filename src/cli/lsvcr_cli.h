// LSVCR's stage 2 checkpoints in the commands that read them (eval, recommend, serve): the run config,
// the prepared two-behaviour store and the model with its weights, loaded once the same way.
#pragma once

#include <memory>
#include <string>

#include "cli/commands.h"
#include "seqrec/config/options.h"
#include "seqrec/data/lsvcr_data.h"
#include "seqrec/models/lsvcr.h"
#include "seqrec/serve/lsvcr_ranker.h"
#include "seqrec/serve/recommender_service.h"
#include "seqrec/train/lsvcr_trainer.h"

namespace seqrec::cli {

/// A loaded stage 2 checkpoint.
struct LsvcrCheckpoint {
  std::string data_dir;          ///< data.dir of the run (or --data)
  config::TrainOptions train;    ///< the run's train: (threads, batch_size)
  train::LsvcrRunOptions run;    ///< the run's lsvcr: section
  data::LsvcrStore store;        ///< <data_dir>/lsvcr.bin
  models::Lsvcr model{nullptr};  ///< weights of --checkpoint, text tables installed
};

/// Loads --checkpoint with the run config next to it (or --config, --set, --data); the caller sets
/// threads. Throws ConfigError for a checkpoint of another stage than finetune (`command` names the
/// command in the message) and CheckpointError for a store with other video or comment counts.
LsvcrCheckpoint load_lsvcr_checkpoint(const CliArgs& args, const std::string& command);

/// `seqrec recommend` on an LSVCR checkpoint: next videos, or with --video the video's comments.
int run_recommend_lsvcr(const CliArgs& args);

/// What `seqrec serve` answers over for an LSVCR store in `data_dir`: the video catalogue
/// (videos/items.tsv), users.tsv, and the video histories as an interaction store.
serve::ServiceData lsvcr_service_data(const std::string& data_dir);
/// The next-video backend of `checkpoint` (its run config as load_lsvcr_checkpoint reads it), or
/// null when the file is not an LSVCR checkpoint.
std::shared_ptr<const serve::LsvcrBackend> load_lsvcr_backend(const CliArgs& args, const std::string& checkpoint);

}  // namespace seqrec::cli
