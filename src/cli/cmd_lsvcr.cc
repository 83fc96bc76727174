// seqrec train with model.name lsvcr: LSVCR stage 1 (lsvcr.stage align, §4.2) or stage 2 (finetune,
// §4.3) on a store of `seqrec prepare --format lsvcr`, with the text embeddings named in the `lsvcr:`
// section; the loading of stage 2 checkpoints for eval, recommend and serve; recommend itself.
#include <torch/torch.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <sstream>
#include <tuple>

#include "cli/commands.h"
#include "cli/lsvcr_cli.h"
#include "seqrec/common/error.h"
#include "seqrec/common/fs.h"
#include "seqrec/common/log.h"
#include "seqrec/config/config_node.h"
#include "seqrec/config/options.h"
#include "seqrec/data/item_catalog.h"
#include "seqrec/data/lsvcr_data.h"
#include "seqrec/dist/env.h"
#include "seqrec/dist/process_group.h"
#include "seqrec/eval/metrics.h"
#include "seqrec/models/lsvcr.h"
#include "seqrec/serve/lsvcr_ranker.h"
#include "seqrec/train/checkpoint.h"
#include "seqrec/train/init_from.h"
#include "seqrec/train/lsvcr_align.h"
#include "seqrec/train/lsvcr_trainer.h"

namespace seqrec::cli {

int run_train_lsvcr(config::ConfigNode& root) {
  const config::DataOptions data = config::read_data_options(root.child("data"));
  const config::TrainOptions train = config::read_train_options(root.child("train"));
  if (data.dir.empty()) throw ConfigError("data.dir", "required key is missing (the prepared lsvcr directory)");
  if (train.out_dir.empty()) throw ConfigError("train.out_dir", "required key is missing");
  if (train.precision != config::Precision::kFp32)
    throw ConfigError("train.precision", "LSVCR training runs in fp32 only (bf16: seqrec train on hllm / molar, "
                                         "seqrec finetune)");
  config::ConfigNode lsvcr_node = root.child("lsvcr");
  const train::LsvcrRunOptions run = train::read_lsvcr_run_options(lsvcr_node);
  using Stage = train::LsvcrStage;
  const Stage stage = run.stage;
  train::LsvcrAlignOptions align;
  if (stage == Stage::kAlign) {
    align = train::read_lsvcr_align_options(lsvcr_node.child("align"));
    align.data_dir = data.dir;
  }
  config::ConfigNode model_node = root.child("model");
  model_node.require<std::string>("name");
  models::LsvcrOptions options = models::read_lsvcr_options(model_node);
  const train::InitFromOptions init = train::read_init_from_options(root.child("train"));
  ignore_sections(root, "data model train lsvcr");
  root.finish();

  // `seqrec launch`: stage 1 splits its steps over the ranks; the other stages run in one process.
  if (dist::is_distributed(dist::process_env()) && stage != Stage::kAlign)
    throw ConfigError("lsvcr.stage", "'" + train::name(stage) + "' runs in one process; under `seqrec launch` only stage 1 "
                                     "(lsvcr.stage: align) trains data-parallel");
  int64_t local_rank = 0;
  const std::shared_ptr<dist::ProcessGroup> group = stage == Stage::kAlign ? join_job(&local_rank) : nullptr;
  const bool writer = group == nullptr || group->rank() == 0;
  const data::LsvcrStore store = data::LsvcrStore::load(data.dir + "/" + data::kLsvcrStoreFile);
  const data::LsvcrSplits splits = data::split_lsvcr(store);
  if (stage == Stage::kRandom || stage == Stage::kMostPop) {  // reference rows: no model, the test split
    const eval::MetricSet m = train::evaluate_lsvcr_baseline(store, splits, splits.test, run, stage == Stage::kMostPop);
    std::printf("%s\n", eval::to_json_line(m, "test", "lsvcr", static_cast<int64_t>(m.at("video_samples"))).c_str());
    return 0;
  }
  if (stage == Stage::kAlign) options.use_id_embeddings = false;  // §4.2: text only, random positions
  set_threads(train.threads);
  torch::manual_seed(static_cast<uint64_t>(train.seed));
  models::Lsvcr model = train::build_lsvcr(options, store, run);
  if (!init.checkpoint.empty()) train::init_from_checkpoint(*model, init);  // e.g. stage 1's SR model
  if (writer) {
    make_dirs(train.out_dir);
    write_file_atomic(train.out_dir + "/config.yaml", root.dump() + "\n");
  }
  log_info("train: lsvcr on %s (%ld users, %ld videos, %ld comments; train %zu video + %zu comment samples, "
           "valid %zu + %zu, test %zu + %zu)",
           data.dir.c_str(), long(store.num_users()), long(store.num_videos), long(store.num_comments),
           splits.train.video.size(), splits.train.comment.size(), splits.valid.video.size(),
           splits.valid.comment.size(), splits.test.video.size(), splits.test.comment.size());
  const std::map<std::string, std::string> metadata = {
      {"format", train::kLsvcrCheckpointFormat},
      {"model", model_node.dump()},
      {"num_videos", std::to_string(store.num_videos)},
      {"num_comments", std::to_string(store.num_comments)},
      {"text_input_dim", std::to_string(model->options().text_input_dim)}};
  if (stage == Stage::kAlign) {
    const double tokens_per_s = train::fit_lsvcr_align(*model, store, splits, train, align, metadata, group);
    dist::set_default_group(nullptr);
    log_info("done: stage 1 (align) -> %s/sr_model.safetensors (%.0f LLM tokens/s)", train.out_dir.c_str(), tokens_per_s);
    if (writer)
      std::printf("{\"stage\":\"align\",\"sr_model\":\"%s/sr_model.safetensors\",\"tokens_per_s\":%.1f}\n",
                  train.out_dir.c_str(), tokens_per_s);
    return 0;
  }
  const train::LsvcrSummary s = train::fit_lsvcr(*model, store, splits, train, run, metadata);
  log_info("done: %ld epochs in %.1fs, best valid ndcg@5 (%s) %.4f at epoch %ld; test (lsvcr protocol) below",
           long(s.epochs_run), s.train_seconds, train::name(run.selection).c_str(), s.best_metric, long(s.best_epoch));
  std::printf("%s\n", eval::to_json_line(s.test, "test", "lsvcr", static_cast<int64_t>(s.test.at("video_samples"))).c_str());
  return 0;
}

LsvcrCheckpoint load_lsvcr_checkpoint(const CliArgs& args, const std::string& command) {
  config::ConfigNode root = load_run_config(args);
  LsvcrCheckpoint c;
  c.data_dir = config::read_data_options(root.child("data")).dir;
  c.train = config::read_train_options(root.child("train"));
  root.child("train").ignore("init_from");  // where training started: the checkpoint holds the result
  c.run = train::read_lsvcr_run_options(root.child("lsvcr"));
  if (c.run.stage != train::LsvcrStage::kFinetune)
    throw ConfigError("lsvcr.stage", "seqrec " + command + " takes stage 2 checkpoints (lsvcr.stage: finetune); stage 1's "
                                     "SR model is evaluated by a stage 2 run started from it (train.init_from)");
  config::ConfigNode model_node = root.child("model");
  model_node.require<std::string>("name");  // lsvcr: how the command got here
  const models::LsvcrOptions options = models::read_lsvcr_options(model_node);
  ignore_sections(root, "data model train lsvcr");
  root.finish();
  if (c.data_dir.empty()) throw ConfigError("data.dir", "required key is missing (or pass --data DIR)");
  c.store = data::LsvcrStore::load(c.data_dir + "/" + data::kLsvcrStoreFile);
  std::map<std::string, std::string> meta;
  const train::NamedTensors weights = train::load_tensors(args.checkpoint, &meta);
  for (const auto& [key, noun, have] :
       {std::tuple<const char*, const char*, int64_t>{"num_videos", "videos", c.store.num_videos},
        {"num_comments", "comments", c.store.num_comments}})
    if (meta.count(key) && meta.at(key) != std::to_string(have))
      throw CheckpointError(args.checkpoint + ": built for " + meta.at(key) + " " + noun + ", but " + c.data_dir + " has " +
                            std::to_string(have) + " (a different prepared dataset?)");
  c.model = train::build_lsvcr(options, c.store, c.run);
  train::load_state_into(*c.model, weights, args.checkpoint);
  return c;
}

serve::ServiceData lsvcr_service_data(const std::string& data_dir) {
  const data::LsvcrStore store = data::LsvcrStore::load(data_dir + "/" + data::kLsvcrStoreFile);
  data::StoreData videos;  // the video histories as an interaction store: "user" requests read them
  videos.num_items = store.num_videos;
  videos.user_offsets.push_back(0);
  for (const data::LsvcrHistory& h : store.video_histories) {
    for (int64_t v : h.ids) videos.item_ids.push_back(static_cast<int32_t>(v));
    videos.user_offsets.push_back(videos.item_ids.size());
  }
  return {data_dir, data::ItemCatalog::load(data_dir + "/videos"), data::UserMap::load(data_dir),
          data::InteractionStore::from_data(std::move(videos))};
}

std::shared_ptr<const serve::LsvcrBackend> load_lsvcr_backend(const CliArgs& args, const std::string& checkpoint) {
  if (!is_lsvcr_checkpoint(checkpoint)) return nullptr;
  CliArgs a = args;
  a.checkpoint = checkpoint;
  LsvcrCheckpoint c = load_lsvcr_checkpoint(a, "serve");
  return std::make_shared<serve::LsvcrBackend>(c.model.ptr(), std::make_shared<const data::LsvcrStore>(std::move(c.store)),
                                               data::ItemCatalog::load(c.data_dir + "/comments"));
}

namespace {

/// Dense ids of raw ids (comma or space separated) in `catalog`; `flag` and the file name errors.
std::vector<int64_t> parse_ids(const std::string& text, const data::ItemCatalog& catalog, const std::string& flag,
                               const std::string& file) {
  std::string spaced = text;
  std::replace(spaced.begin(), spaced.end(), ',', ' ');
  std::istringstream in(spaced);
  std::vector<int64_t> out;
  for (std::string raw; in >> raw;) {
    const int64_t id = catalog.find(raw);
    if (id < 0) throw RequestError(flag + ": unknown id '" + raw + "' (not in " + file + ")");
    out.push_back(id);
  }
  return out;
}

}  // namespace

int run_recommend_lsvcr(const CliArgs& args) {
  if (args.user.empty() == (args.history.empty() && args.comment_history.empty()))
    throw RequestError("give exactly one of --user RAW_ID or --history 'VIDEO ...' (and/or --comment-history "
                       "'COMMENT ...'): --user reads both of the user's histories from the store");
  LsvcrCheckpoint c = load_lsvcr_checkpoint(args, "recommend");
  set_threads(c.train.threads);
  const data::ItemCatalog videos = data::ItemCatalog::load(c.data_dir + "/videos");
  const data::ItemCatalog comments = data::ItemCatalog::load(c.data_dir + "/comments");
  serve::LsvcrHistories h;
  if (!args.user.empty()) {
    const int64_t u = data::UserMap::load(c.data_dir).find(args.user);
    if (u < 0) throw RequestError("--user: unknown user id '" + args.user + "' (not in " + c.data_dir + "/users.tsv)");
    h.videos = c.store.video_histories[static_cast<size_t>(u)].ids;
    h.comments = c.store.comment_histories[static_cast<size_t>(u)].ids;
  } else {
    h.videos = parse_ids(args.history, videos, "--history", c.data_dir + "/videos/items.tsv");
    h.comments = parse_ids(args.comment_history, comments, "--comment-history", c.data_dir + "/comments/items.tsv");
  }
  if (h.videos.empty() && h.comments.empty()) throw RequestError("the user has no video and no comment history");
  if (args.video.empty()) {  // next videos; the ones watched are never recommended again
    const serve::Ranked top = serve::lsvcr_next_videos(*c.model, h, args.k, h.videos);
    std::printf("rank\tvideo_id\tscore\ttitle\n");
    for (size_t i = 0; i < top.ids.size(); ++i)
      std::printf("%zu\t%s\t%.4f\t%s\n", i + 1, videos.raw_id(top.ids[i]).c_str(), top.scores[i],
                  videos.title(top.ids[i]).c_str());
    return 0;
  }
  const int64_t video = videos.find(args.video);
  if (video < 0)
    throw RequestError("--video: unknown video id '" + args.video + "' (not in " + c.data_dir + "/videos/items.tsv)");
  // The video's comments, the ones the user engaged with already left out.
  const serve::Ranked top = serve::lsvcr_rank_comments(*c.model, c.store, h, video, args.k, h.comments);
  std::fprintf(stderr, "video %s: %zu comments, %zu ranked\n", args.video.c_str(),
               c.store.video_comments[static_cast<size_t>(video)].size(), top.ids.size());
  std::printf("rank\tcomment_id\tscore\ttext\n");
  for (size_t i = 0; i < top.ids.size(); ++i)
    std::printf("%zu\t%s\t%.4f\t%s\n", i + 1, comments.raw_id(top.ids[i]).c_str(), top.scores[i],
                comments.field(top.ids[i], "text").c_str());
  return 0;
}

}  // namespace seqrec::cli
