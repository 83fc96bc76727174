// LoRA adapters.
#include "seqrec/nn/lora.h"

#include <torch/torch.h>

#include <cmath>
#include <sstream>

#include "seqrec/common/error.h"
#include "seqrec/common/safetensors.h"
#include "seqrec/nn/dropout.h"
#include "seqrec/nn/tensor_view.h"

namespace seqrec::nn {
namespace {

constexpr const char* kPeftPrefix = "base_model.model.";

bool ends_with_component(const std::string& name, const std::string& last) {
  return name == last || (name.size() > last.size() && name.compare(name.size() - last.size(), last.size(), last) == 0 &&
                          name[name.size() - last.size() - 1] == '.');
}

}  // namespace

LoraLinearImpl::LoraLinearImpl(int64_t in_features, int64_t out_features, bool with_bias)
    : in_(in_features), out_(out_features) {
  // torch.nn.Linear's default initialisation.
  const double bound = 1.0 / std::sqrt(static_cast<double>(in_features));
  weight = register_parameter("weight", torch::empty({out_features, in_features}).uniform_(-bound, bound));
  if (with_bias) bias = register_parameter("bias", torch::empty({out_features}).uniform_(-bound, bound));
}

torch::Tensor LoraLinearImpl::forward(const torch::Tensor& x) {
  auto y = torch::nn::functional::linear(x, weight, bias);
  if (!lora_A) return y;
  return y + lora_B(lora_A(fast_dropout(x, dropout_, is_training()))) * scale_;
}

void LoraLinearImpl::enable_lora(int64_t rank, double alpha, double dropout) {
  TORCH_CHECK(!lora_A, "LoRA adapter already enabled");
  TORCH_CHECK(rank >= 1, "LoRA rank must be >= 1");
  scale_ = alpha / static_cast<double>(rank);
  dropout_ = dropout;
  lora_A = register_module("lora_A", torch::nn::Linear(torch::nn::LinearOptions(in_, rank).bias(false)));
  lora_B = register_module("lora_B", torch::nn::Linear(torch::nn::LinearOptions(rank, out_).bias(false)));
  torch::NoGradGuard no_grad;
  torch::nn::init::kaiming_uniform_(lora_A->weight, std::sqrt(5.0));  // PEFT: kaiming_uniform_(a=sqrt(5))
  lora_B->weight.zero_();
  lora_A->to(weight.device(), weight.scalar_type());
  lora_B->to(weight.device(), weight.scalar_type());
}

void LoraLinearImpl::merge() {
  if (!lora_A) return;
  {
    torch::NoGradGuard no_grad;
    weight.add_(torch::matmul(lora_B->weight, lora_A->weight) * scale_);
  }
  unregister_module("lora_A");
  unregister_module("lora_B");
  lora_A = nullptr;
  lora_B = nullptr;
}

torch::Tensor LoraLinearImpl::merged_weight() const {
  torch::NoGradGuard no_grad;
  if (!lora_A) return weight.detach();
  return weight.detach() + torch::matmul(lora_B->weight, lora_A->weight) * scale_;
}

int64_t apply_lora(torch::nn::Module& model, const LoraOptions& options) {
  if (options.rank < 1) throw ConfigError("lora.rank", "must be >= 1");
  int64_t adapted = 0;
  std::string adaptable;
  for (auto& item : model.named_modules("", /*include_self=*/false)) {
    auto* layer = dynamic_cast<LoraLinearImpl*>(item.value().get());
    if (!layer) continue;
    adaptable += (adaptable.empty() ? "" : ", ") + item.key();
    for (const auto& target : options.target_modules)
      if (ends_with_component(item.key(), target)) {
        layer->enable_lora(options.rank, options.alpha, options.dropout);
        ++adapted;
        break;
      }
  }
  if (adapted == 0) throw ConfigError("lora.target_modules", "no linear layer matched (adaptable: " + adaptable.substr(0, 300) + ")");
  for (auto& p : model.named_parameters()) p.value().set_requires_grad(p.key().find(".lora_") != std::string::npos);
  return adapted;
}

void merge_lora(torch::nn::Module& model) {
  for (auto& item : model.named_modules("", false))
    if (auto* layer = dynamic_cast<LoraLinearImpl*>(item.value().get())) layer->merge();
}

std::vector<std::pair<std::string, torch::Tensor>> lora_state(const torch::nn::Module& model) {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (const auto& p : model.named_parameters())
    if (p.key().find(".lora_") != std::string::npos) out.emplace_back(kPeftPrefix + p.key(), p.value());
  return out;
}

void save_lora(const torch::nn::Module& model, const LoraOptions& options, const std::string& path) {
  auto state = lora_state(model);
  if (state.empty()) throw Error("save_lora: the model has no LoRA adapters");
  std::vector<torch::Tensor> keep;
  std::vector<StTensorRef> refs;
  for (const auto& [name, t] : state) {
    keep.push_back(t.detach().to(torch::kCPU, torch::kFloat).contiguous());
    refs.push_back({name, StDtype::kF32, keep.back().sizes().vec(), keep.back().data_ptr()});
  }
  std::string targets;
  for (const auto& t : options.target_modules) targets += (targets.empty() ? "" : ",") + t;
  std::ostringstream alpha;
  alpha.precision(17);
  alpha << options.alpha;
  write_safetensors(path, refs, {{"format", "pt"}, {"lora_rank", std::to_string(options.rank)},
                                 {"lora_alpha", alpha.str()}, {"lora_dropout", std::to_string(options.dropout)},
                                 {"target_modules", targets}});
}

void load_lora(torch::nn::Module& model, const std::string& path) {
  SafetensorsFile file = SafetensorsFile::open(path);
  const auto& meta = file.metadata();
  auto get = [&](const char* key) {
    auto it = meta.find(key);
    if (it == meta.end()) throw CheckpointError(path + ": metadata '" + key + "' is missing (not a seqrec LoRA file?)");
    return it->second;
  };
  LoraOptions o;
  o.rank = std::stoll(get("lora_rank"));
  o.alpha = std::stod(get("lora_alpha"));
  o.dropout = std::stod(get("lora_dropout"));
  o.target_modules.clear();
  std::stringstream targets(get("target_modules"));
  for (std::string t; std::getline(targets, t, ',');) o.target_modules.push_back(t);
  apply_lora(model, o);
  torch::NoGradGuard no_grad;
  std::string missing;
  for (auto& [name, t] : lora_state(model)) {
    if (!file.contains(name)) {
      missing += (missing.empty() ? "" : ", ") + name;
      continue;
    }
    const StTensorView& v = file.get(name);
    if (v.dtype != StDtype::kF32 || v.shape != t.sizes().vec())
      throw CheckpointError(path + ": tensor '" + name + "' has the wrong dtype or shape");
    t.copy_(tensor_view(v));
  }
  if (!missing.empty()) throw CheckpointError(path + ": missing adapter tensors: " + missing);
}

}  // namespace seqrec::nn
