// Bucketed gradient all-reduce, launched from autograd hooks so that it overlaps backward.
#include "seqrec/dist/grad_reducer.h"

#include <torch/torch.h>

#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>

#include <mutex>

#include "seqrec/common/error.h"
#include "seqrec/dist/process_group.h"

namespace seqrec::dist {

struct GradientReducer::Impl {
  struct Bucket {
    torch::Tensor flat;                      // [numel] on the backend's device
    std::vector<int64_t> params;             // indices into params
    int64_t pending = 0;                     // parameters whose gradient has not arrived this step
    c10::intrusive_ptr<c10d::Work> work;     // set once sent
  };
  struct Slot {
    int64_t bucket = 0;
    int64_t offset = 0;                      // into the bucket's flat buffer
    bool ready = false;                      // gradient arrived this step
  };

  std::shared_ptr<ProcessGroup> group;
  std::vector<std::pair<std::string, torch::Tensor>> params;
  std::vector<Slot> slots;
  std::vector<Bucket> buckets;
  std::vector<unsigned> hook_ids;
  int64_t next_to_send = 0;  // buckets go out strictly in index order: every rank issues the same sequence
  int64_t sent_in_backward = 0, last_sent_in_backward = 0;
  std::mutex mutex;

  torch::Tensor view_of(int64_t i) {
    const Slot& s = slots[i];
    const auto& p = params[i].second;
    return buckets[s.bucket].flat.narrow(0, s.offset, p.numel()).view(p.sizes());
  }

  void send(int64_t b) {
    std::vector<at::Tensor> tensors = {buckets[b].flat};
    buckets[b].work = group->c10d_group()->allreduce(tensors);
    group->count_bytes(buckets[b].flat.nbytes());
  }

  // Called by autograd on the backward thread with the parameter's whole gradient for this pass.
  void on_grad(int64_t i, const torch::Tensor& grad) {
    torch::NoGradGuard no_grad;
    std::lock_guard<std::mutex> lock(mutex);
    Slot& s = slots[i];
    Bucket& bucket = buckets[s.bucket];
    if (s.ready) {
      if (bucket.work)
        throw Error("gradient of " + params[i].first +
                    " arrived again after its bucket was sent (call GradientReducer::finish() after every backward)");
      view_of(i).add_(grad);
      return;
    }
    view_of(i).copy_(grad);
    s.ready = true;
    if (--bucket.pending > 0) return;
    while (next_to_send < static_cast<int64_t>(buckets.size()) && buckets[next_to_send].pending == 0) {
      send(next_to_send++);
      ++sent_in_backward;
    }
  }
};

GradientReducer::GradientReducer(std::shared_ptr<ProcessGroup> group,
                                 std::vector<std::pair<std::string, torch::Tensor>> params,
                                 GradientReducerOptions options)
    : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.group = std::move(group);
  m.params = std::move(params);
  m.slots.resize(m.params.size());
  // Reverse order of registration: backward produces the last layers' gradients first (DDP's
  // heuristic), so the first bucket fills early and its all-reduce overlaps the rest of backward.
  int64_t bucket_bytes = 0;
  c10::ScalarType bucket_type = c10::ScalarType::Undefined;
  for (int64_t i = static_cast<int64_t>(m.params.size()) - 1; i >= 0; --i) {
    const auto& p = m.params[i].second;
    TORCH_CHECK(p.requires_grad(), "GradientReducer: ", m.params[i].first, " does not require grad");
    const int64_t bytes = p.numel() * static_cast<int64_t>(p.element_size());
    if (m.buckets.empty() || p.scalar_type() != bucket_type || bucket_bytes + bytes > options.bucket_bytes) {
      if (m.buckets.empty() || !m.buckets.back().params.empty()) m.buckets.emplace_back();
      bucket_bytes = 0;
      bucket_type = p.scalar_type();
    }
    Impl::Bucket& b = m.buckets.back();
    m.slots[i] = {static_cast<int64_t>(m.buckets.size()) - 1, bucket_bytes / static_cast<int64_t>(p.element_size()), false};
    b.params.push_back(i);
    bucket_bytes += bytes;
  }
  for (auto& b : m.buckets) {
    int64_t numel = 0;
    for (int64_t i : b.params) numel += m.params[i].second.numel();
    const auto& first = m.params[b.params.front()].second;
    b.flat = torch::zeros({numel}, first.options().device(m.group->device()).requires_grad(false));
    b.pending = static_cast<int64_t>(b.params.size());
  }
  Impl* impl = impl_.get();
  for (int64_t i = 0; i < static_cast<int64_t>(m.params.size()); ++i)
    m.hook_ids.push_back(m.params[i].second.register_hook([impl, i](torch::Tensor grad) { impl->on_grad(i, grad); }));
}

GradientReducer::~GradientReducer() {
  for (size_t i = 0; i < impl_->hook_ids.size(); ++i) impl_->params[i].second.remove_hook(impl_->hook_ids[i]);
}

void GradientReducer::finish() {
  torch::NoGradGuard no_grad;
  Impl& m = *impl_;
  std::lock_guard<std::mutex> lock(m.mutex);
  // Buckets still waiting for a parameter that got no gradient this step go out with zeros there.
  for (; m.next_to_send < static_cast<int64_t>(m.buckets.size()); ++m.next_to_send) {
    for (int64_t i : m.buckets[m.next_to_send].params)
      if (!m.slots[i].ready) m.view_of(i).zero_();
    m.send(m.next_to_send);
  }
  const double world = static_cast<double>(m.group->world_size());
  for (auto& b : m.buckets) {
    b.work->wait();
    b.flat.div_(world);
    for (int64_t i : b.params) {
      auto& p = m.params[i].second;
      auto mean = m.view_of(i);
      if (p.grad().defined())
        p.mutable_grad().copy_(mean);
      else
        p.mutable_grad() = mean.to(p.device()).clone();
      m.slots[i].ready = false;
    }
    b.pending = static_cast<int64_t>(b.params.size());
    b.work.reset();
  }
  m.next_to_send = 0;
  m.last_sent_in_backward = m.sent_in_backward;
  m.sent_in_backward = 0;
}

int64_t GradientReducer::num_buckets() const { return static_cast<int64_t>(impl_->buckets.size()); }

int64_t GradientReducer::bytes_per_step() const {
  int64_t n = 0;
  for (const auto& b : impl_->buckets) n += b.flat.nbytes();
  return n;
}

int64_t GradientReducer::buckets_sent_during_backward() const { return impl_->last_sent_in_backward; }

}  // namespace seqrec::dist
