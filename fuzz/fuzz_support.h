// Shared helpers of the libFuzzer targets: a per-process scratch file for the parsers that take a
// path, and the rule that seqrec's documented errors (seqrec::Error and its subclasses) are expected
// outcomes while anything else (another exception, a crash, a sanitizer report) is a finding.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "seqrec/common/error.h"
#include "seqrec/common/log.h"

namespace seqrec::fuzz {

/// Errors only: a parser's warnings (a skipped bad row, ...) are expected outcomes, and printing
/// one per input slowed the runs and buried libFuzzer's own lines.
inline const bool kQuietLogs = (set_log_level(0), true);

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

/// A scratch folder of this process (beside scratch_path()), created on first use and removed
/// with everything in it at exit.
inline const std::string& scratch_dir() {
  static const std::string dir = [] {
    const std::string d = scratch_path() + ".d";
    std::filesystem::create_directories(d);
    std::atexit([] { std::filesystem::remove_all(scratch_path() + ".d"); });
    return d;
  }();
  return dir;
}

/// Writes `size` bytes to `path` (replacing it).
inline void write_bytes(const std::string& path, const void* data, size_t size) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) {
    std::perror(path.c_str());
    std::abort();
  }
  if (size > 0 && std::fwrite(data, 1, size, f) != size) std::abort();
  std::fclose(f);
}

/// Writes `size` bytes to the scratch file (replacing it) and returns its path.
inline const std::string& write_scratch(const uint8_t* data, size_t size) {
  const std::string& path = scratch_path();
  write_bytes(path, data, size);
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
