// safetensors reading (mmap) and writing (temp file + rename), torch-free.
#include "seqrec/common/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <set>
#include <nlohmann/json.hpp>

#include "seqrec/common/error.h"
#include "seqrec/common/fs.h"
#include "seqrec/common/hash.h"

namespace seqrec {

int64_t dtype_size(StDtype dtype) {
  switch (dtype) {
    case StDtype::kF32: return 4;
    case StDtype::kF16: return 2;
    case StDtype::kBF16: return 2;
    case StDtype::kI64: return 8;
    case StDtype::kI32: return 4;
    case StDtype::kU8: return 1;
  }
  return 0;
}

const char* dtype_name(StDtype dtype) {
  switch (dtype) {
    case StDtype::kF32: return "F32";
    case StDtype::kF16: return "F16";
    case StDtype::kBF16: return "BF16";
    case StDtype::kI64: return "I64";
    case StDtype::kI32: return "I32";
    case StDtype::kU8: return "U8";
  }
  return "?";
}

namespace {

bool dtype_from_name(const std::string& name, StDtype* out) {
  for (StDtype d : {StDtype::kF32, StDtype::kF16, StDtype::kBF16, StDtype::kI64, StDtype::kI32,
                    StDtype::kU8}) {
    if (name == dtype_name(d)) {
      *out = d;
      return true;
    }
  }
  return false;
}

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

/// prod(shape) * dtype_size, or -1 on a negative dimension or int64 overflow.
int64_t byte_size(const std::vector<int64_t>& shape, StDtype dtype) {
  int64_t n = dtype_size(dtype);
  for (int64_t d : shape) {
    if (d < 0) return -1;
    if (d != 0 && n > std::numeric_limits<int64_t>::max() / d) return -1;
    n *= d;
  }
  return n;
}

// The metadata key under which seqrec stores one FNV-1a 64 checksum per tensor: a JSON object
// {name: 16 hex digits}. Verified at open; files without it (Python, Hugging Face) load unverified.
constexpr const char* kChecksumKey = "seqrec.checksums";

std::string hex64(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

// Guards against a corrupt size field making us parse gigabytes of "JSON" (same cap as the
// reference implementation).
constexpr uint64_t kMaxHeaderSize = 100'000'000;

void write_all(int fd, const void* data, size_t n, const std::string& tmp) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      throw CheckpointError(tmp + ": write failed: " + std::strerror(errno));
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
}

}  // namespace

void write_safetensors(const std::string& path, const std::vector<StTensorRef>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  std::vector<const StTensorRef*> sorted;
  sorted.reserve(tensors.size());
  for (const auto& t : tensors) sorted.push_back(&t);
  std::sort(sorted.begin(), sorted.end(),
            [](const StTensorRef* a, const StTensorRef* b) { return a->name < b->name; });

  std::vector<int64_t> sizes;
  nlohmann::ordered_json checksums = nlohmann::ordered_json::object();
  for (size_t i = 0; i < sorted.size(); ++i) {
    const StTensorRef& t = *sorted[i];
    if (t.name.empty() || t.name == "__metadata__")
      throw CheckpointError(path + ": invalid tensor name '" + t.name + "'");
    if (i > 0 && sorted[i - 1]->name == t.name)
      throw CheckpointError(path + ": duplicate tensor name '" + t.name + "'");
    const int64_t n = byte_size(t.shape, t.dtype);
    if (n < 0)
      throw CheckpointError(path + ": tensor '" + t.name + "': invalid shape " +
                            shape_text(t.shape));
    if (n > 0 && t.data == nullptr)
      throw CheckpointError(path + ": tensor '" + t.name + "': null data for " +
                            std::to_string(n) + " bytes");
    sizes.push_back(n);
    checksums[t.name] = hex64(fnv1a(kFnvOffset, t.data, static_cast<size_t>(n)));
  }
  // ordered_json: "__metadata__" first, then tensors in name order, matching the data layout.
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  nlohmann::ordered_json meta = nlohmann::ordered_json::object();
  for (const auto& [k, v] : metadata)
    if (k != kChecksumKey) meta[k] = v;
  meta[kChecksumKey] = checksums.dump();
  header["__metadata__"] = meta;
  int64_t offset = 0;
  for (size_t i = 0; i < sorted.size(); ++i) {
    const StTensorRef& t = *sorted[i];
    const int64_t n = sizes[i];
    header[t.name] = {{"dtype", dtype_name(t.dtype)},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + n}}};
    offset += n;
  }

  std::string text = header.dump();
  // Pad with spaces so the data block starts 8-byte aligned, as the reference writer does.
  text.append((8 - text.size() % 8) % 8, ' ');
  unsigned char len[8];
  uint64_t hlen = text.size();
  for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>(hlen >> (8 * i));

  clean_stale_temps(path);
  const std::string tmp = temp_path_for(path);
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw CheckpointError(tmp + ": cannot create: " + std::strerror(errno));
  try {
    write_all(fd, len, sizeof len, tmp);
    write_all(fd, text.data(), text.size(), tmp);
    for (size_t i = 0; i < sorted.size(); ++i)
      if (sizes[i] > 0) write_all(fd, sorted[i]->data, static_cast<size_t>(sizes[i]), tmp);
    // Data must be durable before the rename makes it visible under the real name.
    if (::fsync(fd) != 0) throw CheckpointError(tmp + ": fsync failed: " + std::strerror(errno));
  } catch (...) {
    ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  if (::close(fd) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    throw CheckpointError(tmp + ": close failed: " + std::strerror(err));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    throw CheckpointError(path + ": cannot rename " + tmp + " into place: " + std::strerror(err));
  }
  fsync_parent_dir(path);
}

struct SafetensorsFile::Impl {
  std::string path;
  void* map = nullptr;
  size_t map_size = 0;
  std::map<std::string, StTensorView> tensors;
  std::map<std::string, std::string> metadata;

  ~Impl() {
    if (map != nullptr) ::munmap(map, map_size);
  }
};

namespace {

/// Where one tensor's bytes lie in the data block.
struct Span {
  uint64_t begin, end;
  std::string name;
};

// The format: the data block is entirely indexed, without holes or overlaps. A header length
// off by a byte (data read shifted) or stray bytes show up here.
void check_coverage(const std::string& path, std::vector<Span> spans, uint64_t data_size) {
  std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t at = 0;
  for (const Span& s : spans) {
    if (s.begin != at)
      throw CheckpointError(path + ": tensor '" + s.name + "' begins at byte " + std::to_string(s.begin) +
                            " of the data block, expected " + std::to_string(at) +
                            (s.begin < at ? " (it overlaps the tensor before it)" : " (a hole before it)"));
    at = s.end;
  }
  if (at != data_size)
    throw CheckpointError(path + ": the tensors cover " + std::to_string(at) + " bytes of a data block of " +
                          std::to_string(data_size) + " bytes (header size field wrong, or bytes appended?)");
}

// Checks each tensor against seqrec's checksum, when the file carries them, and drops the key
// from the metadata callers see.
void verify_checksums(const std::string& path, const std::map<std::string, StTensorView>& tensors,
                      std::map<std::string, std::string>& metadata) {
  const auto it = metadata.find(kChecksumKey);
  if (it == metadata.end()) return;
  nlohmann::json sums;
  try {
    sums = nlohmann::json::parse(it->second);
  } catch (const nlohmann::json::exception& e) {
    throw CheckpointError(path + ": bad header: metadata '" + kChecksumKey + "' is not JSON: " + e.what());
  }
  if (!sums.is_object())
    throw CheckpointError(path + ": bad header: metadata '" + kChecksumKey + "' is not a JSON object");
  if (sums.size() != tensors.size())
    throw CheckpointError(path + ": " + kChecksumKey + " lists " + std::to_string(sums.size()) +
                          " tensors, the header " + std::to_string(tensors.size()) + ": the file is corrupt");
  for (const auto& [name, view] : tensors) {
    const auto s = sums.find(name);
    if (s == sums.end() || !s->is_string())
      throw CheckpointError(path + ": tensor '" + name + "' has no checksum in " + kChecksumKey +
                            ": the file is corrupt");
    const std::string computed = hex64(fnv1a(kFnvOffset, view.data, static_cast<size_t>(view.nbytes)));
    if (computed != s->get<std::string>())
      throw CheckpointError(path + ": tensor '" + name + "': checksum mismatch (stored " +
                            s->get<std::string>() + ", computed " + computed +
                            "): the file is corrupt (a damaged disk or copy?)");
  }
  metadata.erase(it);
}

}  // namespace

SafetensorsFile SafetensorsFile::open(const std::string& path) {
  auto impl = std::make_shared<Impl>();
  impl->path = path;

  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw CheckpointError(path + ": cannot open: " + std::strerror(errno));
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    throw CheckpointError(path + ": cannot stat: " + std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw CheckpointError(path + ": " + (S_ISDIR(st.st_mode) ? "is a directory" : "is not a regular file") +
                          ", expected a .safetensors file");
  }
  const uint64_t file_size = static_cast<uint64_t>(st.st_size);
  if (file_size < 8) {
    ::close(fd);
    throw CheckpointError(path + ": truncated: " + std::to_string(file_size) +
                          " bytes, shorter than the 8-byte header size field");
  }
  void* map = ::mmap(nullptr, file_size, PROT_READ, MAP_PRIVATE, fd, 0);
  int map_err = errno;
  ::close(fd);  // the mapping stays valid without the descriptor
  if (map == MAP_FAILED) throw CheckpointError(path + ": cannot mmap: " + std::strerror(map_err));
  impl->map = map;
  impl->map_size = file_size;

  const auto* bytes = static_cast<const unsigned char*>(map);
  uint64_t hlen = 0;
  for (int i = 0; i < 8; ++i) hlen |= static_cast<uint64_t>(bytes[i]) << (8 * i);
  if (hlen > file_size - 8)
    throw CheckpointError(path + ": truncated: header claims " + std::to_string(hlen) +
                          " bytes but only " + std::to_string(file_size - 8) + " follow");
  if (hlen > kMaxHeaderSize)
    throw CheckpointError(path + ": bad header: size " + std::to_string(hlen) +
                          " bytes exceeds the " + std::to_string(kMaxHeaderSize) + " limit");
  const char* hbegin = reinterpret_cast<const char*>(bytes + 8);
  const unsigned char* data = bytes + 8 + hlen;
  const uint64_t data_size = file_size - 8 - hlen;

  nlohmann::json header;
  try {
    header = nlohmann::json::parse(hbegin, hbegin + hlen);
  } catch (const nlohmann::json::exception& e) {
    throw CheckpointError(path + ": bad header: " + e.what());
  }
  if (!header.is_object() || hbegin[0] != '{')
    throw CheckpointError(path + ": bad header: not a JSON object starting at its first byte");

  std::vector<Span> spans;
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      if (!entry.is_object())
        throw CheckpointError(path + ": bad header: __metadata__ is not an object");
      for (const auto& [k, v] : entry.items()) {
        if (!v.is_string())
          throw CheckpointError(path + ": bad header: __metadata__ value for '" + k +
                                "' is not a string");
        impl->metadata[k] = v.get<std::string>();
      }
      continue;
    }
    const std::string where = path + ": bad header: tensor '" + name + "': ";
    if (!entry.is_object()) throw CheckpointError(where + "entry is not an object");
    auto dt = entry.find("dtype");
    auto sh = entry.find("shape");
    auto off = entry.find("data_offsets");
    if (dt == entry.end() || !dt->is_string())
      throw CheckpointError(where + "missing string 'dtype'");
    if (sh == entry.end() || !sh->is_array())
      throw CheckpointError(where + "missing array 'shape'");
    if (off == entry.end() || !off->is_array() || off->size() != 2)
      throw CheckpointError(where + "'data_offsets' must be [begin, end]");

    StTensorView view{};
    const std::string dtype_str = dt->get<std::string>();
    if (!dtype_from_name(dtype_str, &view.dtype))
      throw CheckpointError(path + ": unsupported dtype '" + dtype_str + "' for tensor '" + name +
                            "' (supported: F32, F16, BF16, I64, I32, U8)");
    for (const auto& d : *sh) {
      if (!d.is_number_unsigned())
        throw CheckpointError(where + "shape entries must be non-negative integers");
      view.shape.push_back(static_cast<int64_t>(std::min<uint64_t>(
          d.get<uint64_t>(), static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))));
    }
    for (const auto& o : *off)
      if (!o.is_number_unsigned())
        throw CheckpointError(where + "data_offsets must be non-negative integers");
    const uint64_t begin = (*off)[0].get<uint64_t>();
    const uint64_t end = (*off)[1].get<uint64_t>();

    const std::string twhere = path + ": tensor '" + name + "': ";
    if (begin > end || end > data_size)
      throw CheckpointError(twhere + "data_offsets [" + std::to_string(begin) + ", " +
                            std::to_string(end) + "] outside the data block of " +
                            std::to_string(data_size) + " bytes");
    const int64_t need = byte_size(view.shape, view.dtype);
    if (need < 0 || static_cast<uint64_t>(need) != end - begin)
      throw CheckpointError(twhere + "data_offsets span " + std::to_string(end - begin) +
                            " bytes but shape " + shape_text(view.shape) + " of " + dtype_str +
                            " needs " + (need < 0 ? std::string("too many") : std::to_string(need)));
    view.data = data + begin;
    view.nbytes = need;
    spans.push_back({begin, end, name});
    impl->tensors.emplace(name, std::move(view));
  }
  check_coverage(path, spans, data_size);
  verify_checksums(path, impl->tensors, impl->metadata);

  SafetensorsFile file;
  file.impl_ = std::move(impl);
  return file;
}

const std::string& SafetensorsFile::path() const { return impl_->path; }

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::string> out;
  out.reserve(impl_->tensors.size());
  for (const auto& kv : impl_->tensors) out.push_back(kv.first);
  return out;
}

bool SafetensorsFile::contains(const std::string& name) const {
  return impl_->tensors.count(name) > 0;
}

const StTensorView& SafetensorsFile::get(const std::string& name) const {
  auto it = impl_->tensors.find(name);
  if (it == impl_->tensors.end())
    throw CheckpointError(impl_->path + ": missing tensor '" + name + "'");
  return it->second;
}

const std::map<std::string, std::string>& SafetensorsFile::metadata() const {
  return impl_->metadata;
}

std::vector<std::string> hf_weight_files(const std::string& dir) {
  const std::string index = dir + "/model.safetensors.index.json";
  if (!path_exists(index)) {
    if (path_exists(dir + "/model.safetensors")) return {dir + "/model.safetensors"};
    throw CheckpointError(dir + ": neither model.safetensors nor model.safetensors.index.json found");
  }
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_file(index));
  } catch (const nlohmann::json::exception& e) {
    throw CheckpointError(index + ": not valid JSON: " + e.what());
  }
  if (!j.contains("weight_map") || !j["weight_map"].is_object()) throw CheckpointError(index + ": no 'weight_map'");
  std::set<std::string> shards;
  for (const auto& [name, shard] : j["weight_map"].items()) {
    if (!shard.is_string()) throw CheckpointError(index + ": weight_map['" + name + "'] is not a file name");
    shards.insert(shard.get<std::string>());
  }
  std::vector<std::string> files;
  for (const auto& shard : shards) files.push_back(dir + "/" + shard);
  return files;
}

}  // namespace seqrec
