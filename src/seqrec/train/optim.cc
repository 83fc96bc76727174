// AdamW and schedules.
#include "seqrec/train/optim.h"

#include <cmath>

#include "seqrec/common/error.h"

namespace seqrec::train {

AdamW::AdamW(std::vector<std::pair<std::string, torch::Tensor>> params, AdamWOptions options, std::vector<bool> owned)
    : params_(std::move(params)), owned_(std::move(owned)), options_(options) {
  if (!owned_.empty() && owned_.size() != params_.size())
    throw Error("AdamW: ownership given for " + std::to_string(owned_.size()) + " of " +
                std::to_string(params_.size()) + " parameters");
  for (size_t i = 0; i < params_.size(); ++i) {
    const auto& p = params_[i].second;
    exp_avg_.push_back(owns(i) ? torch::zeros_like(p) : torch::Tensor());
    exp_avg_sq_.push_back(owns(i) ? torch::zeros_like(p) : torch::Tensor());
  }
}

void AdamW::zero_grad() {
  for (auto& [name, p] : params_)
    if (p.grad().defined()) p.mutable_grad().zero_();
}

void AdamW::step(double lr) {
  torch::NoGradGuard no_grad;
  ++step_;
  const double bc1 = 1.0 - std::pow(options_.beta1, static_cast<double>(step_));
  const double bc2 = 1.0 - std::pow(options_.beta2, static_cast<double>(step_));
  for (size_t i = 0; i < params_.size(); ++i) {
    torch::Tensor& p = params_[i].second;
    if (!owns(i) || !p.grad().defined()) continue;
    const torch::Tensor& g = p.grad();
    // torch.optim.AdamW: p *= 1 - lr * wd; m, v moments; p -= lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps).
    if (options_.weight_decay != 0) p.mul_(1.0 - lr * options_.weight_decay);
    exp_avg_[i].mul_(options_.beta1).add_(g, 1.0 - options_.beta1);
    exp_avg_sq_[i].mul_(options_.beta2).addcmul_(g, g, 1.0 - options_.beta2);
    auto denom = (exp_avg_sq_[i].sqrt() / std::sqrt(bc2)).add_(options_.eps);
    p.addcdiv_(exp_avg_[i], denom, -lr / bc1);
  }
}

std::vector<std::pair<std::string, torch::Tensor>> AdamW::state() const {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (size_t i = 0; i < params_.size(); ++i) {
    if (!owns(i)) continue;
    out.emplace_back(params_[i].first + ".exp_avg", exp_avg_[i]);
    out.emplace_back(params_[i].first + ".exp_avg_sq", exp_avg_sq_[i]);
  }
  return out;
}

void AdamW::load_state(const std::vector<std::pair<std::string, torch::Tensor>>& state, int64_t step_count) {
  auto find = [&](const std::string& name) -> const torch::Tensor& {
    for (const auto& [n, t] : state)
      if (n == name) return t;
    throw CheckpointError("optimizer state: missing tensor '" + name + "'");
  };
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < params_.size(); ++i) {
    if (!owns(i)) continue;
    const auto& m = find(params_[i].first + ".exp_avg");
    const auto& v = find(params_[i].first + ".exp_avg_sq");
    if (m.sizes() != params_[i].second.sizes() || v.sizes() != params_[i].second.sizes())
      throw CheckpointError("optimizer state: shape mismatch for '" + params_[i].first + "'");
    exp_avg_[i].copy_(m);
    exp_avg_sq_[i].copy_(v);
  }
  step_ = step_count;
}

double scheduled_lr(config::Schedule schedule, double lr, int64_t step, int64_t total, int64_t warmup,
                    double min_ratio, double warmup_min_ratio) {
  if (warmup > 0 && step < warmup)
    return lr * (warmup_min_ratio +
                 (1.0 - warmup_min_ratio) * static_cast<double>(step + 1) / static_cast<double>(warmup));
  if (schedule == config::Schedule::kConstant) return lr;
  const double span = std::max<int64_t>(1, total - warmup);
  const double progress = std::min(1.0, static_cast<double>(step - warmup) / span);
  const double cosine = 0.5 * (1.0 + std::cos(M_PI * progress));
  return lr * (min_ratio + (1.0 - min_ratio) * cosine);
}

double clip_grad_norm(const std::vector<std::pair<std::string, torch::Tensor>>& params, double max_norm,
                      const std::function<double(double)>& sum_over_ranks) {
  torch::NoGradGuard no_grad;
  double total_sq = 0;
  for (const auto& [name, p] : params)
    if (p.grad().defined()) total_sq += p.grad().pow(2).sum().item<double>();
  if (sum_over_ranks) total_sq = sum_over_ranks(total_sq);
  const double norm = std::sqrt(total_sq);
  if (max_norm > 0 && norm > max_norm) {
    const double scale = max_norm / (norm + 1e-6);
    for (const auto& [name, p] : params)
      if (p.grad().defined()) p.grad().mul_(scale);
  }
  return norm;
}

}  // namespace seqrec::train
