// Checkpoints on top of the torch-free safetensors I/O.
#include "seqrec/train/checkpoint.h"

#include <algorithm>
#include <filesystem>
#include <regex>
#include <set>
#include <sstream>

#include "seqrec/common/error.h"
#include "seqrec/common/fs.h"
#include "seqrec/common/safetensors.h"
#include "seqrec/config/config_node.h"
#include "seqrec/models/registry.h"
#include "seqrec/nn/tensor_view.h"

namespace seqrec::train {
namespace {

std::string shape_str(torch::IntArrayRef s) {
  std::ostringstream out;
  out << s;
  return out.str();
}

std::string join_lines(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& l : lines) out += (out.empty() ? "" : "\n") + l;
  return out;
}

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start < text.size()) {
    const size_t end = std::min(text.find('\n', start), text.size());
    out.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

/// Metadata `key` of `path`, or a CheckpointError naming both.
std::string meta_text(const std::map<std::string, std::string>& meta, const std::string& key, const std::string& path,
                      const char* what) {
  auto it = meta.find(key);
  if (it == meta.end()) throw CheckpointError(path + ": metadata '" + key + "' is missing (" + what + ")");
  return it->second;
}

/// An integer metadata value; a CheckpointError naming file, key and value when it is not one.
int64_t meta_int(const std::map<std::string, std::string>& meta, const std::string& key, const std::string& path,
                 const char* what) {
  const std::string text = meta_text(meta, key, path, what);
  size_t used = 0;
  int64_t v = 0;
  try {
    v = std::stoll(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text.size())
    throw CheckpointError(path + ": metadata '" + key + "': expected an integer, got '" + text + "'");
  return v;
}

double meta_double(const std::map<std::string, std::string>& meta, const std::string& key, const std::string& path,
                   const char* what) {
  const std::string text = meta_text(meta, key, path, what);
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text.size())
    throw CheckpointError(path + ": metadata '" + key + "': expected a number, got '" + text + "'");
  return v;
}

// Full precision, so that resume compares against exactly the same best value.
std::string exact(double v) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

constexpr const char* kModelPrefix = "model.";
constexpr const char* kOptimPrefix = "optim.";

}  // namespace

void save_tensors(const std::string& path, const NamedTensors& tensors,
                  const std::map<std::string, std::string>& metadata) {
  std::vector<torch::Tensor> keep;  // contiguous CPU copies alive until written
  std::vector<StTensorRef> refs;
  for (const auto& [name, t] : tensors) {
    keep.push_back(t.detach().to(torch::kCPU).contiguous());
    const auto& c = keep.back();
    refs.push_back({name, nn::safetensors_dtype(c.scalar_type()), c.sizes().vec(), c.data_ptr()});
  }
  write_safetensors(path, refs, metadata);
}

NamedTensors load_tensors(const std::string& path, std::map<std::string, std::string>* metadata) {
  SafetensorsFile file = SafetensorsFile::open(path);
  NamedTensors out;
  for (const auto& name : file.names()) {
    const StTensorView& v = file.get(name);
    out.emplace_back(name, nn::tensor_view(v).clone());  // copied out of the mapping
  }
  if (metadata) *metadata = file.metadata();
  return out;
}

NamedTensors model_state(const torch::nn::Module& model) {
  NamedTensors out;
  for (const auto& p : model.named_parameters()) out.emplace_back(p.key(), p.value());
  for (const auto& b : model.named_buffers()) out.emplace_back(b.key(), b.value());
  return out;
}

void save_checkpoint(const std::string& path, const torch::nn::Module& model, const std::string& model_yaml,
                     const models::ModelContext& context) {
  std::map<std::string, std::string> meta = {
      {"format", kCheckpointFormat},
      {"model", model_yaml},
      {"num_items", std::to_string(context.num_items)},
      {"max_seq_len", std::to_string(context.max_seq_len)},
  };
  save_tensors(path, model_state(model), meta);
}

void load_state_into(torch::nn::Module& model, const NamedTensors& state, const std::string& origin) {
  NamedTensors target = model_state(model);
  std::set<std::string> expected, found;
  for (const auto& [n, t] : target) expected.insert(n);
  for (const auto& [n, t] : state) found.insert(n);
  std::string missing, unexpected;
  for (const auto& n : expected)
    if (!found.count(n)) missing += (missing.empty() ? "" : ", ") + n;
  for (const auto& n : found)
    if (!expected.count(n)) unexpected += (unexpected.empty() ? "" : ", ") + n;
  if (!missing.empty() || !unexpected.empty())
    throw CheckpointError(origin + ": tensors do not match the model" +
                          (missing.empty() ? "" : "; missing: " + missing) +
                          (unexpected.empty() ? "" : "; unexpected: " + unexpected));
  torch::NoGradGuard no_grad;
  for (auto& [name, t] : target) {
    const auto it = std::find_if(state.begin(), state.end(), [&](const auto& kv) { return kv.first == name; });
    if (it->second.sizes() != t.sizes())
      throw CheckpointError(origin + ": tensor '" + name + "': expected shape " + shape_str(t.sizes()) +
                            ", got " + shape_str(it->second.sizes()));
    if (it->second.is_floating_point()) {
      const int64_t bad = it->second.numel() - torch::isfinite(it->second).sum().item<int64_t>();
      if (bad > 0)
        throw CheckpointError(origin + ": tensor '" + name + "' holds " + std::to_string(bad) +
                              " NaN or infinite value" + (bad == 1 ? "" : "s") +
                              " (saved from a diverged run, or a corrupt file)");
    }
    t.copy_(it->second);
  }
}

LoadedModel load_checkpoint(const std::string& path, const std::string& data_dir) {
  if (!path_exists(path)) throw CheckpointError(path + ": no such checkpoint file");
  std::map<std::string, std::string> meta;
  NamedTensors state = load_tensors(path, &meta);
  const char* what = "not a seqrec checkpoint?";
  auto get = [&](const std::string& key) { return meta_text(meta, key, path, what); };
  if (get("format") != kCheckpointFormat)
    throw CheckpointError(path + ": format '" + get("format") + "' is not supported (expected '" +
                          kCheckpointFormat + "'; written by another seqrec version?)");
  LoadedModel out;
  out.model_yaml = get("model");
  out.context.num_items = meta_int(meta, "num_items", path, what);
  out.context.max_seq_len = meta_int(meta, "max_seq_len", path, what);
  out.context.data_dir = data_dir;
  try {
    config::ConfigNode node = config::ConfigNode::parse(out.model_yaml, path + " [model]");
    out.model = models::make_model(node, out.context);
    node.finish();
  } catch (const ConfigError& e) {  // the user never wrote this config: name where it came from
    throw CheckpointError(path + ": the model config stored in this checkpoint is invalid: " + e.what());
  }
  load_state_into(*out.model, state, path);
  return out;
}

void save_train_state(const std::string& path, const torch::nn::Module& model, const NamedTensors& optimizer_state,
                      const TrainCounters& c) {
  NamedTensors tensors;
  for (const auto& [name, t] : model_state(model)) tensors.emplace_back(kModelPrefix + name, t);
  for (const auto& [name, t] : optimizer_state) tensors.emplace_back(kOptimPrefix + name, t);
  save_tensors(path, tensors,
               {{"format", kTrainStateFormat}, {"epoch", std::to_string(c.epoch)}, {"step", std::to_string(c.step)},
                {"best_metric", exact(c.best_metric)}, {"best_epoch", std::to_string(c.best_epoch)},
                {"bad_evals", std::to_string(c.bad_evals)}, {"stopped", c.stopped ? "1" : "0"},
                {"metrics", c.metrics}, {"optimizer_shards", join_lines(c.optimizer_shards)}});
}

TrainCounters load_train_state(const std::string& path, torch::nn::Module& model, NamedTensors* optimizer_state) {
  std::map<std::string, std::string> meta;
  NamedTensors all = load_tensors(path, &meta);
  const auto format = meta.find("format");
  if (format == meta.end() || format->second != kTrainStateFormat)
    throw CheckpointError(path + ": not a '" + std::string(kTrainStateFormat) + "' resume state" +
                          (format == meta.end() ? std::string(" (no format: written by seqrec before issue 21, it does "
                                                              "not hold the weights, so it cannot be checked to match "
                                                              "last.safetensors; start the run again without --resume)")
                                                : ", format '" + format->second + "'"));
  NamedTensors weights;
  optimizer_state->clear();
  const std::string model_prefix = kModelPrefix, optim_prefix = kOptimPrefix;
  for (auto& [name, t] : all) {
    if (name.compare(0, model_prefix.size(), model_prefix) == 0)
      weights.emplace_back(name.substr(model_prefix.size()), std::move(t));
    else if (name.compare(0, optim_prefix.size(), optim_prefix) == 0)
      optimizer_state->emplace_back(name.substr(optim_prefix.size()), std::move(t));
    else
      throw CheckpointError(path + ": unexpected tensor '" + name + "' (expected names starting with '" +
                            model_prefix + "' or '" + optim_prefix + "')");
  }
  load_state_into(model, weights, path);
  const char* what = "not a complete resume state?";
  TrainCounters c;
  c.epoch = meta_int(meta, "epoch", path, what);
  c.step = meta_int(meta, "step", path, what);
  c.best_metric = meta_double(meta, "best_metric", path, what);
  c.best_epoch = meta_int(meta, "best_epoch", path, what);
  c.bad_evals = meta_int(meta, "bad_evals", path, what);
  c.stopped = meta_int(meta, "stopped", path, what) != 0;
  c.metrics = meta_text(meta, "metrics", path, what);
  const auto shards = meta.find("optimizer_shards");
  if (shards != meta.end()) c.optimizer_shards = split_lines(shards->second);
  return c;
}

std::string optimizer_shard_name(int64_t epoch, int64_t rank, int64_t world_size, const std::string& prefix) {
  return prefix + ".e" + std::to_string(epoch) + ".rank" + std::to_string(rank) + "-of-" +
         std::to_string(world_size) + ".safetensors";
}

void save_optimizer_shard(const std::string& path, const NamedTensors& moments, int64_t epoch, int64_t step) {
  save_tensors(path, moments,
               {{"format", kOptimizerShardFormat}, {"epoch", std::to_string(epoch)}, {"step", std::to_string(step)}});
}

NamedTensors load_optimizer_shards(const std::string& dir, const std::string& state_path, const TrainCounters& c,
                                   const std::function<bool(const std::string&)>& wanted) {
  NamedTensors out;
  for (const auto& name : c.optimizer_shards) {
    const std::string path = dir + "/" + name;
    if (!path_exists(path))
      throw CheckpointError(path + ": optimizer shard named by " + state_path + " is missing (a sharded state is "
                            "read by every rank: out_dir must be visible to all of them)");
    std::map<std::string, std::string> meta;
    NamedTensors tensors = load_tensors(path, &meta);
    const char* what = "not an optimizer shard?";
    const auto format = meta.find("format");
    if (format == meta.end() || format->second != kOptimizerShardFormat)
      throw CheckpointError(path + ": not a '" + std::string(kOptimizerShardFormat) + "' file");
    const int64_t epoch = meta_int(meta, "epoch", path, what), step = meta_int(meta, "step", path, what);
    if (epoch != c.epoch || step != c.step)
      throw CheckpointError(path + ": holds the optimizer state of epoch " + std::to_string(epoch) + " step " +
                            std::to_string(step) + ", but " + state_path + " is epoch " + std::to_string(c.epoch) +
                            " step " + std::to_string(c.step));
    for (auto& [n, t] : tensors)
      if (wanted(n)) out.emplace_back(n, std::move(t));
  }
  return out;
}

void remove_other_optimizer_shards(const std::string& dir, const std::vector<std::string>& keep,
                                   const std::string& prefix) {
  static const std::regex tail(R"(\.e[0-9]+\.rank[0-9]+-of-[0-9]+\.safetensors)");
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.compare(0, prefix.size(), prefix) != 0 || !std::regex_match(name.substr(prefix.size()), tail) ||
        std::find(keep.begin(), keep.end(), name) != keep.end())
      continue;
    bool ours = false;  // a file of that name seqrec did not write stays
    try {
      const auto meta = SafetensorsFile::open(entry.path().string()).metadata();
      const auto format = meta.find("format");
      ours = format != meta.end() && format->second == kOptimizerShardFormat;
    } catch (const std::exception&) {
    }
    if (ours) std::filesystem::remove(entry.path(), ec);
  }
}

}  // namespace seqrec::train
