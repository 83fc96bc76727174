// A whole file mapped read-only (private), for the readers that parse files in place: the
// interaction store and Parquet.
#pragma once

#include <cstddef>
#include <string>

namespace seqrec {

class MappedFile {
 public:
  MappedFile() = default;
  /// Maps `path`. Throws DataError "cannot open|stat|mmap <path>: <reason>". An empty file gives
  /// size() 0 and no mapping.
  static MappedFile open(const std::string& path);
  ~MappedFile();
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const unsigned char* data() const { return static_cast<const unsigned char*>(map_); }
  size_t size() const { return size_; }

 private:
  void* map_ = nullptr;
  size_t size_ = 0;
};

}  // namespace seqrec
