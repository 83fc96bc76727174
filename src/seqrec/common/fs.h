// Small file-system helpers: atomic writes, temp names that a later run can clean, directory creation.
#pragma once

#include <string>

namespace seqrec {

/// Writes `content` to `path` via `temp_path_for(path)` + fsync + rename + fsync of the folder, so
/// that after a crash `path` holds the old content or the new, never a part. Throws Error naming
/// the path.
void write_file_atomic(const std::string& path, const std::string& content);
/// Reads a whole file; throws Error "cannot open <path>: <reason>".
std::string read_file(const std::string& path);
/// mkdir -p; throws Error naming the path.
void make_dirs(const std::string& path);
/// Whether path exists.
bool path_exists(const std::string& path);
/// Whether `path` is a directory (false when absent or unreadable).
bool is_directory(const std::string& path);
/// Appends one line (plus '\n') to a file, creating it.
void append_line(const std::string& path, const std::string& line);

/// The temp name this process writes `path` under: `<path>.tmp.<pid>`. Every writer of seqrec
/// takes its temp name from here, so that `clean_stale_temps` knows the pattern.
std::string temp_path_for(const std::string& path);
/// Removes what killed runs left beside `path`: files and folders `<path>.tmp.<pid>` whose process
/// is dead (live ones, e.g. a concurrent run, are kept), and a folder `<path>.old.<pid>` that a
/// swap (see owned_dir.h) moved aside: put back when `path` is missing, else removed as the swap
/// would have. Names of any other shape are never touched. Returns how many entries it handled.
int clean_stale_temps(const std::string& path);
/// Whether process `pid` exists on this machine (a pid of another machine on a shared file system
/// cannot be checked and counts as alive only if the same pid lives here).
bool process_alive(long pid);
/// fsyncs the folder that holds `path`, so that a rename into it survives a power loss. Throws
/// Error naming the folder.
void fsync_parent_dir(const std::string& path);

}  // namespace seqrec
