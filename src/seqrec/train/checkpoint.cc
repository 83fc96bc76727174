// Checkpoints on top of the torch-free safetensors I/O.
#include "seqrec/train/checkpoint.h"

#include <algorithm>
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
    t.copy_(it->second);
  }
}

LoadedModel load_checkpoint(const std::string& path, const std::string& data_dir) {
  if (!path_exists(path)) throw CheckpointError(path + ": no such checkpoint file");
  std::map<std::string, std::string> meta;
  NamedTensors state = load_tensors(path, &meta);
  auto get = [&](const std::string& key) {
    auto it = meta.find(key);
    if (it == meta.end()) throw CheckpointError(path + ": metadata '" + key + "' is missing (not a seqrec checkpoint?)");
    return it->second;
  };
  if (get("format") != kCheckpointFormat)
    throw CheckpointError(path + ": format '" + get("format") + "' is not supported (expected '" +
                          kCheckpointFormat + "'; written by another seqrec version?)");
  LoadedModel out;
  out.model_yaml = get("model");
  out.context.num_items = std::stoll(get("num_items"));
  out.context.max_seq_len = std::stoll(get("max_seq_len"));
  out.context.data_dir = data_dir;
  config::ConfigNode node = config::ConfigNode::parse(out.model_yaml, path + " [model]");
  out.model = models::make_model(node, out.context);
  node.finish();
  load_state_into(*out.model, state, path);
  return out;
}

}  // namespace seqrec::train
