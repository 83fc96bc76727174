// Implementation of the stderr logger.
#include "seqrec/common/log.h"

#include <cstdarg>
#include <cstdio>
#include <ctime>
#include <mutex>

namespace seqrec {
namespace {

int g_level = 2;
std::mutex g_mutex;

void vlog(const char* level, const char* fmt, va_list args) {
  std::time_t now = std::time(nullptr);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%H:%M:%S", std::localtime(&now));
  std::lock_guard<std::mutex> lock(g_mutex);
  std::fprintf(stderr, "%s %s ", stamp, level);
  std::vfprintf(stderr, fmt, args);
  std::fputc('\n', stderr);
}

}  // namespace

void set_log_level(int level) { g_level = level; }

#define SEQREC_DEFINE_LOG(name, tag, min_level) \
  void name(const char* fmt, ...) {             \
    if (g_level < min_level) return;            \
    va_list args;                               \
    va_start(args, fmt);                        \
    vlog(tag, fmt, args);                       \
    va_end(args);                               \
  }

SEQREC_DEFINE_LOG(log_info, "I", 2)
SEQREC_DEFINE_LOG(log_warn, "W", 1)
SEQREC_DEFINE_LOG(log_error, "E", 0)

}  // namespace seqrec
