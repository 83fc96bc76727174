// Shared helpers of the libFuzzer targets: a per-process scratch file for the parsers that take a
// path, and the rule that seqrec's documented errors (seqrec::Error and its subclasses) are expected
// outcomes while anything else (another exception, a crash, a sanitizer report) is a finding.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "seqrec/common/error.h"

namespace seqrec::fuzz {

/// The scratch file of this process (under $TMPDIR, else /dev/shm, else /tmp), removed at exit.
inline const std::string& scratch_path() {
  static const std::string path = [] {
    const char* dir = std::getenv("TMPDIR");
    std::string d = dir != nullptr && *dir != '\0' ? dir : (access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
    return d + "/seqrec-fuzz-" + std::to_string(getpid());
  }();
  static const bool registered = [] {
    std::atexit([] { std::remove(path.c_str()); });
    return true;
  }();
  (void)registered;
  return path;
}

/// Writes `size` bytes to the scratch file (replacing it) and returns its path.
inline const std::string& write_scratch(const uint8_t* data, size_t size) {
  const std::string& path = scratch_path();
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) {
    std::perror(path.c_str());
    std::abort();
  }
  if (size > 0 && std::fwrite(data, 1, size, f) != size) std::abort();
  std::fclose(f);
  return path;
}

/// Runs `fn`, accepting seqrec::Error (the documented failure of every seqrec parser); any other
/// exception escapes and libFuzzer reports it as a crash.
template <class Fn>
bool expect_ok_or_error(Fn&& fn) {
  try {
    fn();
    return true;
  } catch (const seqrec::Error&) {
    return false;
  }
}

/// Reports a broken invariant as a crash, with a message.
[[noreturn]] inline void finding(const std::string& what) {
  std::fprintf(stderr, "seqrec fuzz finding: %s\n", what.c_str());
  std::abort();
}

}  // namespace seqrec::fuzz
