// glibc malloc tuning.
#include "seqrec/common/allocator.h"

#include <malloc.h>
#include <unistd.h>

#include <cstdlib>

namespace seqrec {

void tune_allocator() {
#if defined(__GLIBC__)
  mallopt(M_MMAP_THRESHOLD, 1 << 30);   // blocks up to 1 GiB come from the heap
  mallopt(M_TRIM_THRESHOLD, 1 << 30);   // and are not trimmed back eagerly
  mallopt(M_TOP_PAD, 64 << 20);
#endif
}

void ensure_passive_openmp(char** argv) {
  if (std::getenv("OMP_WAIT_POLICY") != nullptr) return;
  setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
  execv("/proc/self/exe", argv);  // returns only on failure: then run with the default policy
}

}  // namespace seqrec
