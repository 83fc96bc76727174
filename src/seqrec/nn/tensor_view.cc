// Dtype mapping and zero-copy views between safetensors entries and torch tensors.
#include "seqrec/nn/tensor_view.h"

#include <torch/torch.h>

#include "seqrec/common/error.h"

namespace seqrec::nn {

StDtype safetensors_dtype(torch::ScalarType t) {
  switch (t) {
    case torch::kFloat: return StDtype::kF32;
    case torch::kHalf: return StDtype::kF16;
    case torch::kBFloat16: return StDtype::kBF16;
    case torch::kLong: return StDtype::kI64;
    case torch::kInt: return StDtype::kI32;
    case torch::kByte: return StDtype::kU8;
    default: throw CheckpointError(std::string("cannot save tensors of dtype ") + c10::toString(t));
  }
}

torch::ScalarType torch_dtype(StDtype t) {
  switch (t) {
    case StDtype::kF32: return torch::kFloat;
    case StDtype::kF16: return torch::kHalf;
    case StDtype::kBF16: return torch::kBFloat16;
    case StDtype::kI64: return torch::kLong;
    case StDtype::kI32: return torch::kInt;
    case StDtype::kU8: return torch::kByte;
  }
  return torch::kFloat;
}

torch::Tensor tensor_view(const StTensorView& v) {
  return torch::from_blob(const_cast<void*>(v.data), v.shape, torch::TensorOptions().dtype(torch_dtype(v.dtype)));
}

}  // namespace seqrec::nn
