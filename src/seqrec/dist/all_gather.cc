// All-gather as an autograd function.
#include "seqrec/dist/all_gather.h"

#include <torch/torch.h>

#include "seqrec/dist/process_group.h"

namespace seqrec::dist {
namespace {

// Carries the group through the autograd context (saved_data holds IValues).
struct GroupHolder : torch::CustomClassHolder {
  explicit GroupHolder(std::shared_ptr<ProcessGroup> g) : group(std::move(g)) {}
  std::shared_ptr<ProcessGroup> group;
};

class AllGatherRows : public torch::autograd::Function<AllGatherRows> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x,
                               c10::IValue group_capsule) {
    auto group = c10::static_intrusive_pointer_cast<GroupHolder>(group_capsule.toCapsule())->group;
    // Row offset of this rank = rows of the lower ranks; learnt from the gathered row counts.
    auto counts = group->all_gather_rows(torch::full({1}, x.size(0), torch::kInt64));  // [W]
    const int64_t offset = counts.narrow(0, 0, group->rank()).sum().item<int64_t>();
    ctx->saved_data["group"] = group_capsule;
    ctx->saved_data["offset"] = offset;
    ctx->saved_data["rows"] = x.size(0);
    return group->all_gather_rows(x);                                                  // [sum rows, ...]
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto group = c10::static_intrusive_pointer_cast<GroupHolder>(ctx->saved_data["group"].toCapsule())->group;
    auto total = grads[0].contiguous().clone();                                       // [sum rows, ...]
    group->all_reduce_sum(total);  // sum over ranks of d(loss_r)/d(pool)
    auto mine = total.narrow(0, ctx->saved_data["offset"].toInt(), ctx->saved_data["rows"].toInt());
    return {mine, torch::Tensor()};
  }
};

}  // namespace

torch::Tensor all_gather_with_grad(const torch::Tensor& x, const std::shared_ptr<ProcessGroup>& group) {
  TORCH_CHECK(group != nullptr, "all_gather_with_grad needs a process group");
  return AllGatherRows::apply(x, c10::IValue::make_capsule(c10::make_intrusive<GroupHolder>(group)));
}

torch::Tensor gather_across_ranks(const torch::Tensor& x) {
  auto group = default_group();
  if (group == nullptr || group->world_size() == 1) return x;
  return all_gather_with_grad(x, group);
}

}  // namespace seqrec::dist
