// train.init_from: a name-mapped, non-strict load of another run's weights.
#include "seqrec/train/init_from.h"

#include <torch/torch.h>

#include <algorithm>
#include <map>

#include "seqrec/common/error.h"
#include "seqrec/common/fs.h"
#include "seqrec/common/log.h"
#include "seqrec/config/config_node.h"
#include "seqrec/train/checkpoint.h"

namespace seqrec::train {
namespace {

std::string shape_of(const torch::Tensor& t) {
  std::string s = "[";
  for (int64_t i = 0; i < t.dim(); ++i) s += (i ? ", " : "") + std::to_string(t.size(i));
  return s + "]";
}

std::string joined(const std::vector<std::string>& names) {
  std::string s;
  for (const auto& n : names) s += (s.empty() ? "" : ", ") + n;
  return s.empty() ? "none" : s;
}

}  // namespace

InitFromOptions read_init_from_options(config::ConfigNode train_node) {
  InitFromOptions o;
  if (!train_node.has("init_from")) return o;
  config::ConfigNode n = train_node.child("init_from");
  o.checkpoint = n.require<std::string>("checkpoint");
  for (const auto& entry : n.get<std::vector<std::string>>("name_map", {})) {
    const auto eq = entry.find('=');
    if (eq == std::string::npos)
      throw ConfigError(n.path() + ".name_map", "expected 'from=to' prefix renames, got '" + entry + "'");
    o.name_map.emplace_back(entry.substr(0, eq), entry.substr(eq + 1));
  }
  return o;
}

std::string map_tensor_name(const std::string& name, const std::vector<std::pair<std::string, std::string>>& name_map) {
  for (const auto& [from, to] : name_map)
    if (name.compare(0, from.size(), from) == 0) return to + name.substr(from.size());
  return name;
}

InitFromReport init_from_checkpoint(torch::nn::Module& model, const InitFromOptions& o) {
  if (!path_exists(o.checkpoint)) throw CheckpointError(o.checkpoint + ": no such checkpoint file (train.init_from.checkpoint)");
  std::map<std::string, torch::Tensor> source;
  for (auto& [name, t] : load_tensors(o.checkpoint, nullptr)) source[map_tensor_name(name, o.name_map)] = t;
  InitFromReport r;
  std::map<std::string, torch::Tensor> target;
  for (auto& [name, t] : model_state(model)) target[name] = t;
  torch::NoGradGuard no_grad;
  for (auto& [name, t] : target) {
    auto it = source.find(name);
    if (it == source.end()) {
      r.missing.push_back(name);
      continue;
    }
    if (it->second.sizes() != t.sizes())
      throw CheckpointError(o.checkpoint + ": tensor '" + name + "': the model has shape " + shape_of(t) +
                            ", the checkpoint " + shape_of(it->second));
    t.copy_(it->second);
    r.loaded.push_back(name);
  }
  for (const auto& [name, t] : source)
    if (!target.count(name)) r.unexpected.push_back(name);
  if (r.loaded.empty())
    throw CheckpointError(o.checkpoint + ": no tensor name matches the model (check train.init_from.name_map); "
                          "checkpoint names after the map: " + joined(r.unexpected));
  log_info("init_from %s: %zu tensors loaded; missing (kept as initialised): %s; unexpected (ignored): %s",
           o.checkpoint.c_str(), r.loaded.size(), joined(r.missing).c_str(), joined(r.unexpected).c_str());
  return r;
}

}  // namespace seqrec::train
