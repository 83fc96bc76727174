// The test-only crash hook.
#include "seqrec/common/crash_point.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace seqrec {

void crash_point(const char* name) {
  const char* spec = std::getenv(kCrashPointEnv);
  if (spec == nullptr || *spec == '\0') return;
  const char* at = std::strchr(spec, '@');
  const std::string want = at ? std::string(spec, at) : std::string(spec);
  if (want != name) return;
  static std::atomic<long> hits{0};  // one armed name per process, so one counter suffices
  const long nth = at ? std::atol(at + 1) : 1;
  if (++hits < nth) return;
  std::fprintf(stderr, "crash point %s reached (%s=%s): killing the process\n", name, kCrashPointEnv, spec);
  std::fflush(stderr);
  ::kill(::getpid(), SIGKILL);
}

}  // namespace seqrec
