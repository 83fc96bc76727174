// Small file-system helpers: atomic writes and directory creation.
#pragma once

#include <string>

namespace seqrec {

/// Writes `content` to `path` via `path.tmp.<pid>` + rename. Throws Error naming the path.
void write_file_atomic(const std::string& path, const std::string& content);
/// Reads a whole file; throws Error "cannot open <path>".
std::string read_file(const std::string& path);
/// mkdir -p; throws Error naming the path.
void make_dirs(const std::string& path);
/// Whether path exists.
bool path_exists(const std::string& path);
/// Whether `path` is a directory (false when absent or unreadable).
bool is_directory(const std::string& path);
/// Appends one line (plus '\n') to a file, creating it.
void append_line(const std::string& path, const std::string& line);

}  // namespace seqrec
