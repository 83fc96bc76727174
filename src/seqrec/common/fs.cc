// Small file-system helpers: atomic writes, temp names that a later run can clean, directory creation.
#include "seqrec/common/fs.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <vector>

#include "seqrec/common/error.h"
#include "seqrec/common/log.h"
#include "seqrec/common/owned_dir.h"

namespace seqrec {
namespace {

namespace fs = std::filesystem;

/// The pid in `name` = `<base><infix><digits>`, or -1 when the name has another shape.
long pid_suffix(const std::string& name, const std::string& base, const char* infix) {
  const std::string prefix = base + infix;
  if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) return -1;
  long pid = 0;
  for (size_t i = prefix.size(); i < name.size(); ++i) {
    if (name[i] < '0' || name[i] > '9' || pid > 100'000'000) return -1;
    pid = pid * 10 + (name[i] - '0');
  }
  return pid;
}

void write_all(int fd, const std::string& content, const std::string& path) {
  const char* p = content.data();
  size_t n = content.size();
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      throw Error("cannot write " + path + ": " + std::strerror(errno));
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
}

}  // namespace

void write_file_atomic(const std::string& path, const std::string& content) {
  clean_stale_temps(path);
  const std::string tmp = temp_path_for(path);
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw Error("cannot write " + path + ": " + std::strerror(errno));
  try {
    write_all(fd, content, path);
    // The data must be on disk before the rename makes it visible under the real name.
    if (::fsync(fd) != 0) throw Error("cannot write " + path + ": fsync failed: " + std::strerror(errno));
  } catch (...) {
    ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  if (::close(fd) != 0) {  // a close error (e.g. ENOSPC on NFS) also counts
    const int e = errno;
    ::unlink(tmp.c_str());
    throw Error("cannot write " + path + ": " + std::strerror(e));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int e = errno;
    ::unlink(tmp.c_str());
    throw Error("cannot write " + path + ": rename failed: " + std::strerror(e));
  }
  fsync_parent_dir(path);
}

std::string read_file(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) throw Error("cannot open " + path + ": " + std::strerror(errno));
  // Read in chunks rather than seeking: works for pipes and files whose size changes.
  std::string out;
  char buf[1 << 16];
  size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
  const bool failed = std::ferror(f) != 0;
  const int e = errno;
  std::fclose(f);
  if (failed) throw Error("cannot read " + path + ": " + std::strerror(e));
  return out;
}

void make_dirs(const std::string& path) {
  if (path.empty()) return;
  std::error_code ec;
  fs::create_directories(path, ec);
  if (ec) throw Error("cannot create directory " + path + ": " + ec.message());
  if (!fs::is_directory(path, ec)) {
    throw Error("cannot create directory " + path + ": exists and is not a directory");
  }
}

bool path_exists(const std::string& path) {
  std::error_code ec;
  return fs::exists(path, ec);
}

bool is_directory(const std::string& path) {
  std::error_code ec;
  return fs::is_directory(path, ec);
}

void append_line(const std::string& path, const std::string& line) {
  std::ofstream out(path, std::ios::app | std::ios::binary);
  if (!out) throw Error("cannot open " + path + " for appending");
  out << line << '\n';
  out.flush();
  if (!out) throw Error("cannot write " + path);
}

std::string temp_path_for(const std::string& path) { return path + ".tmp." + std::to_string(::getpid()); }

bool process_alive(long pid) {
  if (pid <= 0) return true;  // not a pid we could have written: never treat as dead
  if (pid == ::getpid()) return true;
  return ::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM;
}

int clean_stale_temps(const std::string& path) {
  fs::path target(path);
  while (target.has_relative_path() && target.filename().empty()) target = target.parent_path();  // "out/"
  const std::string base = target.filename().string();
  if (base.empty() || base == "." || base == "..") return 0;
  const fs::path parent = target.has_parent_path() ? target.parent_path() : fs::path(".");
  std::error_code ec;
  fs::directory_iterator it(parent, ec), end;
  if (ec) return 0;  // a missing parent holds no leftovers
  std::vector<fs::path> temps, asides;
  for (; it != end; it.increment(ec)) {
    if (ec) break;
    const std::string name = it->path().filename().string();
    const long tmp_pid = pid_suffix(name, base, ".tmp.");
    const long old_pid = pid_suffix(name, base, ".old.");
    if (tmp_pid > 0 && !process_alive(tmp_pid)) temps.push_back(it->path());
    if (old_pid > 0 && !process_alive(old_pid)) asides.push_back(it->path());
  }
  int handled = 0;
  for (const auto& p : temps) {
    if (fs::remove_all(p, ec) > 0 && !ec) {
      log_info("removed %s, left by a process that no longer runs", p.c_str());
      ++handled;
    }
  }
  for (const auto& p : asides) {
    // A swap died between moving the old folder aside and renaming the new one in.
    if (!fs::exists(symlink_status(target, ec))) {
      fs::rename(p, target, ec);
      if (ec) throw Error("cannot restore " + path + " from " + p.string() + ": " + ec.message());
      log_warn("restored %s from %s, moved aside by a run that was killed", path.c_str(), p.c_str());
    } else if (remove_owned_dir(p.string())) {
      log_info("removed %s, the previous %s left by a run that was killed", p.c_str(), path.c_str());
    }
    ++handled;
  }
  return handled;
}

void fsync_parent_dir(const std::string& path) {
  fs::path parent = fs::path(path).parent_path();
  if (parent.empty()) parent = ".";
  const int fd = ::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) throw Error("cannot open directory " + parent.string() + ": " + std::strerror(errno));
  // Some file systems refuse fsync on a directory (EINVAL): nothing more can be done there.
  const bool ok = ::fsync(fd) == 0 || errno == EINVAL || errno == EROFS;
  const int e = errno;
  ::close(fd);
  if (!ok) throw Error("cannot fsync directory " + parent.string() + ": " + std::strerror(e));
}

}  // namespace seqrec
