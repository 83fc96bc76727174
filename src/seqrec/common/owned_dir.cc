// Folders seqrec owns: the ownership marker, the replaceability check and the atomic swap.
#include "seqrec/common/owned_dir.h"

#include <fcntl.h>
#include <stdio.h>  // renameat2 (glibc >= 2.28)
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <set>
#include <sstream>
#include <vector>

#include "seqrec/common/error.h"
#include "seqrec/common/fs.h"
#include "seqrec/common/log.h"

namespace seqrec {
namespace {

namespace fs = std::filesystem;

constexpr const char* kMarkerHead = "seqrec-owned ";

struct Marker {
  bool found = false;
  std::string kind;
  std::set<std::string> entries;
};

Marker read_marker(const std::string& dir) {
  Marker m;
  const std::string path = dir + "/" + kOwnerMarker;
  if (!path_exists(path)) return m;
  std::istringstream in(read_file(path));
  std::string line;
  if (!std::getline(in, line) || line.rfind(kMarkerHead, 0) != 0) return m;
  m.found = true;
  m.kind = line.substr(std::strlen(kMarkerHead));
  while (std::getline(in, line))
    if (!line.empty()) m.entries.insert(line);
  return m;
}

std::vector<std::string> entries_of(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace

void mark_owned(const std::string& dir, const std::string& kind) {
  std::string text = kMarkerHead + kind + "\n";
  for (const auto& name : entries_of(dir)) {
    if (name == kOwnerMarker) continue;
    if (name.find('\n') != std::string::npos)
      throw Error(dir + ": cannot mark as seqrec's: entry name with a newline");
    text += name + "\n";
  }
  write_file_atomic(dir + "/" + kOwnerMarker, text);
}

std::string why_not_replaceable(const std::string& dir, const std::string& kind) {
  std::error_code ec;
  const auto st = fs::symlink_status(dir, ec);
  if (!fs::exists(st)) return "";
  if (fs::is_symlink(st)) return dir + " is a symbolic link; seqrec replaces only folders it wrote";
  if (!fs::is_directory(st)) return dir + " exists and is not a folder";
  std::vector<std::string> names;
  try {
    names = entries_of(dir);
  } catch (const fs::filesystem_error& e) {
    return "cannot list " + dir + ": " + e.code().message();
  }
  if (names.empty()) return "";
  const Marker m = read_marker(dir);
  if (!m.found)
    return dir + " holds " + names.front() + " (and " + std::to_string(names.size() - 1) +
           " more entries) but no " + kOwnerMarker + ": seqrec did not write this folder";
  if (m.kind != kind)
    return dir + " is a '" + m.kind + "' folder of seqrec, not a '" + kind + "' folder";
  for (const auto& name : names)
    if (name != kOwnerMarker && !m.entries.count(name))
      return dir + "/" + name + " was not written by seqrec (" + kOwnerMarker + " does not list it)";
  return "";
}

bool remove_owned_dir(const std::string& dir) {
  const Marker m = read_marker(dir);
  if (!m.found) return false;
  std::error_code ec;
  for (const auto& name : m.entries) {
    if (name.find('/') != std::string::npos || name == "." || name == "..") continue;
    fs::remove_all(fs::path(dir) / name, ec);
  }
  fs::remove(fs::path(dir) / kOwnerMarker, ec);
  if (!fs::remove(dir, ec)) {
    log_warn("%s: kept, it holds files seqrec did not write", dir.c_str());
    return false;
  }
  return true;
}

void swap_in_dir(const std::string& tmp, const std::string& dir, const std::string& kind) {
  std::error_code ec;
  if (!fs::exists(fs::symlink_status(dir, ec))) {
    fs::rename(tmp, dir);
    fsync_parent_dir(dir);
    return;
  }
  const std::string why = why_not_replaceable(dir, kind);  // it may have changed since the start
  if (!why.empty()) throw Error("not replacing " + dir + ": " + why);
  std::string old = tmp;  // after an exchange, the old folder sits at the temp name
  if (::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, dir.c_str(), RENAME_EXCHANGE) != 0) {
    if (errno != EINVAL && errno != ENOSYS && errno != ENOTSUP)
      throw Error(dir + ": cannot swap in " + tmp + ": " + std::strerror(errno));
    // No exchange on this file system: move the old folder aside first. Killed between the two
    // renames, the next run's clean_stale_temps(dir) puts it back.
    old = dir + ".old." + std::to_string(::getpid());
    fs::rename(dir, old);
    fs::rename(tmp, dir);
  }
  fsync_parent_dir(dir);
  if (fs::is_empty(old, ec)) {
    fs::remove(old, ec);
  } else {
    remove_owned_dir(old);
  }
}

void require_replaceable(const std::string& dir, const std::string& kind, const std::string& key,
                         const std::string& what) {
  clean_stale_temps(dir);
  const std::string why = why_not_replaceable(dir, kind);
  if (!why.empty()) {
    throw ConfigError(key, "expected a new folder, an empty one or an earlier " + what + ", but " + why +
                               "; not replacing it (choose another output, or move the folder away)");
  }
}

void write_owned_dir(const std::string& dir, const std::string& kind,
                     const std::function<void(const std::string& tmp)>& write) {
  const std::string tmp = temp_path_for(dir);
  std::error_code ec;
  try {
    const fs::path parent = fs::path(dir).parent_path();
    if (!parent.empty()) make_dirs(parent.string());
    fs::remove_all(tmp, ec);  // a temp dir of an earlier process that had our pid
    make_dirs(tmp);
    write(tmp);
    mark_owned(tmp, kind);  // last: the folder is complete
    swap_in_dir(tmp, dir, kind);
  } catch (...) {
    fs::remove_all(tmp, ec);
    throw;
  }
}

}  // namespace seqrec
