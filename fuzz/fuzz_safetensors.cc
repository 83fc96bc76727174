// libFuzzer target: the safetensors reader (header length, JSON header, dtypes, shapes, offsets,
// coverage of the data block, checksums). The input is the whole file. CheckpointError is expected;
// anything else is a finding, as is a tensor view whose size disagrees with its shape or that
// reaches outside the file.
#include <cstdint>
#include <string>

#include "fuzz_support.h"
#include "seqrec/common/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& path = seqrec::fuzz::write_scratch(data, size);
  seqrec::fuzz::expect_ok_or_error([&] {
    const seqrec::SafetensorsFile file = seqrec::SafetensorsFile::open(path);
    unsigned sum = 0;
    for (const std::string& name : file.names()) {
      const seqrec::StTensorView& t = file.get(name);
      int64_t n = seqrec::dtype_size(t.dtype);
      for (int64_t d : t.shape) {
        if (d < 0) seqrec::fuzz::finding("negative dimension in '" + name + "'");
        n *= d;
      }
      if (n != t.nbytes) seqrec::fuzz::finding("nbytes disagrees with the shape of '" + name + "'");
      if (t.nbytes < 0 || static_cast<uint64_t>(t.nbytes) > size) seqrec::fuzz::finding("tensor larger than the file");
      // Touch every byte: a view outside the mapping faults.
      const auto* p = static_cast<const uint8_t*>(t.data);
      for (int64_t i = 0; i < t.nbytes; ++i) sum += p[i];
    }
    for (const auto& [key, value] : file.metadata()) sum += static_cast<unsigned>(key.size() + value.size());
    if (sum == 0xFFFFFFFFu) std::fprintf(stderr, "%u\n", sum);  // keep the reads
  });
  return 0;
}
