// The LibTorch side of the torch-free safetensors reader: dtype mapping and zero-copy views, used by
// checkpoints, Hugging Face weight loading and LoRA adapters.
#pragma once

#include <torch/types.h>

#include "seqrec/common/safetensors.h"

namespace seqrec::nn {

/// Safetensors dtype -> torch dtype.
torch::ScalarType torch_dtype(StDtype dtype);
/// Torch dtype -> safetensors dtype; throws CheckpointError for dtypes safetensors files here cannot hold.
StDtype safetensors_dtype(torch::ScalarType dtype);
/// A tensor viewing a mapped safetensors entry (no copy; valid while the file object lives).
torch::Tensor tensor_view(const StTensorView& view);

}  // namespace seqrec::nn
