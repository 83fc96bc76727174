// Embedding matrices from .npy and safetensors files.
#include "seqrec/semantic_id/embedding_file.h"

#include <torch/torch.h>

#include <cstring>
#include <fstream>

#include "seqrec/common/error.h"
#include "seqrec/common/fs.h"
#include "seqrec/common/safetensors.h"
#include "seqrec/nn/tensor_view.h"

namespace seqrec::semantic_id {
namespace {

constexpr char kNpyMagic[] = "\x93NUMPY";
constexpr size_t kNpyMagicSize = 6;

bool has_npy_magic(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw DataError("cannot open " + path);
  char head[kNpyMagicSize] = {};
  in.read(head, kNpyMagicSize);
  return in.gcount() == static_cast<std::streamsize>(kNpyMagicSize) && std::memcmp(head, kNpyMagic, kNpyMagicSize) == 0;
}

// The value text after 'key': in the header dict ("'<f4'", "False", "(3, 4)").
std::string header_value(const std::string& header, const std::string& key, const std::string& path) {
  for (const char* quote : {"'", "\""}) {
    const std::string k = quote + key + quote;
    size_t at = header.find(k);
    if (at == std::string::npos) continue;
    at = header.find(':', at + k.size());
    if (at == std::string::npos) break;
    ++at;
    while (at < header.size() && header[at] == ' ') ++at;
    if (at >= header.size()) break;
    size_t end = at;
    if (header[at] == '(') {
      end = header.find(')', at);
      if (end == std::string::npos) break;
      return header.substr(at, end + 1 - at);
    }
    if (header[at] == '\'' || header[at] == '"') {
      end = header.find(header[at], at + 1);
      if (end == std::string::npos) break;
      return header.substr(at + 1, end - at - 1);
    }
    while (end < header.size() && header[end] != ',' && header[end] != '}') ++end;
    std::string v = header.substr(at, end - at);
    while (!v.empty() && v.back() == ' ') v.pop_back();
    return v;
  }
  throw DataError(path + ": .npy header has no readable '" + key + "' entry: " + header);
}

std::vector<int64_t> parse_shape(const std::string& tuple, const std::string& path) {
  std::vector<int64_t> dims;
  std::string cur;
  for (size_t i = 1; i + 1 < tuple.size(); ++i) {
    const char c = tuple[i];
    if (c >= '0' && c <= '9') {
      cur += c;
    } else if (c == ',' || c == ' ' || c == 'L') {
      if (!cur.empty()) dims.push_back(std::stoll(cur));
      cur.clear();
    } else {
      throw DataError(path + ": bad shape " + tuple + " in the .npy header");
    }
  }
  if (!cur.empty()) dims.push_back(std::stoll(cur));
  return dims;
}

uint64_t read_le(const std::string& bytes, size_t at, size_t width) {
  uint64_t v = 0;
  for (size_t i = 0; i < width; ++i) v |= static_cast<uint64_t>(static_cast<unsigned char>(bytes[at + i])) << (8 * i);
  return v;
}

torch::Tensor check_matrix(torch::Tensor t, const std::string& what) {
  if (t.dim() != 2) throw DataError(what + ": expected a 2-D matrix [items, dim], got shape " + c10::str(t.sizes()));
  if (t.size(0) < 1 || t.size(1) < 1) throw DataError(what + ": empty matrix " + c10::str(t.sizes()));
  t = t.to(torch::kFloat).contiguous();
  if (!torch::isfinite(t).all().item<bool>()) throw DataError(what + ": contains NaN or infinite values");
  return t;
}

}  // namespace

torch::Tensor read_npy(const std::string& path) {
  const std::string bytes = read_file(path);
  if (bytes.size() < 10 || std::memcmp(bytes.data(), kNpyMagic, kNpyMagicSize) != 0)
    throw DataError(path + ": not a .npy file (no \\x93NUMPY magic)");
  const int major = static_cast<unsigned char>(bytes[6]);
  if (major != 1 && major != 2)
    throw DataError(path + ": .npy format version " + std::to_string(major) + " is not supported (1.0 or 2.0)");
  const size_t len_width = major == 1 ? 2 : 4;
  const size_t header_start = 8 + len_width;
  if (bytes.size() < header_start) throw DataError(path + ": truncated .npy header");
  const size_t header_len = read_le(bytes, 8, len_width);
  if (bytes.size() < header_start + header_len) throw DataError(path + ": truncated .npy header");
  const std::string header = bytes.substr(header_start, header_len);
  const std::string descr = header_value(header, "descr", path);
  const std::string fortran = header_value(header, "fortran_order", path);
  const std::vector<int64_t> shape = parse_shape(header_value(header, "shape", path), path);
  torch::ScalarType dtype;
  if (descr == "<f4") {
    dtype = torch::kFloat;
  } else if (descr == "<f2") {
    dtype = torch::kHalf;
  } else {
    throw DataError(path + ": dtype '" + descr + "' is not supported (little-endian float32 '<f4' or float16 "
                    "'<f2'; hint: np.save(path, x.astype(np.float32)))");
  }
  if (fortran != "False")
    throw DataError(path + ": Fortran-ordered arrays are not supported (hint: np.save(path, np.ascontiguousarray(x)))");
  if (shape.size() != 2)
    throw DataError(path + ": expected a 2-D array [items, dim], got " + std::to_string(shape.size()) + " dimensions");
  const size_t item = dtype == torch::kFloat ? 4 : 2;
  const size_t data_start = header_start + header_len;
  const size_t expected = static_cast<size_t>(shape[0] * shape[1]) * item;
  if (bytes.size() != data_start + expected)
    throw DataError(path + ": data is " + std::to_string(bytes.size() - data_start) + " bytes, shape (" +
                    std::to_string(shape[0]) + ", " + std::to_string(shape[1]) + ") needs " +
                    std::to_string(expected) + (bytes.size() < data_start + expected ? " (truncated)" : ""));
  auto t = torch::empty(shape, torch::TensorOptions().dtype(dtype));
  std::memcpy(t.data_ptr(), bytes.data() + data_start, expected);
  return check_matrix(t, path);
}

torch::Tensor read_embeddings(const std::string& path, const std::string& tensor) {
  if (!path_exists(path)) throw DataError("cannot open " + path + ": no such file");
  if (has_npy_magic(path)) {
    if (!tensor.empty()) throw DataError(path + ": a .npy file holds one array; a tensor name ('" + tensor + "') applies to safetensors only");
    return read_npy(path);
  }
  SafetensorsFile file = [&] {
    try {
      return SafetensorsFile::open(path);
    } catch (const CheckpointError& e) {
      throw DataError(std::string(e.what()) + " (expected a .npy or safetensors file)");
    }
  }();
  const auto names = file.names();
  std::string name = tensor;
  if (name.empty()) {
    if (names.size() != 1) {
      std::string list;
      for (const auto& n : names) list += (list.empty() ? "" : ", ") + n;
      throw DataError(path + ": holds " + std::to_string(names.size()) + " tensors (" + list +
                      "); name the embedding tensor (semantic_id.embeddings_tensor)");
    }
    name = names[0];
  } else if (!file.contains(name)) {
    throw DataError(path + ": no tensor '" + name + "'");
  }
  const StTensorView& v = file.get(name);
  if (v.dtype != StDtype::kF32 && v.dtype != StDtype::kF16 && v.dtype != StDtype::kBF16)
    throw DataError(path + ": tensor '" + name + "' has dtype " + dtype_name(v.dtype) + ", expected F32, F16 or BF16");
  return check_matrix(nn::tensor_view(v).clone(), path + ": tensor '" + name + "'");
}

}  // namespace seqrec::semantic_id
