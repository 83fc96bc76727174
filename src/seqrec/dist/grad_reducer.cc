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
    torch::Tensor flat;                      // [numel] on the backend's device (allocated per step when not kept)
    std::vector<int64_t> params;             // indices into params
    int64_t pending = 0;                     // parameters whose gradient has not arrived this step
    int64_t owner = -1;                      // ZeRO-2: the rank that receives the sum (-1: all-reduce)
    int64_t numel = 0;
    c10::intrusive_ptr<c10d::Work> work;     // set once sent
    bool released = false;                   // a non-owned bucket whose send completed and was freed
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
  bool sync = true;
  std::mutex mutex;

  // A bucket this rank keeps after the step: all-reduced ones and, under ZeRO-2, its own.
  bool kept(const Bucket& b) const { return b.owner < 0 || b.owner == group->rank(); }

  torch::Tensor view_of(int64_t i) {
    const Slot& s = slots[i];
    const auto& p = params[i].second;
    Bucket& b = buckets[s.bucket];
    if (!b.flat.defined()) b.flat = torch::empty({b.numel}, p.options().device(group->device()).requires_grad(false));
    return b.flat.narrow(0, s.offset, p.numel()).view(p.sizes());
  }

  void send(int64_t b) {
    std::vector<at::Tensor> tensors = {buckets[b].flat};
    if (buckets[b].owner < 0) {
      buckets[b].work = group->c10d_group()->allreduce(tensors);
    } else {
      c10d::ReduceOptions options;
      options.rootRank = buckets[b].owner;
      buckets[b].work = group->c10d_group()->reduce(tensors, options);
    }
    group->count_bytes(buckets[b].flat.nbytes());
  }

  // ZeRO-2: the buffer and the gradients of a bucket another rank owns are dropped once it is sent.
  void release(Bucket& b) {
    b.work->wait();
    b.flat = torch::Tensor();
    for (int64_t i : b.params) params[i].second.mutable_grad() = torch::Tensor();
    b.released = true;
  }

  // Buckets sent by earlier hooks (their parameters' gradients are final) that have completed.
  void release_completed() {
    for (int64_t b = 0; b < next_to_send; ++b) {
      Bucket& bucket = buckets[b];
      if (!kept(bucket) && !bucket.released && bucket.work && bucket.work->isCompleted()) release(bucket);
    }
  }

  // Called by autograd on the backward thread with the parameter's whole gradient for this pass.
  void on_grad(int64_t i, const torch::Tensor& grad) {
    torch::NoGradGuard no_grad;
    std::lock_guard<std::mutex> lock(mutex);
    if (!sync) return;  // accumulating: autograd adds the gradient to .grad as usual
    release_completed();
    Slot& s = slots[i];
    Bucket& bucket = buckets[s.bucket];
    if (s.ready) {
      if (bucket.work)
        throw Error("gradient of " + params[i].first +
                    " arrived again after its bucket was sent (call GradientReducer::finish() after every backward)");
      view_of(i).add_(grad);
      return;
    }
    auto view = view_of(i);
    view.copy_(grad);
    const auto& accumulated = params[i].second.grad();  // earlier micro-batches of this step
    if (accumulated.defined()) view.add_(accumulated.to(view.device()));
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
  if (!options.owners.empty() && options.owners.size() != m.params.size())
    throw Error("GradientReducer: " + std::to_string(options.owners.size()) + " owners for " +
                std::to_string(m.params.size()) + " parameters");
  auto owner_of = [&](int64_t i) { return options.owners.empty() ? int64_t{-1} : options.owners[i]; };
  // Reverse order of registration: backward produces the last layers' gradients first (DDP's
  // heuristic), so the first bucket fills early and its all-reduce overlaps the rest of backward.
  int64_t bucket_bytes = 0;
  c10::ScalarType bucket_type = c10::ScalarType::Undefined;
  for (int64_t i = static_cast<int64_t>(m.params.size()) - 1; i >= 0; --i) {
    const auto& p = m.params[i].second;
    TORCH_CHECK(p.requires_grad(), "GradientReducer: ", m.params[i].first, " does not require grad");
    const int64_t bytes = p.numel() * static_cast<int64_t>(p.element_size());
    if (m.buckets.empty() || p.scalar_type() != bucket_type || bucket_bytes + bytes > options.bucket_bytes ||
        m.buckets.back().owner != owner_of(i)) {
      if (m.buckets.empty() || !m.buckets.back().params.empty()) m.buckets.emplace_back();
      bucket_bytes = 0;
      bucket_type = p.scalar_type();
      m.buckets.back().owner = owner_of(i);
    }
    Impl::Bucket& b = m.buckets.back();
    m.slots[i] = {static_cast<int64_t>(m.buckets.size()) - 1, bucket_bytes / static_cast<int64_t>(p.element_size()), false};
    b.params.push_back(i);
    bucket_bytes += bytes;
  }
  for (auto& b : m.buckets) {
    for (int64_t i : b.params) b.numel += m.params[i].second.numel();
    const auto& first = m.params[b.params.front()].second;
    if (m.kept(b)) b.flat = torch::zeros({b.numel}, first.options().device(m.group->device()).requires_grad(false));
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
  // Buckets still waiting for a parameter whose hook did not fire this step go out with what .grad
  // holds there (earlier micro-batches' sum; zeros when the parameter got no gradient).
  for (; m.next_to_send < static_cast<int64_t>(m.buckets.size()); ++m.next_to_send) {
    for (int64_t i : m.buckets[m.next_to_send].params) {
      if (m.slots[i].ready) continue;
      auto view = m.view_of(i);
      const auto& g = m.params[i].second.grad();
      if (g.defined())
        view.copy_(g);
      else
        view.zero_();
    }
    m.send(m.next_to_send);
  }
  const double world = static_cast<double>(m.group->world_size());
  for (auto& b : m.buckets) {
    if (!m.kept(b)) {
      if (!b.released) m.release(b);
      // A gradient that autograd stored after its bucket's early release is dropped too.
      for (int64_t i : b.params) m.params[i].second.mutable_grad() = torch::Tensor();
    } else {
      b.work->wait();
      b.flat.div_(world);
      for (int64_t i : b.params) {
        auto& p = m.params[i].second;
        auto mean = m.view_of(i);
        if (p.grad().defined())
          p.mutable_grad().copy_(mean);
        else
          p.mutable_grad() = mean.to(p.device()).clone();
      }
    }
    for (int64_t i : b.params) m.slots[i].ready = false;
    b.pending = static_cast<int64_t>(b.params.size());
    b.work.reset();
    b.released = false;
  }
  m.next_to_send = 0;
  m.last_sent_in_backward = m.sent_in_backward;
  m.sent_in_backward = 0;
}

void GradientReducer::set_sync(bool sync) {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  impl_->sync = sync;
}

int64_t GradientReducer::num_buckets() const { return static_cast<int64_t>(impl_->buckets.size()); }

int64_t GradientReducer::bytes_per_step() const {
  int64_t n = 0;
  for (const auto& b : impl_->buckets)
    n += b.numel * static_cast<int64_t>(impl_->params[b.params.front()].second.element_size());
  return n;
}

int64_t GradientReducer::buckets_sent_during_backward() const { return impl_->last_sent_in_backward; }

}  // namespace seqrec::dist
