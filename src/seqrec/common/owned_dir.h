// Folders seqrec owns (a prepared store): an ownership marker written last, replacement only of
// what seqrec wrote, and an atomic swap of a finished temp folder into place.
#pragma once

#include <functional>
#include <string>

namespace seqrec {

/// The marker file seqrec writes last into a folder it owns: its first line names the kind of
/// folder ("seqrec-owned <kind>"), the next lines the entries seqrec wrote there.
constexpr const char* kOwnerMarker = ".seqrec-owned";

/// Writes the marker into `dir`, listing every entry now in it. Call after the last output file.
void mark_owned(const std::string& dir, const std::string& kind);

/// Why `dir` must not be replaced by a folder of `kind`, or "" when it may be: it is absent, an
/// empty folder, or a folder whose marker names `kind` and lists every entry in it. The reason
/// names the folder and the first file seqrec did not write.
std::string why_not_replaceable(const std::string& dir, const std::string& kind);

/// Removes a folder through its marker: the entries it lists, the marker, then the folder if that
/// left it empty (else it stays, with what seqrec did not write). Returns whether it is gone.
bool remove_owned_dir(const std::string& dir);

/// Puts the finished folder `tmp` (named by temp_path_for(dir)) at `dir`. A new `dir` is a rename.
/// An existing one must pass why_not_replaceable (else Error) and is exchanged with `tmp` in one
/// renameat2(RENAME_EXCHANGE) call, or, where the file system lacks it, moved aside to
/// `<dir>.old.<pid>` before `tmp` is renamed in: at every moment `dir` holds the old folder or the
/// new one, or (fallback, killed between two renames) the old one sits at `<dir>.old.<pid>`, where
/// clean_stale_temps(dir) of the next run puts it back. The old folder is then removed through its
/// marker, and the parent folder fsynced.
void swap_in_dir(const std::string& tmp, const std::string& dir, const std::string& kind);

/// Refuses, before any work, to replace `dir` unless why_not_replaceable allows it: ConfigError
/// at `key` ("expected a new folder, an empty one or an earlier <what>, but <why>; ..."). First
/// tidies what killed runs left beside it (clean_stale_temps: temp folders, a folder moved aside
/// mid-swap).
void require_replaceable(const std::string& dir, const std::string& kind, const std::string& key,
                         const std::string& what);

/// Writes a folder of `kind` at `dir` as one unit: `write` fills a fresh temp folder
/// (temp_path_for(dir), parents created), then the marker is written and the folder swapped in
/// (swap_in_dir). On any exception the temp folder is removed and the exception passes on.
void write_owned_dir(const std::string& dir, const std::string& kind,
                     const std::function<void(const std::string& tmp)>& write);

}  // namespace seqrec
