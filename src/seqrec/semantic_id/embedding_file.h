// Item-embedding matrices [V, d] read from safetensors or NumPy .npy files (the RQ-VAE's input;
// LC-Rec writes `<dataset>.emb-llama-td.npy` with np.save). Row r is dense item r + 1.
#pragma once

#include <torch/types.h>

#include <string>

namespace seqrec::semantic_id {

/// Reads a float matrix [V, d] as float32 from `path`, by its content: a NumPy .npy file (magic
/// "\x93NUMPY", format 1.0 or 2.0, dtype '<f4' or '<f2', C order) or a safetensors file (F32, F16
/// or BF16; `tensor` names the tensor, "" = the file's only tensor). Throws DataError naming the
/// file and what is wrong (dtype, Fortran order, rank, size).
torch::Tensor read_embeddings(const std::string& path, const std::string& tensor = "");

/// The .npy part of read_embeddings.
torch::Tensor read_npy(const std::string& path);

}  // namespace seqrec::semantic_id
