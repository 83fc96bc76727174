// ZeRO-1/2 parameter ownership and the collectives around the optimizer step.
#include "seqrec/train/zero.h"

#include <torch/torch.h>

#include <algorithm>
#include <map>

#include "seqrec/common/error.h"
#include "seqrec/dist/process_group.h"

namespace seqrec::train {

ShardPlan ShardPlan::balanced(const NamedTensors& params, int64_t world_size) {
  ShardPlan plan;
  plan.world_size = world_size;
  plan.owner.assign(params.size(), 0);
  int64_t total = 0;
  for (const auto& [name, p] : params) total += p.numel();
  // A parameter goes to the rank whose equal share of [0, total) holds its midpoint, counted from
  // the last parameter; ranks never decrease along that order.
  int64_t before = 0, rank = 0;
  for (int64_t i = static_cast<int64_t>(params.size()) - 1; i >= 0; --i) {
    const int64_t n = params[i].second.numel();
    const double mid = static_cast<double>(before) + 0.5 * static_cast<double>(n);
    const int64_t r = total > 0 ? static_cast<int64_t>(mid * static_cast<double>(world_size) / static_cast<double>(total)) : 0;
    rank = std::min(world_size - 1, std::max(rank, r));
    plan.owner[i] = rank;
    before += n;
  }
  return plan;
}

std::vector<bool> ShardPlan::owned_by(int64_t rank) const {
  std::vector<bool> out(owner.size());
  for (size_t i = 0; i < owner.size(); ++i) out[i] = owner[i] == rank;
  return out;
}

int64_t ShardPlan::numel_owned_by(int64_t rank, const NamedTensors& params) const {
  int64_t n = 0;
  for (size_t i = 0; i < owner.size(); ++i)
    if (owner[i] == rank) n += params[i].second.numel();
  return n;
}

void broadcast_from_owners(dist::ProcessGroup& group, const ShardPlan& plan, const NamedTensors& params) {
  torch::NoGradGuard no_grad;
  for (int64_t r = 0; r < plan.world_size; ++r) {
    std::vector<torch::Tensor> share;
    for (size_t i = 0; i < params.size(); ++i)
      if (plan.owner[i] == r) share.push_back(params[i].second);
    if (!share.empty()) group.broadcast(share, r);
  }
}

namespace {

// Rank r's parameters' moments as [exp_avg, exp_avg_sq] pairs: the optimizer's own tensors on the
// owner, fresh buffers of the parameters' shapes elsewhere.
std::vector<torch::Tensor> moments_of(const ShardPlan& plan, int64_t r, int64_t rank, const AdamW& optimizer,
                                      const NamedTensors& own_state) {
  std::vector<torch::Tensor> out;
  size_t next = 0;  // own_state lists the owned parameters in order, two tensors each
  for (size_t i = 0; i < plan.owner.size(); ++i) {
    const bool mine = plan.owner[i] == rank;
    if (plan.owner[i] == r) {
      if (mine) {
        out.push_back(own_state[next].second);
        out.push_back(own_state[next + 1].second);
      } else {
        const auto& p = optimizer.params()[i].second;
        out.push_back(torch::empty_like(p, p.options().requires_grad(false)));
        out.push_back(torch::empty_like(p, p.options().requires_grad(false)));
      }
    }
    if (mine) next += 2;
  }
  return out;
}

}  // namespace

NamedTensors consolidate_optimizer_state(dist::ProcessGroup& group, const ShardPlan& plan, const AdamW& optimizer) {
  torch::NoGradGuard no_grad;
  const int64_t rank = group.rank();
  const NamedTensors own = optimizer.state();
  std::vector<std::vector<torch::Tensor>> by_rank(plan.world_size);
  for (int64_t r = 0; r < plan.world_size; ++r) {
    by_rank[r] = moments_of(plan, r, rank, optimizer, own);
    if (!by_rank[r].empty() && r != 0) group.broadcast(by_rank[r], r);  // rank 0's share is already there
    if (rank != 0) by_rank[r].clear();                                   // passing through
  }
  NamedTensors out;
  if (rank != 0) return out;
  std::vector<size_t> next(plan.world_size, 0);
  for (size_t i = 0; i < plan.owner.size(); ++i) {
    auto& src = by_rank[plan.owner[i]];
    const std::string& name = optimizer.params()[i].first;
    out.emplace_back(name + ".exp_avg", src[next[plan.owner[i]]++]);
    out.emplace_back(name + ".exp_avg_sq", src[next[plan.owner[i]]++]);
  }
  return out;
}

void distribute_optimizer_state(dist::ProcessGroup& group, const ShardPlan& plan, const NamedTensors& full,
                                int64_t step_count, AdamW& optimizer) {
  torch::NoGradGuard no_grad;
  const int64_t rank = group.rank();
  auto find = [&](const std::string& name) -> const torch::Tensor& {
    for (const auto& [n, t] : full)
      if (n == name) return t;
    throw CheckpointError("optimizer state: missing tensor '" + name + "'");
  };
  NamedTensors received;
  for (int64_t r = 1; r < plan.world_size; ++r) {
    std::vector<torch::Tensor> share;
    NamedTensors named;
    for (size_t i = 0; i < plan.owner.size(); ++i) {
      if (plan.owner[i] != r) continue;
      const auto& [name, p] = optimizer.params()[i];
      for (const char* suffix : {".exp_avg", ".exp_avg_sq"}) {
        torch::Tensor t;
        if (rank == 0) {
          t = find(name + suffix);
          if (t.sizes() != p.sizes()) throw CheckpointError("optimizer state: shape mismatch for '" + name + "'");
          t = t.to(p.dtype()).contiguous();
        } else {
          t = torch::empty_like(p, p.options().requires_grad(false));
        }
        share.push_back(t);
        named.emplace_back(name + suffix, t);
      }
    }
    if (share.empty()) continue;
    group.broadcast(share, 0);
    if (rank == r) received = std::move(named);
  }
  optimizer.load_state(rank == 0 ? full : received, step_count);
}

namespace {

void free_storage(const torch::Tensor& t) {
  auto st = t.storage();
  st.set_nbytes(0);
  st.set_data_ptr_noswap(st.allocator()->allocate(0));
}

void allocate_storage(const torch::Tensor& t) {
  auto st = t.storage();
  const size_t bytes = static_cast<size_t>(t.numel()) * t.element_size();
  st.set_data_ptr_noswap(st.allocator()->allocate(bytes));
  st.set_nbytes(bytes);
}

}  // namespace

Zero3Gate::Zero3Gate(std::shared_ptr<dist::ProcessGroup> group, const ShardPlan& plan, const NamedTensors& params,
                     const std::vector<std::shared_ptr<torch::nn::Module>>& blocks, bool prefetch)
    : group_(std::move(group)), plan_(plan), params_(params), prefetch_(prefetch), managed_(params.size(), false) {
  std::map<const void*, size_t> index;
  for (size_t i = 0; i < params_.size(); ++i) index[params_[i].second.unsafeGetTensorImpl()] = i;
  for (const auto& block : blocks) {
    std::vector<size_t> mine;
    for (const auto& p : block->parameters()) {
      auto it = index.find(p.unsafeGetTensorImpl());
      if (it == index.end()) continue;  // frozen
      const auto& t = params_[it->second].second;
      if (t.storage_offset() != 0 || !t.is_contiguous() ||
          t.storage().nbytes() != static_cast<size_t>(t.numel()) * t.element_size())
        throw Error("ZeRO-3: parameter " + params_[it->second].first + " shares its storage with another tensor");
      mine.push_back(it->second);
      managed_[it->second] = true;
    }
    block_params_.push_back(std::move(mine));
  }
  const size_t n = block_params_.size();
  held_.assign(n, Held::kYes);
  reduce_pending_.assign(n, false);
  arriving_.resize(n);
  reducing_.resize(n);
}

Zero3Gate::~Zero3Gate() {
  // Collectives still in flight write into buffers they own; nothing here may throw.
  try {
    for (auto& list : arriving_)
      for (auto& p : list) p.wait();
    for (auto& list : reducing_)
      for (auto& p : list) p.wait();
  } catch (...) {
  }
}

void Zero3Gate::prefetch(int64_t b) {
  if (b < 0 || !sharded_ || held_[static_cast<size_t>(b)] != Held::kNo) return;
  const size_t block = static_cast<size_t>(b);
  torch::NoGradGuard no_grad;
  for (int64_t r = 0; r < plan_.world_size; ++r) {
    std::vector<torch::Tensor> share;
    for (size_t i : block_params_[block])
      if (plan_.owner[i] == r) {
        if (r != group_->rank()) allocate_storage(params_[i].second);
        // Filled through a tensor with its own version counter: autograd's saved references to
        // the parameter must not see this as an in-place change.
        share.push_back(params_[i].second.variable_data());
      }
    if (!share.empty()) arriving_[block].push_back(group_->broadcast_async(share, r));
  }
  held_[block] = Held::kArriving;
}

void Zero3Gate::gather(size_t b) {
  if (!sharded_) return;
  ++uses_;
  if (held_[b] == Held::kNo) ++on_demand_;
  prefetch(static_cast<int64_t>(b));
  for (auto& p : arriving_[b]) p.wait();
  arriving_[b].clear();
  held_[b] = Held::kYes;
}

void Zero3Gate::release(size_t b) {
  if (!sharded_ || held_[b] == Held::kNo) return;
  for (auto& p : arriving_[b]) p.wait();  // a guess that was not used: its buffers are in flight
  arriving_[b].clear();
  for (size_t i : block_params_[b])
    if (plan_.owner[i] != group_->rank()) free_storage(params_[i].second);
  held_[b] = Held::kNo;
}

void Zero3Gate::reduce_gradients(size_t b) {
  torch::NoGradGuard no_grad;
  // One reduction in flight at a time besides this one: each holds a block's gradients in its
  // buffer, and all of them at once would be the whole stack's gradients on every rank.
  for (size_t k = 0; k < reducing_.size(); ++k) wait_reduction(k);
  for (int64_t r = 0; r < plan_.world_size; ++r) {
    std::vector<torch::Tensor> grads;
    for (size_t i : block_params_[b]) {
      if (plan_.owner[i] != r) continue;
      auto& p = params_[i].second;
      if (!p.grad().defined()) p.mutable_grad() = torch::zeros_like(p);
      grads.push_back(p.grad());
    }
    if (grads.empty()) continue;
    // The owner's gradients receive the sums when the reduction is waited for; the others' are
    // copied into its buffer now and dropped.
    reducing_[b].push_back(group_->reduce_sum_to_async(grads, r));
    if (r != group_->rank())
      for (size_t i : block_params_[b])
        if (plan_.owner[i] == r) params_[i].second.mutable_grad() = torch::Tensor();
  }
  if (!prefetch_) wait_reduction(b);
  reduce_pending_[b] = false;
}

void Zero3Gate::wait_reduction(size_t b) {
  for (auto& p : reducing_[b]) p.wait();
  reducing_[b].clear();
}

namespace {

// A forward pass's block order, then (when backward follows) the same blocks in reverse.
std::vector<int64_t> there_and_back(const std::vector<int64_t>& forward, bool backward) {
  std::vector<int64_t> order = forward;
  if (backward) order.insert(order.end(), forward.rbegin(), forward.rend());
  return order;
}

}  // namespace

int64_t Zero3Gate::expected(size_t ahead) const {
  const size_t i = pos_ + ahead;
  return i < expect_.size() ? expect_[i] : -1;
}

void Zero3Gate::advance(size_t b) {
  if (expected() != static_cast<int64_t>(b)) expect_.clear();  // the pass departs from the guess
  ++pos_;
}

void Zero3Gate::release_unless_expected(size_t b) {
  const auto block = static_cast<int64_t>(b);
  if (prefetch_ && (expected(0) == block || expected(1) == block)) return;
  release(b);
}

torch::Tensor Zero3Gate::run(size_t b, const torch::Tensor& x,
                             const std::function<torch::Tensor(const torch::Tensor&)>& body) {
  if (sharded_) {
    if (!in_forward_) {  // a new forward pass
      in_forward_ = true;
      for (size_t k = 0; k < reducing_.size(); ++k) wait_reduction(k);  // the last backward's last reduction
      expect_ = there_and_back(forward_, torch::GradMode::is_enabled());  // the last forward pass's order
      pos_ = 0;
      forward_.clear();
    }
    forward_.push_back(static_cast<int64_t>(b));
    advance(b);
  }
  gather(b);
  if (prefetch_) prefetch(expected());
  torch::Tensor y = body(x);
  release_unless_expected(b);
  if (torch::GradMode::is_enabled() && y.requires_grad()) {
    reduce_pending_[b] = true;
    y.register_hook([this, b](const torch::Tensor&) {  // backward reaches the block
      if (in_forward_) {  // backward begins: it goes back through this forward pass's blocks
        in_forward_ = false;
        expect_ = there_and_back(forward_, true);
        pos_ = forward_.size();
      }
      advance(b);
      wait_reduction(b);  // its gradients are about to grow again (several passes, accumulation)
      gather(b);
      if (prefetch_) prefetch(expected());
    });
    if (x.requires_grad())
      x.register_hook([this, b](const torch::Tensor&) {  // backward has left it: its gradients are final
        reduce_gradients(b);
        release_unless_expected(b);
      });
  }
  return y;
}

int64_t Zero3Gate::most_passes(int64_t local) {
  std::vector<double> counts(static_cast<size_t>(group_->world_size()), 0.0);
  counts[static_cast<size_t>(group_->rank())] = static_cast<double>(local);
  counts = group_->all_reduce_sum(counts);
  return static_cast<int64_t>(*std::max_element(counts.begin(), counts.end()));
}

void Zero3Gate::shard() {
  sharded_ = true;
  in_forward_ = false;
  for (size_t b = 0; b < block_params_.size(); ++b) {
    held_[b] = Held::kYes;
    release(b);
  }
}

void Zero3Gate::unshard() {
  for (size_t b = 0; b < block_params_.size(); ++b) gather(b);
  sharded_ = false;
}

void Zero3Gate::finish() {
  for (size_t b = 0; b < block_params_.size(); ++b)
    if (reduce_pending_[b]) reduce_gradients(b);
  for (size_t b = 0; b < block_params_.size(); ++b) {
    wait_reduction(b);
    release(b);  // what the step's last hooks and guesses left whole
  }
  in_forward_ = false;
  torch::NoGradGuard no_grad;
  const double world = static_cast<double>(group_->world_size());
  for (size_t i = 0; i < params_.size(); ++i)
    if (managed_[i] && plan_.owner[i] == group_->rank() && params_[i].second.grad().defined())
      params_[i].second.mutable_grad().div_(world);
}

int64_t Zero3Gate::resident_bytes() const {
  int64_t n = 0;
  for (size_t i = 0; i < params_.size(); ++i)
    if (managed_[i]) n += static_cast<int64_t>(params_[i].second.storage().nbytes());
  return n;
}

int64_t Zero3Gate::total_bytes() const {
  int64_t n = 0;
  for (size_t i = 0; i < params_.size(); ++i)
    if (managed_[i]) n += params_[i].second.numel() * static_cast<int64_t>(params_[i].second.element_size());
  return n;
}

}  // namespace seqrec::train
