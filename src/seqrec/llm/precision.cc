// Mixed precision for the LLM towers.
#include "seqrec/llm/precision.h"

#include <ATen/autocast_mode.h>
#include <torch/torch.h>

#include "seqrec/common/error.h"
#include "seqrec/common/log.h"
#include "seqrec/llm/decoder_lm.h"

namespace seqrec::llm {
namespace {

bool cpu_has_native_bf16() {
#if defined(__x86_64__) && defined(__GNUC__)
  return __builtin_cpu_supports("avx512bf16");
#else
  return false;
#endif
}

// A bfloat16 matmul on the device: what the towers need. Some devices (or builds) have none.
void probe_bf16(torch::Device device, const std::string& field) {
  try {
    auto a = torch::ones({8, 8}, torch::TensorOptions().device(device).dtype(torch::kBFloat16));
    const double sum = torch::matmul(a, a).sum().item<double>();
    if (sum != 8.0 * 8 * 8) throw std::runtime_error("a bfloat16 matmul gave " + std::to_string(sum) + ", not 512");
  } catch (const std::exception& e) {
    throw ConfigError(field, "bf16 is not supported on " + device.str() + " (" + e.what() + "); use fp32");
  }
}

}  // namespace

AutocastScope::AutocastScope(torch::Device device, torch::Dtype dtype) {
  if (dtype == torch::kFloat) return;
  active_ = true;
  cpu_ = device.is_cpu();
  previous_cache_ = at::autocast::is_autocast_cache_enabled();
  at::autocast::set_autocast_cache_enabled(false);
  if (cpu_) {
    previous_enabled_ = at::autocast::is_cpu_enabled();
    previous_dtype_ = at::autocast::get_autocast_cpu_dtype();
    at::autocast::set_autocast_cpu_dtype(dtype);
    at::autocast::set_cpu_enabled(true);
  } else {
    previous_enabled_ = at::autocast::is_enabled();
    previous_dtype_ = at::autocast::get_autocast_gpu_dtype();
    at::autocast::set_autocast_gpu_dtype(dtype);
    at::autocast::set_enabled(true);
  }
}

AutocastScope::~AutocastScope() {
  if (!active_) return;
  if (cpu_) {
    at::autocast::set_cpu_enabled(previous_enabled_);
    at::autocast::set_autocast_cpu_dtype(previous_dtype_);
  } else {
    at::autocast::set_enabled(previous_enabled_);
    at::autocast::set_autocast_gpu_dtype(previous_dtype_);
  }
  at::autocast::set_autocast_cache_enabled(previous_cache_);
}

torch::Dtype precision_dtype(config::Precision precision) {
  return precision == config::Precision::kBf16 ? torch::kBFloat16 : torch::kFloat;
}

int64_t set_training_precision(torch::nn::Module& model, config::Precision precision, torch::Device device,
                               const std::string& field) {
  const torch::Dtype dtype = precision_dtype(precision);
  int64_t towers = 0;
  for (const auto& m : model.modules(/*include_self=*/true))
    if (auto* lm = dynamic_cast<DecoderLmImpl*>(m.get())) {
      lm->training_dtype = dtype;
      ++towers;
    }
  if (dtype == torch::kFloat) return towers;
  if (towers == 0)
    throw ConfigError(field, "bf16 is for LLM towers (hllm, molar, LC-Rec fine-tuning); this model has none "
                             "(use fp32)");
  probe_bf16(device, field);
  if (device.is_cpu() && !cpu_has_native_bf16())
    log_warn("%s: bf16 on a CPU without avx512_bf16: oneDNN emulates the bfloat16 matmuls (expect no speed-up)",
             field.c_str());
  return towers;
}

}  // namespace seqrec::llm
