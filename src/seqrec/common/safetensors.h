// safetensors reading and writing without torch (raw bytes + header). Format: u64 LE header size,
// JSON header {name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}},
// then the data block. The torch adapter lives in train/checkpoint.cc.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace seqrec {

/// Element types we read and write.
enum class StDtype { kF32, kF16, kBF16, kI64, kI32, kU8 };

/// Bytes per element of a dtype.
int64_t dtype_size(StDtype dtype);
/// "F32" / "F16" / "BF16" / "I64" / "I32" / "U8".
const char* dtype_name(StDtype dtype);

/// One tensor to write: a view of caller-owned bytes.
struct StTensorRef {
  std::string name;
  StDtype dtype;
  std::vector<int64_t> shape;
  const void* data;        ///< nbytes = prod(shape) * dtype_size
};

/// Writes tensors (sorted by name) and string metadata to `path` atomically (temp + rename).
void write_safetensors(const std::string& path, const std::vector<StTensorRef>& tensors,
                       const std::map<std::string, std::string>& metadata);

/// A tensor inside a mapped safetensors file.
struct StTensorView {
  StDtype dtype;
  std::vector<int64_t> shape;
  const void* data;        ///< points into the mapping; valid while the file object lives
  int64_t nbytes;
};

/// A memory-mapped safetensors file.
class SafetensorsFile {
 public:
  /// Maps and validates (header size, JSON, dtypes, offsets within the file, sizes match shapes).
  /// Throws CheckpointError naming the file: "truncated", "bad header", "unsupported dtype X".
  static SafetensorsFile open(const std::string& path);
  const std::string& path() const;
  /// Tensor names in file order (sorted).
  std::vector<std::string> names() const;
  bool contains(const std::string& name) const;
  /// Throws CheckpointError "<file>: missing tensor 'name'".
  const StTensorView& get(const std::string& name) const;
  const std::map<std::string, std::string>& metadata() const;

 private:
  struct Impl;
  std::shared_ptr<const Impl> impl_;
};

/// The weight files of a Hugging Face model folder: `model.safetensors`, or the shards named by
/// `model.safetensors.index.json` (each once, sorted). Throws CheckpointError naming the index when
/// it is not JSON or has no weight_map, and the folder when it has neither file.
std::vector<std::string> hf_weight_files(const std::string& dir);

}  // namespace seqrec
