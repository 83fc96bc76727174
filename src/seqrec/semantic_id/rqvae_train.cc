// The RQ-VAE training loop (LC-Rec index/trainer.py) and its safetensors checkpoint.
#include "seqrec/semantic_id/rqvae_train.h"

#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cmath>
#include <limits>
#include <numeric>

#include "seqrec/common/error.h"
#include "seqrec/common/fs.h"
#include "seqrec/common/log.h"
#include "seqrec/common/random.h"
#include "seqrec/semantic_id/item_index.h"
#include "seqrec/train/checkpoint.h"
#include "seqrec/train/optim.h"

namespace seqrec::semantic_id {
namespace {

using nlohmann::json;

std::vector<int64_t> to_vector(const torch::Tensor& codes) {
  auto c = codes.to(torch::kCPU, torch::kLong).contiguous();
  return std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
}

std::string metrics_line(const RqVaeEvalRecord& r) {
  json j = {{"epoch", r.epoch},   {"loss", r.loss}, {"recon", r.recon},
            {"lr", r.lr},         {"collision_rate", r.collision_rate}, {"used_codes", r.used_codes}};
  return j.dump();
}

std::string codes_text(const std::vector<int64_t>& used) {
  std::string s;
  for (int64_t u : used) s += (s.empty() ? "" : "/") + std::to_string(u);
  return s;
}

// Sums of one epoch.
struct EpochLosses {
  double loss = 0, recon = 0, lr = 0;
  int64_t batches = 0;
};

// The mutable state of a run, so that the epoch function stays short.
struct RunState {
  train::AdamW optimizer;
  int64_t total_steps = 0, warmup_steps = 0;
};

EpochLosses train_epoch(RqVaeImpl& model, const torch::Tensor& embeddings, const RqVaeTrainOptions& o,
                        int64_t epoch, RunState& state) {
  const int64_t n = embeddings.size(0);
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  Rng rng(derive_seed({o.seed, static_cast<uint64_t>(epoch)}));
  shuffle(order.begin(), order.end(), rng);
  auto perm = torch::tensor(order, torch::kLong).to(embeddings.device());
  model.train();
  EpochLosses e;
  for (int64_t start = 0; start < n; start += o.batch_size) {
    auto x = embeddings.index_select(0, perm.narrow(0, start, std::min(o.batch_size, n - start)));  // [B, d]
    state.optimizer.zero_grad();
    RqVaeLoss loss = model.compute_loss(model.forward(x, /*use_sinkhorn=*/true), x);
    const double value = loss.total.item<double>();
    if (!std::isfinite(value))
      throw Error("rqvae: training loss is " + std::to_string(value) + " at epoch " + std::to_string(epoch + 1) +
                  " (hint: lower semantic_id.lr)");
    loss.total.backward();
    train::clip_grad_norm(state.optimizer.params(), o.clip_norm);
    const int64_t step = state.optimizer.step_count();
    e.lr = o.lr * rqvae_lr_factor(o.schedule, step, state.total_steps, state.warmup_steps);
    state.optimizer.step(e.lr);
    e.loss += value;
    e.recon += loss.recon.item<double>();
    ++e.batches;
  }
  return e;
}

}  // namespace

double rqvae_lr_factor(const std::string& schedule, int64_t step, int64_t total, int64_t warmup) {
  if (step < warmup) return static_cast<double>(step) / static_cast<double>(std::max<int64_t>(1, warmup));
  if (schedule == "constant") return 1.0;
  return std::max(0.0, static_cast<double>(total - step) / static_cast<double>(std::max<int64_t>(1, total - warmup)));
}

torch::Tensor all_codes(RqVaeImpl& model, const torch::Tensor& embeddings, int64_t batch_size) {
  model.eval();
  const int64_t n = embeddings.size(0);
  const std::vector<double> argmin(static_cast<size_t>(model.options().num_levels), 0.0);
  std::vector<torch::Tensor> parts;
  for (int64_t start = 0; start < n; start += batch_size)
    parts.push_back(model.codes(embeddings.narrow(0, start, std::min(batch_size, n - start)), argmin));
  return torch::cat(parts, 0).to(torch::kCPU);                                            // [V, M]
}

RqVaeTrainSummary train_rqvae(RqVaeImpl& model, const torch::Tensor& embeddings_in, const RqVaeTrainOptions& o) {
  const auto start_time = std::chrono::steady_clock::now();
  const auto device = model.parameters().front().device();
  const torch::Tensor embeddings = embeddings_in.to(device, torch::kFloat);
  const int64_t n = embeddings.size(0), levels = model.options().num_levels;
  const int64_t batches = (n + o.batch_size - 1) / o.batch_size;
  std::vector<std::pair<std::string, torch::Tensor>> params;
  for (const auto& p : model.named_parameters()) params.emplace_back(p.key(), p.value());
  train::AdamWOptions adam;
  adam.lr = o.lr;
  adam.weight_decay = o.weight_decay;
  RunState state{train::AdamW(params, adam), o.epochs * batches, o.warmup_epochs * batches};
  const int64_t eval_every = std::min(o.eval_every, o.epochs);
  RqVaeTrainSummary summary;
  double best = std::numeric_limits<double>::infinity();
  std::string metrics;
  for (int64_t epoch = 0; epoch < o.epochs; ++epoch) {
    const EpochLosses e = train_epoch(model, embeddings, o, epoch, state);
    if ((epoch + 1) % eval_every != 0) continue;
    const std::vector<int64_t> codes = to_vector(all_codes(model, embeddings, o.batch_size));
    RqVaeEvalRecord r;
    r.epoch = epoch + 1;
    r.loss = e.loss / static_cast<double>(e.batches);
    r.recon = e.recon / static_cast<double>(e.batches);
    r.lr = e.lr;
    r.collision_rate = collision_stats(codes, levels).rate();
    r.used_codes = used_codes_per_level(codes, levels);
    summary.evals.push_back(r);
    const bool improved = r.collision_rate < best;
    if (improved) {
      best = r.collision_rate;
      summary.best_epoch = r.epoch;
      summary.best_collision_rate = r.collision_rate;
      if (!o.checkpoint_path.empty())
        save_rqvae(o.checkpoint_path, model,
                   {{"epoch", std::to_string(r.epoch)}, {"collision_rate", std::to_string(r.collision_rate)}});
    }
    if (!o.metrics_path.empty()) {
      metrics += metrics_line(r) + "\n";
      write_file_atomic(o.metrics_path, metrics);
    }
    if (static_cast<int64_t>(summary.evals.size()) % o.log_every_evals == 0 || improved)
      log_info("[rqvae] epoch %ld/%ld loss %.5f recon %.5f lr %.2e collision %.4f codes %s%s", long(r.epoch),
               long(o.epochs), r.loss, r.recon, r.lr, r.collision_rate, codes_text(r.used_codes).c_str(),
               improved ? " (best)" : "");
  }
  model.eval();
  summary.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_time).count();
  return summary;
}

void save_rqvae(const std::string& path, const RqVaeImpl& model, const std::map<std::string, std::string>& extra) {
  const RqVaeOptions& o = model.options();
  json config = {{"input_dim", o.input_dim},
                 {"hidden_dims", o.hidden_dims},
                 {"code_dim", o.code_dim},
                 {"num_levels", o.num_levels},
                 {"num_codes", o.num_codes},
                 {"dropout", o.dropout},
                 {"batch_norm", o.batch_norm},
                 {"loss_type", o.loss_type},
                 {"quant_loss_weight", o.quant_loss_weight},
                 {"beta", o.beta},
                 {"kmeans_init", o.kmeans_init},
                 {"kmeans_iters", o.kmeans_iters},
                 {"kmeans_seed", o.kmeans_seed},
                 {"sk_epsilons", o.sk_epsilons},
                 {"sk_iters", o.sk_iters}};
  std::map<std::string, std::string> meta = extra;
  meta["format"] = kRqVaeFormat;
  meta["config"] = config.dump();
  train::save_tensors(path, train::model_state(model), meta);
}

RqVae load_rqvae(const std::string& path, std::map<std::string, std::string>* metadata) {
  if (!path_exists(path)) throw CheckpointError(path + ": no such file");
  std::map<std::string, std::string> meta;
  train::NamedTensors state = train::load_tensors(path, &meta);
  auto format = meta.find("format");
  if (format == meta.end() || format->second != kRqVaeFormat)
    throw CheckpointError(path + ": not an RQ-VAE checkpoint (format '" +
                          (format == meta.end() ? std::string("none") : format->second) + "', expected '" +
                          kRqVaeFormat + "')");
  RqVaeOptions o;
  try {
    const json c = json::parse(meta.at("config"));
    o.input_dim = c.at("input_dim").get<int64_t>();
    o.hidden_dims = c.at("hidden_dims").get<std::vector<int64_t>>();
    o.code_dim = c.at("code_dim").get<int64_t>();
    o.num_levels = c.at("num_levels").get<int64_t>();
    o.num_codes = c.at("num_codes").get<int64_t>();
    o.dropout = c.at("dropout").get<double>();
    o.batch_norm = c.at("batch_norm").get<bool>();
    o.loss_type = c.at("loss_type").get<std::string>();
    o.quant_loss_weight = c.at("quant_loss_weight").get<double>();
    o.beta = c.at("beta").get<double>();
    o.kmeans_init = c.at("kmeans_init").get<bool>();
    o.kmeans_iters = c.at("kmeans_iters").get<int64_t>();
    o.kmeans_seed = c.at("kmeans_seed").get<int64_t>();
    o.sk_epsilons = c.at("sk_epsilons").get<std::vector<double>>();
    o.sk_iters = c.at("sk_iters").get<int64_t>();
  } catch (const std::exception& e) {
    throw CheckpointError(path + ": bad RQ-VAE config in the metadata: " + e.what());
  }
  if (o.input_dim < 1 || o.code_dim < 1 || o.num_levels < 1 || o.num_levels > kMaxLevels || o.num_codes < 1 ||
      static_cast<int64_t>(o.sk_epsilons.size()) != o.num_levels)
    throw CheckpointError(path + ": inconsistent RQ-VAE config in the metadata: " + meta.at("config"));
  RqVae model(o);
  train::load_state_into(*model, state, path);
  for (size_t l = 0; l < model->rq->vq_layers->size(); ++l)
    model->rq->vq_layers->ptr<VectorQuantizerImpl>(l)->set_initialised();
  model->eval();
  if (metadata) *metadata = meta;
  return model;
}

}  // namespace seqrec::semantic_id
