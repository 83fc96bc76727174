// Reader and validation of the `semantic_id:` section. Defaults are LC-Rec's index/run.sh.
#include "seqrec/semantic_id/semantic_id_config.h"

#include <regex>

#include "seqrec/common/error.h"
#include "seqrec/config/config_node.h"
#include "seqrec/config/validate.h"

namespace seqrec::semantic_id {
namespace {

using config::key;

void read_model(config::ConfigNode& n, SemanticIdConfig& c) {
  RqVaeOptions& m = c.model;
  c.auto_hidden_dims = !n.has("hidden_dims");
  if (!c.auto_hidden_dims) m.hidden_dims = n.get<std::vector<int64_t>>("hidden_dims", {});
  m.code_dim = n.get<int64_t>("code_dim", m.code_dim);
  m.num_levels = n.get<int64_t>("levels", m.num_levels);
  m.num_codes = n.get<int64_t>("num_codes", m.num_codes);
  m.dropout = n.get<double>("dropout", m.dropout);
  m.batch_norm = n.get<bool>("batch_norm", m.batch_norm);
  m.loss_type = n.get<std::string>("loss_type", m.loss_type);
  m.quant_loss_weight = n.get<double>("quant_loss_weight", m.quant_loss_weight);
  m.beta = n.get<double>("beta", m.beta);
  m.kmeans_init = n.get<bool>("kmeans_init", m.kmeans_init);
  m.kmeans_iters = n.get<int64_t>("kmeans_iters", m.kmeans_iters);
  config::require_positive(m.code_dim, key(n, "code_dim"));
  config::require_positive(m.num_codes, key(n, "num_codes"));
  config::require_positive(m.kmeans_iters, key(n, "kmeans_iters"));
  if (m.num_levels < 1 || m.num_levels > kMaxLevels)
    throw ConfigError(key(n, "levels"), "must be 1.." + std::to_string(kMaxLevels) +
                                            " (token prefixes a..e), got " + std::to_string(m.num_levels));
  for (size_t i = 0; i < m.hidden_dims.size(); ++i)
    if (m.hidden_dims[i] < 1) throw ConfigError(key(n, "hidden_dims[" + std::to_string(i) + "]"), "must be >= 1");
  // Default: argmin on every level but the last, Sinkhorn (0.003) there, as index/run.sh.
  std::vector<double> eps(static_cast<size_t>(m.num_levels), 0.0);
  eps.back() = 0.003;
  m.sk_epsilons = n.get<std::vector<double>>("sk_epsilons", eps);
  m.sk_iters = n.get<int64_t>("sk_iters", m.sk_iters);
  if (static_cast<int64_t>(m.sk_epsilons.size()) != m.num_levels)
    throw ConfigError(key(n, "sk_epsilons"), "needs one epsilon per level (" + std::to_string(m.num_levels) +
                                                 "), got " + std::to_string(m.sk_epsilons.size()));
  for (size_t i = 0; i < m.sk_epsilons.size(); ++i)
    if (!(m.sk_epsilons[i] >= 0))
      throw ConfigError(key(n, "sk_epsilons[" + std::to_string(i) + "]"), "must be >= 0 (0 = argmin)");
  config::require_positive(m.sk_iters, key(n, "sk_iters"));
  if (!(m.dropout >= 0 && m.dropout < 1)) throw ConfigError(key(n, "dropout"), "must be in [0, 1)");
  if (m.loss_type != "mse" && m.loss_type != "l1")
    throw ConfigError(key(n, "loss_type"), "'" + m.loss_type + "' is not one of: mse, l1");
  if (!(m.beta >= 0)) throw ConfigError(key(n, "beta"), "must be >= 0");
  if (!(m.quant_loss_weight >= 0)) throw ConfigError(key(n, "quant_loss_weight"), "must be >= 0");
}

void read_train(config::ConfigNode& n, SemanticIdConfig& c) {
  RqVaeTrainOptions& t = c.train;
  t.lr = n.get<double>("lr", t.lr);
  t.weight_decay = n.get<double>("weight_decay", t.weight_decay);
  t.batch_size = n.get<int64_t>("batch_size", t.batch_size);
  t.epochs = n.get<int64_t>("epochs", t.epochs);
  t.schedule = n.get<std::string>("schedule", t.schedule);
  t.warmup_epochs = n.get<int64_t>("warmup_epochs", t.warmup_epochs);
  t.clip_norm = n.get<double>("clip_norm", t.clip_norm);
  t.eval_every = n.get<int64_t>("eval_every", t.eval_every);
  t.log_every_evals = n.get<int64_t>("log_every", t.log_every_evals);
  const int64_t seed = n.get<int64_t>("seed", static_cast<int64_t>(t.seed));
  t.seed = static_cast<uint64_t>(seed);
  c.model.kmeans_seed = seed;
  if (!(t.lr > 0)) throw ConfigError(key(n, "lr"), "must be > 0");
  if (!(t.weight_decay >= 0)) throw ConfigError(key(n, "weight_decay"), "must be >= 0");
  config::require_positive(t.batch_size, key(n, "batch_size"));
  config::require_positive(t.epochs, key(n, "epochs"));
  config::require_positive(t.eval_every, key(n, "eval_every"));
  config::require_positive(t.log_every_evals, key(n, "log_every"));
  if (t.schedule != "linear" && t.schedule != "constant")
    throw ConfigError(key(n, "schedule"), "'" + t.schedule + "' is not one of: linear, constant");
  if (t.warmup_epochs < 0) throw ConfigError(key(n, "warmup_epochs"), "must be >= 0");
  if (!(t.clip_norm >= 0)) throw ConfigError(key(n, "clip_norm"), "must be >= 0 (0 = off)");
}

}  // namespace

SemanticIdConfig read_semantic_id_config(config::ConfigNode n) {
  SemanticIdConfig c;
  c.embeddings = n.require<std::string>("embeddings");
  c.embeddings_tensor = n.get<std::string>("embeddings_tensor", c.embeddings_tensor);
  c.data_dir = n.get<std::string>("data_dir", c.data_dir);
  c.dataset = n.get<std::string>("dataset", c.dataset);
  c.out_dir = n.require<std::string>("out_dir");
  read_model(n, c);
  read_train(n, c);
  c.index.max_rounds = n.get<int64_t>("collision_rounds", c.index.max_rounds);
  c.index.default_epsilon = n.get<double>("collision_epsilon", c.index.default_epsilon);
  c.device = n.get<std::string>("device", c.device);
  c.threads = n.get<int64_t>("threads", c.threads);
  if (c.dataset.empty() || c.dataset.find('/') != std::string::npos)
    throw ConfigError(key(n, "dataset"), "must be a non-empty file name stem (no '/'), got '" + c.dataset + "'");
  if (c.index.max_rounds < 0) throw ConfigError(key(n, "collision_rounds"), "must be >= 0");
  if (!(c.index.default_epsilon > 0)) throw ConfigError(key(n, "collision_epsilon"), "must be > 0");
  if (!std::regex_match(c.device, std::regex("cpu|cuda(:[0-9]+)?")))
    throw ConfigError(key(n, "device"), "'" + c.device + "' is not one of: cpu, cuda, cuda:N");
  if (c.threads < 0) throw ConfigError(key(n, "threads"), "must be >= 0 (0 = all cores)");
  c.index.batch_size = c.train.batch_size;
  return c;
}

void fit_to_embeddings(SemanticIdConfig& c, int64_t num_items, int64_t dim) {
  c.model.input_dim = dim;
  if (c.auto_hidden_dims) {
    c.model.hidden_dims.clear();
    for (int64_t h : upstream_hidden_dims())
      if (h < dim && h > c.model.code_dim) c.model.hidden_dims.push_back(h);
  }
  const int64_t first_batch = std::min(c.train.batch_size, num_items);
  if (c.model.kmeans_init && first_batch < c.model.num_codes)
    throw ConfigError("semantic_id.num_codes",
                      std::to_string(c.model.num_codes) + " codes per level cannot be seeded by k-means on a first "
                      "batch of " + std::to_string(first_batch) + " items (" + std::to_string(num_items) +
                      " items, batch_size " + std::to_string(c.train.batch_size) +
                      "); lower num_codes, raise batch_size, or set kmeans_init: false");
}

}  // namespace seqrec::semantic_id
