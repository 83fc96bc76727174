// printf-style logging to stderr with a timestamp and a level; stdout is for results only.
#pragma once

namespace seqrec {

/// Verbosity: 0 errors only, 1 warnings, 2 info (default).
void set_log_level(int level);
void log_info(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warn(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void log_error(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

}  // namespace seqrec
