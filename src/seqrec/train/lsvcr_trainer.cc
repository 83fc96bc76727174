// LSVCR stage 2: batches, losses per step, evaluation and the training loop (lsvcr_trainer.h).
#include "seqrec/train/lsvcr_trainer.h"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <numeric>

#include "seqrec/common/error.h"
#include "seqrec/common/fs.h"
#include "seqrec/common/log.h"
#include "seqrec/common/progress.h"
#include "seqrec/config/config_node.h"
#include "seqrec/config/validate.h"
#include "seqrec/eval/ranking_metrics.h"
#include "seqrec/semantic_id/embedding_file.h"
#include "seqrec/train/checkpoint.h"
#include "seqrec/train/lsvcr_losses.h"
#include "seqrec/train/optim.h"

namespace seqrec::train {

namespace {

const config::Spellings<LsvcrStage> kStages = {{LsvcrStage::kFinetune, "finetune"},
                                               {LsvcrStage::kAlign, "align"},
                                               {LsvcrStage::kRandom, "random"},
                                               {LsvcrStage::kMostPop, "most_pop"}};
const config::Spellings<LsvcrSelection> kSelections = {
    {LsvcrSelection::kMean, "mean"}, {LsvcrSelection::kVideo, "video"}, {LsvcrSelection::kComment, "comment"}};

}  // namespace

std::string name(LsvcrStage value) { return config::spelling(value, kStages); }
std::string name(LsvcrSelection value) { return config::spelling(value, kSelections); }

LsvcrRunOptions read_lsvcr_run_options(config::ConfigNode node) {
  LsvcrRunOptions o;
  o.stage = config::parse_one_of(node.get<std::string>("stage", name(o.stage)), kStages, config::key(node, "stage"));
  o.video_title_emb = node.require<std::string>("video_title_emb");
  o.comment_emb = node.require<std::string>("comment_emb");
  o.neg_comment_num = node.get<int64_t>("neg_comment_num", o.neg_comment_num);
  o.id_text_loss_weight = node.get<double>("id_text_loss_weight", o.id_text_loss_weight);
  o.id_text_negatives = node.get<int64_t>("id_text_negatives", o.id_text_negatives);
  o.eval_video_candidates = node.get<int64_t>("eval_video_candidates", o.eval_video_candidates);
  o.eval_comment_candidates = node.get<int64_t>("eval_comment_candidates", o.eval_comment_candidates);
  o.ks = node.get<std::vector<int64_t>>("ks", o.ks);
  o.selection = config::parse_one_of(node.get<std::string>("selection", name(o.selection)), kSelections,
                                     config::key(node, "selection"));
  o.eval_seed = node.get<int64_t>("eval_seed", o.eval_seed);
  for (const char* k : {"neg_comment_num", "id_text_negatives"})
    config::require_positive(node.get<int64_t>(k, 1), config::key(node, k));
  for (const char* k : {"eval_video_candidates", "eval_comment_candidates"})
    if (node.get<int64_t>(k, 2) < 2) throw ConfigError(config::key(node, k), "must be >= 2");
  if (o.id_text_loss_weight < 0) throw ConfigError(config::key(node, "id_text_loss_weight"), "must be >= 0");
  for (int64_t k : o.ks) config::require_positive(k, config::key(node, "ks"));
  if (std::find(o.ks.begin(), o.ks.end(), 5) == o.ks.end())
    throw ConfigError(config::key(node, "ks"), "must contain 5 (model selection is on ndcg@5)");
  return o;
}

namespace {

torch::Tensor with_padding_row(const std::string& path, int64_t rows) {
  torch::Tensor emb = semantic_id::read_embeddings(path);                       // [N, D_text]
  if (emb.size(0) != rows)
    throw DataError(path + ": expected " + std::to_string(rows) + " rows (one per dense id of the prepared store), got " +
                    std::to_string(emb.size(0)));
  return torch::cat({torch::zeros({1, emb.size(1)}), emb});                     // [N+1, D_text]
}

torch::Tensor as_tensor(const std::vector<int64_t>& v) { return torch::tensor(v, torch::kInt64); }

}  // namespace

models::LsvcrTextTables load_lsvcr_text_tables(const data::LsvcrStore& store, const LsvcrRunOptions& o) {
  models::LsvcrTextTables t;
  t.video_title = with_padding_row(o.video_title_emb, store.num_videos);
  t.comment_text = with_padding_row(o.comment_emb, store.num_comments);
  if (t.video_title.size(1) != t.comment_text.size(1))
    throw DataError(o.comment_emb + ": embedding width " + std::to_string(t.comment_text.size(1)) + " differs from " +
                    o.video_title_emb + "'s " + std::to_string(t.video_title.size(1)));
  t.comment_video = as_tensor(store.comment_video);
  t.video_hot_comment = as_tensor(store.video_hot_comment);
  return t;
}

models::Lsvcr build_lsvcr(models::LsvcrOptions options, const data::LsvcrStore& store, const LsvcrRunOptions& run) {
  models::LsvcrTextTables tables = load_lsvcr_text_tables(store, run);
  options.num_videos = store.num_videos;
  options.num_comments = store.num_comments;
  options.text_input_dim = tables.video_title.size(1);
  models::Lsvcr model(options);
  model->set_text_tables(std::move(tables));
  return model;
}

LsvcrSampleBatch make_lsvcr_batch(const data::LsvcrStore& store, const std::vector<const data::LsvcrSample*>& samples,
                                  int64_t max_history) {
  std::vector<models::LsvcrHistoryView> videos, comments;
  std::vector<int64_t> targets;
  for (const auto* s : samples) {
    videos.push_back({store.video_histories[s->user].ids.data(), s->video_end});
    comments.push_back({store.comment_histories[s->user].ids.data(), s->comment_end});
    targets.push_back(s->target_video);
  }
  LsvcrSampleBatch out;
  out.inputs.video_ids = models::lsvcr_history_rows(videos, max_history);
  out.inputs.comment_ids = models::lsvcr_history_rows(comments, max_history);
  out.videos = as_tensor(targets);
  return out;
}

std::vector<int64_t> sample_comment_negatives(const data::LsvcrStore& store, const data::LsvcrSample& sample, int64_t n,
                                              Rng& rng) {
  const auto& pos = sample.positive_comments;
  auto is_pos = [&](int64_t c) { return std::find(pos.begin(), pos.end(), c) != pos.end(); };
  std::vector<int64_t> pool;
  for (int64_t c : store.video_comments[sample.target_video])
    if (!is_pos(c)) pool.push_back(c);
  std::vector<int64_t> out;
  for (int64_t i = 0; i < n && !pool.empty(); ++i) {  // partial Fisher-Yates: without replacement
    const size_t j = static_cast<size_t>(i) + rng.below(pool.size() - static_cast<size_t>(i));
    std::swap(pool[static_cast<size_t>(i)], pool[j]);
    out.push_back(pool[static_cast<size_t>(i)]);
    if (out.size() == pool.size()) break;
  }
  while (static_cast<int64_t>(out.size()) < n) {  // a small section: random comments elsewhere
    const int64_t c = 1 + static_cast<int64_t>(rng.below(static_cast<uint64_t>(store.num_comments)));
    if (!is_pos(c) || store.num_comments <= static_cast<int64_t>(pos.size())) out.push_back(c);
  }
  return out;
}

LsvcrLossTerms lsvcr_step_loss(models::LsvcrImpl& model, const data::LsvcrStore& store,
                               const std::vector<const data::LsvcrSample*>& video_samples,
                               const std::vector<const data::LsvcrSample*>& comment_samples, const LsvcrRunOptions& o,
                               Rng& rng) {
  const double tau = model.options().temperature;
  const int64_t max_history = model.options().max_history;
  LsvcrLossTerms t;
  t.total = torch::zeros({});
  std::vector<int64_t> history_videos;
  if (!video_samples.empty()) {
    LsvcrSampleBatch vb = make_lsvcr_batch(store, video_samples, max_history);
    auto users = model.video_user(model.encode(vb.inputs));                              // [B, D]
    auto all = model.video_embedding(torch::arange(store.num_videos + 1, torch::kInt64));  // [V+1, D]
    t.video = lsvcr_video_loss(users, all, vb.videos, tau);
    t.total = t.total + t.video;
    auto flat = vb.inputs.video_ids.flatten();
    history_videos.insert(history_videos.end(), flat.data_ptr<int64_t>(), flat.data_ptr<int64_t>() + flat.numel());
  }
  if (!comment_samples.empty()) {
    LsvcrSampleBatch cb = make_lsvcr_batch(store, comment_samples, max_history);
    auto users = model.comment_user(model.encode(cb.inputs), cb.videos);                  // [B, D]
    const int64_t B = static_cast<int64_t>(comment_samples.size()), N = 1 + o.neg_comment_num;
    auto ids = torch::empty({B, N}, torch::kInt64);
    for (int64_t b = 0; b < B; ++b) {
      const auto& s = *comment_samples[b];
      auto* row = ids[b].data_ptr<int64_t>();
      row[0] = s.positive_comments[rng.below(s.positive_comments.size())];
      const auto neg = sample_comment_negatives(store, s, o.neg_comment_num, rng);
      std::copy(neg.begin(), neg.end(), row + 1);
    }
    t.comment = lsvcr_comment_loss(users, model.comment_text(ids), tau);                  // ids [B, 1+n]
    t.total = t.total + t.comment;
    auto flat = cb.inputs.video_ids.flatten();
    history_videos.insert(history_videos.end(), flat.data_ptr<int64_t>(), flat.data_ptr<int64_t>() + flat.numel());
  }
  if (o.id_text_loss_weight > 0 && model.options().use_id_embeddings) {
    std::sort(history_videos.begin(), history_videos.end());
    history_videos.erase(std::unique(history_videos.begin(), history_videos.end()), history_videos.end());
    if (!history_videos.empty() && history_videos[0] == 0) history_videos.erase(history_videos.begin());
    for (size_t i = 0; i < history_videos.size(); ++i)  // a random subset of 1 + id_text_negatives
      std::swap(history_videos[i], history_videos[i + rng.below(history_videos.size() - i)]);
    history_videos.resize(std::min<size_t>(history_videos.size(), static_cast<size_t>(1 + o.id_text_negatives)));
    if (history_videos.size() >= 2) {
      auto ids = as_tensor(history_videos);                                                // [N]
      t.id_text = lsvcr_id_text_loss(model.video_id_embedding(ids), model.video_text(ids), tau);
      t.total = t.total + o.id_text_loss_weight * t.id_text;
    }
  }
  return t;
}

// ---- evaluation ----

namespace {

std::vector<const data::LsvcrSample*> pointers(const std::vector<data::LsvcrSample>& samples, size_t begin, size_t end) {
  std::vector<const data::LsvcrSample*> out;
  for (size_t i = begin; i < end; ++i) out.push_back(&samples[i]);
  return out;
}

/// Candidates of a video sample: the target first, then distinct random other videos.
std::vector<int64_t> video_candidates(const data::LsvcrStore& store, const data::LsvcrSample& s, int64_t n, uint64_t seed) {
  Rng rng(derive_seed({seed, static_cast<uint64_t>(s.user), static_cast<uint64_t>(s.video_end), 1}));
  std::vector<int64_t> out{s.target_video};
  const int64_t want = std::min<int64_t>(n, store.num_videos);
  std::vector<char> used(static_cast<size_t>(store.num_videos + 1), 0);
  used[static_cast<size_t>(s.target_video)] = 1;
  while (static_cast<int64_t>(out.size()) < want) {
    const int64_t v = 1 + static_cast<int64_t>(rng.below(static_cast<uint64_t>(store.num_videos)));
    if (!used[static_cast<size_t>(v)]) {
      used[static_cast<size_t>(v)] = 1;
      out.push_back(v);
    }
  }
  return out;
}

/// Candidates of a comment sample: its positives first (at most n - 1), then other comments of the
/// video, a random subset when the section is larger than n.
std::vector<int64_t> comment_candidates(const data::LsvcrStore& store, const data::LsvcrSample& s, int64_t n,
                                        uint64_t seed, int64_t* num_positives) {
  Rng rng(derive_seed({seed, static_cast<uint64_t>(s.user), static_cast<uint64_t>(s.comment_end), 2}));
  std::vector<int64_t> out(s.positive_comments.begin(),
                           s.positive_comments.begin() + std::min<int64_t>(n - 1, s.positive_comments.size()));
  *num_positives = static_cast<int64_t>(out.size());
  std::vector<int64_t> others;
  for (int64_t c : store.video_comments[s.target_video])
    if (std::find(s.positive_comments.begin(), s.positive_comments.end(), c) == s.positive_comments.end()) others.push_back(c);
  for (size_t i = 0; i < others.size() && static_cast<int64_t>(out.size()) < n; ++i) {
    std::swap(others[i], others[i + rng.below(others.size() - i)]);
    out.push_back(others[i]);
  }
  return out;
}

void add_prefixed(eval::MetricSet& into, const eval::MetricSet& from, const std::string& prefix) {
  for (const auto& [k, v] : from) into[prefix + k] = v;
}

}  // namespace

eval::MetricSet evaluate_lsvcr(models::LsvcrImpl& model, const data::LsvcrStore& store, const data::LsvcrSplit& split,
                               const LsvcrRunOptions& o, int64_t batch_size) {
  torch::NoGradGuard no_grad;
  const bool was_training = model.is_training();
  model.eval();
  const int64_t max_history = model.options().max_history;
  const auto seed = static_cast<uint64_t>(o.eval_seed);
  eval::RankingAccumulator videos(o.ks), comments(o.ks);
  auto all = model.video_embedding(torch::arange(store.num_videos + 1, torch::kInt64));  // [V+1, D]
  for (size_t b = 0; b < split.video.size(); b += static_cast<size_t>(batch_size)) {
    const auto samples = pointers(split.video, b, std::min(split.video.size(), b + static_cast<size_t>(batch_size)));
    auto users = model.video_user(model.encode(make_lsvcr_batch(store, samples, max_history).inputs));  // [B, D]
    for (size_t i = 0; i < samples.size(); ++i) {
      auto ids = as_tensor(video_candidates(store, *samples[i], o.eval_video_candidates, seed));        // [N]
      auto scores = model.score(users.slice(0, i, i + 1), all.index({ids})).squeeze(0).contiguous();  // [N]
      videos.add(std::vector<float>(scores.data_ptr<float>(), scores.data_ptr<float>() + scores.numel()), {0});
    }
  }
  for (size_t b = 0; b < split.comment.size(); b += static_cast<size_t>(batch_size)) {
    const auto samples = pointers(split.comment, b, std::min(split.comment.size(), b + static_cast<size_t>(batch_size)));
    LsvcrSampleBatch cb = make_lsvcr_batch(store, samples, max_history);
    auto users = model.comment_user(model.encode(cb.inputs), cb.videos);                             // [B, D]
    for (size_t i = 0; i < samples.size(); ++i) {
      int64_t num_pos = 0;
      auto ids = as_tensor(comment_candidates(store, *samples[i], o.eval_comment_candidates, seed, &num_pos));
      auto scores = model.score(users.slice(0, i, i + 1), model.comment_text(ids)).squeeze(0).contiguous();
      std::vector<int64_t> positives(static_cast<size_t>(num_pos));
      std::iota(positives.begin(), positives.end(), 0);
      comments.add(std::vector<float>(scores.data_ptr<float>(), scores.data_ptr<float>() + scores.numel()), positives);
    }
  }
  model.train(was_training);
  eval::MetricSet m;
  if (videos.count() > 0) add_prefixed(m, videos.result(), "video_");
  if (comments.count() > 0) add_prefixed(m, comments.result(), "comment_");
  m["video_samples"] = static_cast<double>(videos.count());
  m["comment_samples"] = static_cast<double>(comments.count());
  return m;
}

eval::MetricSet evaluate_lsvcr_baseline(const data::LsvcrStore& store, const data::LsvcrSplits& splits,
                                        const data::LsvcrSplit& split, const LsvcrRunOptions& o, bool most_popular) {
  std::vector<double> video_count(static_cast<size_t>(store.num_videos + 1), 0.0);
  std::vector<double> comment_count(static_cast<size_t>(store.num_comments + 1), 0.0);
  for (const auto& s : splits.train.video) video_count[static_cast<size_t>(s.target_video)] += 1;
  for (const auto& s : splits.train.comment)
    for (int64_t c : s.positive_comments) comment_count[static_cast<size_t>(c)] += 1;
  const auto seed = static_cast<uint64_t>(o.eval_seed);
  Rng noise(derive_seed({seed, 99}));
  // Most-popular ties (and the random baseline) are broken by a small random score.
  auto score = [&](double count) { return static_cast<float>((most_popular ? count : 0.0) + 1e-3 * noise.uniform()); };
  eval::RankingAccumulator videos(o.ks), comments(o.ks);
  for (const auto& s : split.video) {
    std::vector<float> scores;
    for (int64_t v : video_candidates(store, s, o.eval_video_candidates, seed)) scores.push_back(score(video_count[v]));
    videos.add(scores, {0});
  }
  for (const auto& s : split.comment) {
    int64_t num_pos = 0;
    std::vector<float> scores;
    for (int64_t c : comment_candidates(store, s, o.eval_comment_candidates, seed, &num_pos))
      scores.push_back(score(comment_count[c]));
    std::vector<int64_t> positives(static_cast<size_t>(num_pos));
    std::iota(positives.begin(), positives.end(), 0);
    comments.add(scores, positives);
  }
  eval::MetricSet m;
  if (videos.count() > 0) add_prefixed(m, videos.result(), "video_");
  if (comments.count() > 0) add_prefixed(m, comments.result(), "comment_");
  m["video_samples"] = static_cast<double>(videos.count());
  m["comment_samples"] = static_cast<double>(comments.count());
  return m;
}

double lsvcr_selection_metric(const eval::MetricSet& m, const LsvcrRunOptions& o) {
  auto get = [&](const char* k) {
    auto it = m.find(k);
    return it == m.end() ? 0.0 : it->second;
  };
  if (o.selection == LsvcrSelection::kVideo) return get("video_ndcg@5");
  if (o.selection == LsvcrSelection::kComment) return get("comment_ndcg@5");
  return 0.5 * (get("video_ndcg@5") + get("comment_ndcg@5"));
}

// ---- training loop ----

namespace {

std::string metrics_line(const eval::MetricSet& m, const std::string& split, int64_t epoch) {
  std::string line = eval::to_json_line(m, split, "lsvcr", static_cast<int64_t>(m.at("video_samples")));
  return line.substr(0, line.size() - 1) + ",\"epoch\":" + std::to_string(epoch) + "}";
}

/// Shuffled order of n samples for an epoch.
std::vector<size_t> epoch_order(size_t n, Rng& rng) {
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  for (size_t i = n; i > 1; --i) std::swap(order[i - 1], order[rng.below(i)]);
  return order;
}

}  // namespace

LsvcrSummary fit_lsvcr(models::LsvcrImpl& model, const data::LsvcrStore& store, const data::LsvcrSplits& splits,
                       const config::TrainOptions& t, const LsvcrRunOptions& o,
                       const std::map<std::string, std::string>& metadata) {
  make_dirs(t.out_dir);
  const std::string best_path = t.out_dir + "/best.safetensors", last_path = t.out_dir + "/last.safetensors",
                    log_path = t.out_dir + "/metrics.jsonl";
  NamedTensors params;
  for (const auto& p : model.named_parameters())
    if (p.value().requires_grad()) params.emplace_back(p.key(), p.value());
  AdamW optimizer(params, {t.lr, t.beta1, t.beta2, t.eps, t.weight_decay});
  const auto& tv = splits.train.video;
  const auto& tc = splits.train.comment;
  const size_t B = static_cast<size_t>(t.batch_size);
  const size_t steps = (std::max(tv.size(), tc.size()) + B - 1) / B;
  if (steps == 0) throw DataError("lsvcr: no training samples (every user has too short histories)");
  LsvcrSummary summary;
  summary.best_metric = -1;
  int64_t bad_evals = 0;
  const auto start = std::chrono::steady_clock::now();
  for (int64_t epoch = 0; epoch < t.epochs; ++epoch) {
    Rng rng(derive_seed({static_cast<uint64_t>(t.seed), static_cast<uint64_t>(epoch)}));
    torch::manual_seed(derive_seed({static_cast<uint64_t>(t.seed), static_cast<uint64_t>(epoch), 1}));  // dropout
    const auto vo = epoch_order(tv.size(), rng), co = epoch_order(tc.size(), rng);
    model.train();
    ProgressBar bar("lsvcr epoch " + std::to_string(epoch + 1) + "/" + std::to_string(t.epochs),
                    static_cast<int64_t>(steps), t.log_every);
    double loss_sum = 0;
    for (size_t step = 0; step < steps; ++step) {
      std::vector<const data::LsvcrSample*> vb, cb;
      for (size_t i = step * B; i < (step + 1) * B; ++i) {
        if (!tv.empty() && (i < tv.size() || tv.size() < tc.size())) vb.push_back(&tv[vo[i % tv.size()]]);
        if (!tc.empty() && (i < tc.size() || tc.size() < tv.size())) cb.push_back(&tc[co[i % tc.size()]]);
      }
      optimizer.zero_grad();
      LsvcrLossTerms loss = lsvcr_step_loss(model, store, vb, cb, o, rng);
      loss.total.backward();
      if (t.clip_norm > 0) clip_grad_norm(params, t.clip_norm);
      optimizer.step(t.lr);
      loss_sum += loss.total.item<double>();
      bar.update(static_cast<int64_t>(step + 1), loss.total.item<double>(), t.lr, static_cast<int64_t>(vb.size() + cb.size()));
    }
    bar.finish(loss_sum / double(steps));
    summary.epochs_run = epoch + 1;
    save_tensors(last_path, model_state(model), metadata);
    if ((epoch + 1) % t.eval_every != 0 && epoch + 1 != t.epochs) continue;
    const eval::MetricSet valid = evaluate_lsvcr(model, store, splits.valid, o, t.batch_size);
    append_line(log_path, metrics_line(valid, "valid", epoch + 1));
    const double value = lsvcr_selection_metric(valid, o);
    log_info("[eval] split=valid epoch %ld video_ndcg@5=%.4f comment_ndcg@5=%.4f selection(%s)=%.4f", long(epoch + 1),
             valid.count("video_ndcg@5") ? valid.at("video_ndcg@5") : 0.0,
             valid.count("comment_ndcg@5") ? valid.at("comment_ndcg@5") : 0.0, name(o.selection).c_str(), value);
    if (value > summary.best_metric) {
      summary.best_metric = value;
      summary.best_epoch = epoch + 1;
      bad_evals = 0;
      save_tensors(best_path, model_state(model), metadata);
    } else if (t.patience > 0 && ++bad_evals >= t.patience) {
      log_info("early stop: no better valid ndcg@5 in %ld evaluations", long(t.patience));
      break;
    }
  }
  summary.train_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  load_state_into(model, load_tensors(best_path, nullptr), best_path);
  summary.test = evaluate_lsvcr(model, store, splits.test, o, t.batch_size);
  append_line(log_path, metrics_line(summary.test, "test", summary.best_epoch));
  return summary;
}

}  // namespace seqrec::train
