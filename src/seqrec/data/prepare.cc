// prepare: raw interaction files -> filters -> dense ids -> InteractionStore + id maps + item table.
#include "seqrec/data/prepare.h"

#include <string.h>
#include <unistd.h>

#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <memory>
#include <charconv>
#include <cstring>
#include <deque>
#include <filesystem>
#include <functional>
#include <string_view>
#include <utility>

#include <nlohmann/json.hpp>

#include "seqrec/common/error.h"
#include "seqrec/common/utf8.h"
#include "seqrec/common/fs.h"
#include "seqrec/common/owned_dir.h"
#include "seqrec/common/log.h"
#include "seqrec/common/parallel.h"
#include "seqrec/data/event_log.h"
#include "seqrec/data/id_table.h"
#include "seqrec/data/parquet.h"
#include "seqrec/data/interaction_store.h"

namespace seqrec::data {
namespace {

namespace fs = std::filesystem;

// ---------------------------------------------------------------------------------------------
// Small text helpers (string_view based so that parsing a million rows allocates little).

/// Iterates the lines of a buffer; optionally strips a UTF-8 BOM at the start; strips '\r' at
/// line ends.
class LineReader {
 public:
  LineReader(std::string_view buf, bool strip_bom) : buf_(buf) {
    if (strip_bom && buf_.size() >= 3 && std::memcmp(buf_.data(), "\xEF\xBB\xBF", 3) == 0) pos_ = 3;
  }
  bool next(std::string_view* line) {
    if (pos_ >= buf_.size()) return false;
    const char* start = buf_.data() + pos_;
    const size_t left = buf_.size() - pos_;
    const void* nl = std::memchr(start, '\n', left);
    size_t len = nl ? static_cast<size_t>(static_cast<const char*>(nl) - start) : left;
    pos_ += nl ? len + 1 : len;
    if (len > 0 && start[len - 1] == '\r') --len;
    *line = std::string_view(start, len);
    ++line_no_;
    return true;
  }
  int64_t line_no() const { return line_no_; }
  /// Bytes consumed so far (BOM and line ends included).
  size_t consumed() const { return pos_; }

 private:
  std::string_view buf_;
  size_t pos_ = 0;
  int64_t line_no_ = 0;
};

bool is_blank(std::string_view s) {
  for (char c : s) {
    if (c != ' ' && c != '\t') return false;
  }
  return true;
}

std::string_view trim(std::string_view s) {
  size_t b = 0;
  size_t e = s.size();
  while (b < e && (s[b] == ' ' || s[b] == '\t' || s[b] == '\r')) ++b;
  while (e > b && (s[e - 1] == ' ' || s[e - 1] == '\t' || s[e - 1] == '\r')) --e;
  return s.substr(b, e - b);
}

/// Splits on runs of spaces/tabs (SASRec and per-user sequence files).
void split_ws(std::string_view line, std::vector<std::string_view>* out) {
  out->clear();
  size_t i = 0;
  const size_t n = line.size();
  while (i < n) {
    while (i < n && (line[i] == ' ' || line[i] == '\t')) ++i;
    if (i >= n) break;
    size_t j = i;
    while (j < n && line[j] != ' ' && line[j] != '\t') ++j;
    out->push_back(line.substr(i, j - i));
    i = j;
  }
}

/// Splits on a separator string, keeping empty fields. With `quoting`, a field that starts with
/// '"' runs to the closing quote ("" is an escaped quote); quoted fields cannot span lines.
class FieldSplitter {
 public:
  FieldSplitter(std::string sep, bool quoting) : sep_(std::move(sep)), quoting_(quoting) {}

  void split(std::string_view line, std::vector<std::string_view>* out) {
    out->clear();
    if (sep_.size() == 1 && (!quoting_ || std::memchr(line.data(), '"', line.size()) == nullptr)) {
      // Fast path: one separator character and no quotes on the line.
      const char sep = sep_[0];
      const char* p = line.data();
      const char* end = p + line.size();
      while (true) {
        const auto* hit = static_cast<const char*>(std::memchr(p, sep, static_cast<size_t>(end - p)));
        if (hit == nullptr) {
          out->emplace_back(p, static_cast<size_t>(end - p));
          return;
        }
        out->emplace_back(p, static_cast<size_t>(hit - p));
        p = hit + 1;
      }
    }
    if (!scratch_.empty()) scratch_.clear();
    const size_t n = line.size();
    size_t i = 0;
    while (true) {
      if (quoting_ && i < n && line[i] == '"') {
        std::string& field = scratch_.emplace_back();  // deque: earlier views stay valid
        size_t j = i + 1;
        while (j < n) {
          if (line[j] == '"') {
            if (j + 1 < n && line[j + 1] == '"') {
              field += '"';
              j += 2;
            } else {
              ++j;
              break;
            }
          } else {
            field += line[j++];
          }
        }
        // Text between the closing quote and the next separator is kept (lenient).
        const size_t k = line.find(sep_, j);
        if (k == std::string_view::npos) {
          field.append(line.substr(j));
          out->push_back(field);
          break;
        }
        field.append(line.substr(j, k - j));
        out->push_back(field);
        i = k + sep_.size();
        continue;
      }
      const size_t k = line.find(sep_, i);
      if (k == std::string_view::npos) {
        out->push_back(line.substr(i));
        break;
      }
      out->push_back(line.substr(i, k - i));
      i = k + sep_.size();
    }
  }

 private:
  std::string sep_;
  bool quoting_;
  std::deque<std::string> scratch_;
};

/// Config separators may arrive as the two characters '\' 't'.
std::string normalize_sep(const std::string& sep, const std::string& config_path) {
  if (sep == "\\t" || sep == "tab" || sep == "TAB") return "\t";
  if (sep.empty()) throw ConfigError(config_path, "expected a non-empty separator, got ''");
  if (sep.find('\n') != std::string::npos) {
    throw ConfigError(config_path, "expected a separator without newlines, got a newline");
  }
  return sep;
}

bool parse_int(std::string_view s, int64_t* value) { return parse_int64(s, value); }

bool is_int(std::string_view s) {
  int64_t v = 0;
  return parse_int(s, &v);
}

/// Tabs and newlines would break the TSV outputs.
std::string sanitize(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c == '\t' || c == '\n' || c == '\r') c = ' ';
  }
  return out;
}

std::string quote(std::string_view s) {
  constexpr size_t kMax = 60;
  if (s.size() > kMax) return "'" + std::string(s.substr(0, kMax)) + "...'";
  return "'" + std::string(s) + "'";
}

std::string loc(const std::string& path, int64_t line) {
  return path + ":" + std::to_string(line);
}

/// Malformed-row policy: throw, or skip and count (the first message is kept for the warning).
class RowErrors {
 public:
  RowErrors(bool skip, std::string file) : skip_(skip), file_(std::move(file)) {}
  void bad(const std::string& message) {
    if (!skip_) throw DataError(message);
    if (skipped_ == 0) first_ = message;
    ++skipped_;
  }
  int64_t skipped() const { return skipped_; }
  void warn_if_any() const {
    if (skipped_ > 0) {
      log_warn("%s: skipped %lld malformed rows (first: %s)", file_.c_str(),
               static_cast<long long>(skipped_), first_.c_str());
    }
  }

 private:
  bool skip_;
  std::string file_;
  int64_t skipped_ = 0;
  std::string first_;
};

std::string expected_fields(size_t want, size_t got) {
  return "expected " + std::to_string(want) + " fields, got " + std::to_string(got);
}

size_t find_column(const std::vector<std::string>& header, const std::string& name,
                   const std::string& what, const std::string& path, const std::string& sep) {
  for (size_t i = 0; i < header.size(); ++i) {
    if (header[i] == name) return i;
  }
  std::string got;
  for (size_t i = 0; i < header.size(); ++i) got += (i ? sep : "") + header[i];
  throw DataError(loc(path, 1) + ": expected a column named '" + name + "' (" + what +
                  ") in the header, got " + quote(got));
}

// ---------------------------------------------------------------------------------------------
// Parallel parsing. The input is read in blocks; each block is cut at line ends into pieces that
// threads parse on their own (ids interned into piece-local dictionaries); pieces are then merged
// in file order, so ids, error messages and outputs do not depend on the thread count.

constexpr size_t kBlockBytes = size_t{32} << 20;
/// No row of an interaction file comes near this; a longer "line" is a binary file or a device.
constexpr size_t kMaxLineBytes = size_t{256} << 20;

/// What one thread made of one piece of text.
struct Piece {
  std::vector<Event> events;
  LocalDict users;
  LocalDict items;
  int64_t rows = 0;         ///< data rows parsed
  int64_t lines = 0;        ///< lines in the piece
  int64_t skipped = 0;      ///< malformed rows
  int64_t error_line = 0;   ///< 1-based line (within the piece) of the first malformed row
  std::string error;        ///< its message, without the location
};

/// How to cut a line into (user, item..., timestamp).
struct LineFormat {
  InputFormat format = InputFormat::kCsv;
  std::string sep;          ///< kCsv / kMovieLensCsv
  bool quoting = false;
  size_t user = 0, item = 0, time = 0, fields = 0;
  bool has_ts = false;
  bool skip_bad = false;
};

class PieceParser {
 public:
  PieceParser(const LineFormat& f, Piece* out)
      : f_(f), out_(out), splitter_(f.format == InputFormat::kMovieLensDat ? "::" : f.sep, f.quoting) {}

  /// Parses the lines of `text`; stops at the first malformed row unless skip_bad.
  void run(std::string_view text) {
    LineReader lines(text, /*strip_bom=*/false);
    std::string_view line;
    while (lines.next(&line)) {
      out_->lines = lines.line_no();
      if (is_blank(line)) continue;
      if (!parse(line) && !f_.skip_bad) return;
    }
    out_->lines = lines.line_no();
  }

 private:
  bool bad(std::string message) {
    if (out_->skipped++ == 0) {
      out_->error = std::move(message);
      out_->error_line = out_->lines;
    }
    return false;
  }

  void add(std::string_view user, std::string_view item, int64_t ts) {
    out_->events.push_back(Event{intern(out_->users, user), intern(out_->items, item), ts});
  }

  /// Interns a field: in place when it lies in the current line (the block outlives the piece),
  /// copied when it does not (a quoted CSV field, unquoted into the splitter's scratch buffer,
  /// which the next line reuses).
  uint32_t intern(LocalDict& dict, std::string_view field) const {
    const std::less<const char*> before;
    const bool in_line = !before(field.data(), line_.data()) &&
                         !before(line_.data() + line_.size(), field.data() + field.size());
    return in_line ? dict.intern(field) : dict.intern_copy(field);
  }

  bool ids_ok(std::string_view user, std::string_view item) {
    if (user.empty()) return bad("expected a non-empty user id, got ''");
    if (item.empty()) return bad("expected a non-empty item id, got ''");
    return true;
  }

  bool parse(std::string_view line) {
    line_ = line;
    switch (f_.format) {
      case InputFormat::kCsv:
      case InputFormat::kMovieLensCsv: {
        splitter_.split(line, &fields_);
        if (fields_.size() != f_.fields) return bad(expected_fields(f_.fields, fields_.size()));
        const std::string_view user = trim(fields_[f_.user]);
        const std::string_view item = trim(fields_[f_.item]);
        if (!ids_ok(user, item)) return false;
        int64_t ts = 0;
        if (f_.has_ts && !parse_int(trim(fields_[f_.time]), &ts)) {
          return bad("expected integer timestamp, got " + quote(trim(fields_[f_.time])));
        }
        add(user, item, ts);
        break;
      }
      case InputFormat::kMovieLensDat: {
        splitter_.split(line, &fields_);
        if (fields_.size() != 4) {
          return bad(expected_fields(4, fields_.size()) + " (user::item::rating::timestamp)");
        }
        const std::string_view user = trim(fields_[0]);
        const std::string_view item = trim(fields_[1]);
        if (!ids_ok(user, item)) return false;
        int64_t ts = 0;
        if (!parse_int(trim(fields_[3]), &ts)) {
          return bad("expected integer timestamp, got " + quote(trim(fields_[3])));
        }
        add(user, item, ts);
        break;
      }
      case InputFormat::kSasrecPairs:
        split_ws(line, &fields_);
        if (fields_.size() != 2) return bad(expected_fields(2, fields_.size()) + " (user item)");
        add(fields_[0], fields_[1], 0);
        break;
      case InputFormat::kParquet:
        return bad("not a text format");  // never parsed line by line
      case InputFormat::kUserSequences:
        split_ws(line, &fields_);
        if (fields_.size() < 2) {
          return bad("expected at least 2 fields (user item...), got " +
                     std::to_string(fields_.size()));
        }
        for (size_t k = 1; k < fields_.size(); ++k) add(fields_[0], fields_[k], 0);
        break;
    }
    ++out_->rows;
    return true;
  }

  const LineFormat& f_;
  Piece* out_;
  FieldSplitter splitter_;
  std::vector<std::string_view> fields_;
  std::string_view line_;  // the line being parsed
};

/// Everything parsed from the input: ids, events in file order, counts of rows.
struct Ingest {
  IdTable users;
  IdTable items;
  std::unique_ptr<EventLog> log;
  int64_t rows = 0;
  int64_t skipped = 0;
  bool has_timestamps = false;
};

/// Merges pieces into the ingest in order; throws the first malformed row unless skipping.
class PieceMerger {
 public:
  /// `unit`: "" for text lines ("file:12: ..."), or "row" for Parquet rows ("file: row 12: ...").
  PieceMerger(Ingest* in, const std::string& path, bool skip, const char* unit = "")
      : in_(in), path_(path), skip_(skip), unit_(unit) {}

  void merge(Piece& p) {
    if (p.skipped > 0) {
      const int64_t at = line_base_ + p.error_line;
      const std::string message =
          (*unit_ ? path_ + ": " + unit_ + " " + std::to_string(at) : loc(path_, at)) + ": " + p.error;
      if (!skip_) throw DataError(message);
      if (in_->skipped == 0) first_ = message;
      in_->skipped += p.skipped;
    }
    const size_t n = p.events.size();
    if (n > 0) {
      in_->users.merge(p.users, &p.events[0].user, n, sizeof(Event) / sizeof(uint32_t));
      in_->items.merge(p.items, &p.events[0].item, n, sizeof(Event) / sizeof(uint32_t));
      in_->log->append(std::move(p.events));
    }
    in_->rows += p.rows;
    line_base_ += p.lines;
  }
  void skip_lines(int64_t n) { line_base_ += n; }
  /// Logs the rows read so far, with rows/s (and MB/s when bytes_read > 0), at most every 5 s.
  void report_progress(uint64_t bytes_read) {
    const auto now = std::chrono::steady_clock::now();
    if (now - last_log_ <= std::chrono::seconds(5)) return;
    last_log_ = now;
    const double s = std::chrono::duration<double>(now - start_).count();
    if (bytes_read > 0) {
      log_info("prepare: %lld rows read (%.2fM rows/s, %.0f MB/s)", static_cast<long long>(in_->rows),
               in_->rows / s / 1e6, bytes_read / s / 1e6);
    } else {
      log_info("prepare: %lld rows read (%.2fM rows/s)", static_cast<long long>(in_->rows),
               in_->rows / s / 1e6);
    }
  }
  void warn_if_any() const {
    if (in_->skipped > 0) {
      log_warn("%s: skipped %lld malformed rows (first: %s)", path_.c_str(),
               static_cast<long long>(in_->skipped), first_.c_str());
    }
  }

 private:
  Ingest* in_;
  const std::string& path_;
  bool skip_;
  const char* unit_;
  int64_t line_base_ = 0;
  std::string first_;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  std::chrono::steady_clock::time_point last_log_ = start_;
};

/// Reads a file block by block; each block ends at a line end (the rest is carried over).
class BlockReader {
 public:
  explicit BlockReader(const std::string& path) : path_(path) {
    file_ = std::fopen(path.c_str(), "rb");
    if (file_ == nullptr) throw DataError("cannot open " + path + ": " + std::strerror(errno));
    struct stat st;
    const bool known = ::fstat(::fileno(file_), &st) == 0;
    if (known && !S_ISREG(st.st_mode) && !S_ISFIFO(st.st_mode)) {
      std::fclose(file_);
      throw DataError(path + ": " + (S_ISDIR(st.st_mode) ? "is a directory" : "is a device, not a regular file") +
                      ": expected a file of rows");
    }
    // A small file gets a buffer of its size, not 32 MiB zero-filled (the buffer still grows if
    // the file does while it is read).
    if (known && S_ISREG(st.st_mode))
      block_ = std::min(kBlockBytes, std::max<size_t>(size_t{64} << 10, static_cast<size_t>(st.st_size) + 1));
  }
  ~BlockReader() { std::fclose(file_); }
  BlockReader(const BlockReader&) = delete;
  BlockReader& operator=(const BlockReader&) = delete;

  /// The next block of whole lines (the last one may lack its '\n'); false at the end.
  bool next(std::string_view* block) {
    if (eof_ && carry_ == 0) return false;
    buf_.resize(std::max(buf_.size(), carry_ + block_));
    if (carry_ > 0 && start_ > 0) std::memmove(&buf_[0], &buf_[start_], carry_);
    size_t have = carry_;
    while (!eof_) {
      if (buf_.size() - have < block_ / 2) buf_.resize(buf_.size() + block_);
      const size_t got = std::fread(&buf_[have], 1, buf_.size() - have, file_);
      if (got == 0) {
        if (std::ferror(file_)) throw DataError("cannot read " + path_ + ": " + std::strerror(errno));
        eof_ = true;
        break;
      }
      bytes_ += got;
      const size_t from = have;
      have += got;
      const void* nl = memrchr(&buf_[from], '\n', have - from);
      if (nl != nullptr) {
        const size_t end = static_cast<size_t>(static_cast<const char*>(nl) - buf_.data()) + 1;
        carry_ = have - end;
        start_ = end;
        *block = std::string_view(buf_.data(), end);
        return true;
      }
      if (have > kMaxLineBytes)
        throw DataError(path_ + ": a line longer than " + std::to_string(kMaxLineBytes >> 20) + " MiB after byte " +
                        std::to_string(bytes_ - have) + ": expected a text file of rows");
    }
    // End of file: whatever is left is the last block.
    *block = std::string_view(buf_.data(), have);
    carry_ = 0;
    start_ = 0;
    return have > 0;
  }
  uint64_t bytes_read() const { return bytes_; }

 private:
  std::string path_;
  std::FILE* file_ = nullptr;
  std::string buf_;
  size_t block_ = kBlockBytes;  ///< bytes read per block (less for a small regular file)
  size_t carry_ = 0;
  size_t start_ = 0;
  bool eof_ = false;
  uint64_t bytes_ = 0;
};

/// The BlockReader interface over text already in memory: the whole text is one block.
class TextBlockReader {
 public:
  explicit TextBlockReader(std::string_view text) : text_(text) {}
  /// The whole text once (if not empty); false afterwards.
  bool next(std::string_view* block) {
    if (done_ || text_.empty()) return false;
    done_ = true;
    *block = text_;
    return true;
  }
  uint64_t bytes_read() const { return done_ ? text_.size() : 0; }

 private:
  std::string_view text_;
  bool done_ = false;
};

/// Cuts `text` into about `parts` pieces at line ends.
std::vector<std::string_view> cut_lines(std::string_view text, size_t parts) {
  std::vector<std::string_view> out;
  size_t begin = 0;
  for (size_t p = 1; p <= parts && begin < text.size(); ++p) {
    size_t end = text.size() * p / parts;
    if (p < parts) {
      if (end < begin) end = begin;
      const size_t nl = text.find('\n', end);
      end = nl == std::string_view::npos ? text.size() : nl + 1;
    } else {
      end = text.size();
    }
    if (end > begin) out.push_back(text.substr(begin, end - begin));
    begin = end;
  }
  return out;
}

/// Header and column positions of a CSV input; consumes the header line of `block`.
LineFormat csv_format(const std::string& path, std::string_view* block, const std::string& sep_in,
                      const std::string& user_col, const std::string& item_col,
                      const std::string& time_col) {
  LineFormat f;
  f.sep = normalize_sep(sep_in, "prepare.sep");
  f.quoting = f.sep.size() == 1 && f.sep != "\t";
  LineReader lines(*block, /*strip_bom=*/true);
  std::string_view line;
  if (!lines.next(&line)) throw DataError(path + ": empty file: expected a header line");
  FieldSplitter splitter(f.sep, f.quoting);
  std::vector<std::string_view> fields;
  splitter.split(line, &fields);
  std::vector<std::string> header;
  for (auto h : fields) header.emplace_back(trim(h));
  f.user = find_column(header, user_col, "user column", path, f.sep);
  f.item = find_column(header, item_col, "item column", path, f.sep);
  f.has_ts = !time_col.empty();
  if (f.has_ts) f.time = find_column(header, time_col, "timestamp column", path, f.sep);
  f.fields = header.size();
  block->remove_prefix(lines.consumed());
  return f;
}

/// Parses the blocks of `reader` (options.input's text) with `threads` threads into `in` (whose log
/// must be set).
template <class Reader>
void ingest_text(const PrepareOptions& o, int threads, Reader& reader, Ingest* in) {
  const std::string& path = o.input;
  PieceMerger merger(in, path, o.skip_bad_rows);
  LineFormat f;
  f.format = o.format;
  f.skip_bad = o.skip_bad_rows;
  std::string_view block;
  bool first = true;
  std::vector<Piece> pieces;
  while (reader.next(&block)) {
    if (first) {
      first = false;
      if (block.size() >= 3 && std::memcmp(block.data(), "\xEF\xBB\xBF", 3) == 0) block.remove_prefix(3);
      if (o.format == InputFormat::kCsv || o.format == InputFormat::kMovieLensCsv) {
        const bool ml = o.format == InputFormat::kMovieLensCsv;
        f = csv_format(path, &block, ml ? "," : o.sep, ml ? "userId" : o.user_col,
                       ml ? "movieId" : o.item_col, ml ? "timestamp" : o.time_col);
        f.format = o.format;
        f.skip_bad = o.skip_bad_rows;
        merger.skip_lines(1);
      } else if (o.format == InputFormat::kUserSequences) {
        // A header is recognised by its second field (e.g. "movie_ids_in_time_order").
        LineReader lines(block, false);
        std::string_view line;
        std::vector<std::string_view> fs;
        while (lines.next(&line)) {
          if (is_blank(line)) continue;
          split_ws(line, &fs);
          const bool header = fs.size() >= 2 ? !is_int(fs[1]) : (fs.size() == 1 && !is_int(fs[0]));
          if (header) {
            merger.skip_lines(lines.line_no());
            block.remove_prefix(lines.consumed());
          }
          break;
        }
      }
    }
    const std::vector<std::string_view> parts = cut_lines(block, static_cast<size_t>(threads) * 4);
    pieces.clear();
    pieces.resize(parts.size());
    parallel_tasks(static_cast<int64_t>(parts.size()), threads, [&](int64_t t) {
      // One event per line (per-user lines grow past it): the block is kept as it is by the log.
      const std::string_view part = parts[static_cast<size_t>(t)];
      pieces[static_cast<size_t>(t)].events.reserve(
          static_cast<size_t>(std::count(part.begin(), part.end(), '\n')) + 1);
      PieceParser(f, &pieces[static_cast<size_t>(t)]).run(part);
    });
    for (auto& p : pieces) merger.merge(p);
    merger.report_progress(reader.bytes_read());
  }
  if (first && (o.format == InputFormat::kCsv || o.format == InputFormat::kMovieLensCsv)) {
    throw DataError(path + ": empty file: expected a header line");
  }
  merger.warn_if_any();
}

/// One id or timestamp column of a Parquet row group, read as integers or as text.
struct ParquetField {
  const parquet::Column* col = nullptr;
  const char* what = "";
  bool text = false;  // BYTE_ARRAY / FIXED_LEN_BYTE_ARRAY
};

ParquetField parquet_field(const parquet::File& file, const parquet::Column& col, const char* what,
                           bool allow_text) {
  using parquet::PhysicalType;
  ParquetField f{&col, what, false};
  switch (col.physical) {
    case PhysicalType::kInt32:
    case PhysicalType::kInt64:
    case PhysicalType::kInt96:
      return f;
    case PhysicalType::kByteArray:
    case PhysicalType::kFixedLenByteArray:
      f.text = true;
      if (allow_text) return f;
      break;
    default:
      break;
  }
  throw DataError(file.path() + ": column '" + col.path + "' (" + what + "): expected " +
                  (allow_text ? "an integer or string" : "an integer") + " column, got " +
                  parquet::physical_type_name(col.physical));
}

std::string_view slot_text(const parquet::Column& c, int64_t slot) {
  const auto b = static_cast<size_t>(c.byte_offsets[static_cast<size_t>(slot)]);
  const auto e = static_cast<size_t>(c.byte_offsets[static_cast<size_t>(slot) + 1]);
  return std::string_view(c.bytes.data() + b, e - b);
}

/// Builds the piece of one Parquet row group; `cols` keeps the columns its ids point into.
void parquet_piece(const parquet::File& file, const PrepareOptions& o, int row_group, Piece* piece,
                   std::vector<parquet::Column>* cols) {
  const bool has_ts = !o.time_col.empty();
  cols->clear();
  cols->push_back(file.read(row_group, o.user_col));
  cols->push_back(file.read(row_group, o.item_col));
  if (has_ts) cols->push_back(file.read(row_group, o.time_col));
  const ParquetField user = parquet_field(file, (*cols)[0], "user column", true);
  const ParquetField item = parquet_field(file, (*cols)[1], "item column", true);
  ParquetField ts;
  if (has_ts) ts = parquet_field(file, (*cols)[2], "timestamp column", false);
  if (user.col->is_list) {
    throw DataError(file.path() + ": column '" + user.col->path +
                    "' (user column): expected one user per row, got a list column");
  }
  const bool lists = item.col->is_list;
  if (has_ts && ts.col->is_list != lists) {
    throw DataError(file.path() + ": column '" + ts.col->path + "' (timestamp column): expected " +
                    (lists ? "a list column beside the item list" : "one timestamp per row"));
  }
  const int64_t rows = user.col->num_rows;
  piece->lines = rows;
  auto bad = [&](int64_t r, const std::string& message) {
    if (piece->skipped++ == 0) {
      piece->error = message;
      piece->error_line = r + 1;
    }
  };
  auto intern = [](LocalDict& d, const ParquetField& f, int64_t slot) {
    return f.text ? d.intern(slot_text(*f.col, slot)) : d.intern_int(f.col->ints[static_cast<size_t>(slot)]);
  };
  piece->events.reserve(static_cast<size_t>(lists ? item.col->num_slots() : rows));
  for (int64_t r = 0; r < rows; ++r) {
    if (!user.col->is_valid(r)) {
      bad(r, "column '" + user.col->path + "' (user column) is null");
      if (!o.skip_bad_rows) return;
      continue;
    }
    const uint32_t u = intern(piece->users, user, r);
    if (user.text && slot_text(*user.col, r).empty()) {
      bad(r, "expected a non-empty user id, got ''");
      if (!o.skip_bad_rows) return;
      continue;
    }
    int64_t s0 = r, s1 = r + 1;
    if (lists) {
      const auto& lo = item.col->list_offsets;
      s0 = lo[static_cast<size_t>(r)];
      s1 = lo[static_cast<size_t>(r) + 1];
      if (has_ts && ts.col->list_offsets[static_cast<size_t>(r) + 1] - ts.col->list_offsets[static_cast<size_t>(r)] != s1 - s0) {
        bad(r, "expected as many timestamps as items in the row's lists");
        if (!o.skip_bad_rows) return;
        continue;
      }
    }
    bool ok = true;
    for (int64_t s = s0; s < s1 && ok; ++s) {
      const int64_t t = lists && has_ts ? ts.col->list_offsets[static_cast<size_t>(r)] + (s - s0) : s;
      if (!item.col->is_valid(s) || (item.text && slot_text(*item.col, s).empty())) {
        bad(r, "expected a non-empty item id, got null or ''");
        ok = false;
      } else if (has_ts && !ts.col->is_valid(t)) {
        bad(r, "column '" + ts.col->path + "' (timestamp column) is null");
        ok = false;
      }
    }
    if (!ok) {
      if (!o.skip_bad_rows) return;
      continue;
    }
    for (int64_t s = s0; s < s1; ++s) {
      const int64_t t = lists && has_ts ? ts.col->list_offsets[static_cast<size_t>(r)] + (s - s0) : s;
      piece->events.push_back(Event{u, intern(piece->items, item, s),
                                    has_ts ? ts.col->ints[static_cast<size_t>(t)] : 0});
    }
    ++piece->rows;
  }
}

/// Reads a Parquet interaction file: row groups decoded in parallel, merged in file order.
void ingest_parquet(const PrepareOptions& o, int threads, Ingest* in) {
  const parquet::File file = parquet::File::open(o.input);
  for (const std::string* name : {&o.user_col, &o.item_col, &o.time_col}) {
    if (name->empty()) continue;
    if (file.find_column(*name) < 0) {
      std::string got;
      for (const auto& c : file.columns()) got += (got.empty() ? "" : ", ") + c.path;
      const char* what = name == &o.user_col ? "prepare.user_col" : name == &o.item_col ? "prepare.item_col" : "prepare.time_col";
      throw DataError(o.input + ": expected a column named '" + *name + "' (" + what + "), got " + got);
    }
  }
  // Error locations: "file: row N" (1-based over the whole file), through the merger's line base.
  PieceMerger merger(in, o.input, o.skip_bad_rows, "row");
  const int groups = file.num_row_groups();
  std::vector<Piece> pieces;
  for (int g0 = 0; g0 < groups; g0 += threads) {
    const int n = std::min(threads, groups - g0);
    pieces.clear();
    pieces.resize(static_cast<size_t>(n));
    std::vector<std::vector<parquet::Column>> group_cols(static_cast<size_t>(n));
    parallel_tasks(n, threads, [&](int64_t t) {
      parquet_piece(file, o, g0 + static_cast<int>(t), &pieces[static_cast<size_t>(t)],
                    &group_cols[static_cast<size_t>(t)]);
    });
    for (auto& p : pieces) merger.merge(p);  // views into group_cols die after this
    merger.report_progress(0);
  }
  merger.warn_if_any();
}

const char* format_name(InputFormat f) {
  switch (f) {
    case InputFormat::kCsv: return "csv";
    case InputFormat::kParquet: return "parquet";
    case InputFormat::kMovieLensDat: return "movielens_dat";
    case InputFormat::kMovieLensCsv: return "movielens_csv";
    case InputFormat::kSasrecPairs: return "sasrec_pairs";
    case InputFormat::kUserSequences: return "user_sequences";
  }
  return "?";
}

const char* item_format_name(ItemFormat f) {
  switch (f) {
    case ItemFormat::kNone: return "none";
    case ItemFormat::kTable: return "table";
    case ItemFormat::kMovieLensDat: return "movielens_dat";
    case ItemFormat::kParquet: return "parquet";
  }
  return "?";
}

bool format_has_timestamps(const PrepareOptions& o) {
  switch (o.format) {
    case InputFormat::kCsv:
    case InputFormat::kParquet: return !o.time_col.empty();
    case InputFormat::kMovieLensDat:
    case InputFormat::kMovieLensCsv: return true;
    case InputFormat::kSasrecPairs:
    case InputFormat::kUserSequences: return false;
  }
  return false;
}

/// Parses the whole input (the spill file, if needed, goes to `spill_path`).
Ingest ingest(const PrepareOptions& o, size_t event_budget, const std::string& spill_path) {
  if (o.input.empty()) throw ConfigError("prepare.input", "expected a file path, got ''");
  Ingest in;
  in.log = std::make_unique<EventLog>(event_budget, spill_path);
  in.has_timestamps = format_has_timestamps(o);
  if (o.format == InputFormat::kParquet) {
    ingest_parquet(o, resolve_threads(o.threads), &in);
  } else {
    BlockReader reader(o.input);
    ingest_text(o, resolve_threads(o.threads), reader, &in);
  }
  return in;
}

// ---------------------------------------------------------------------------------------------
// Counting, filters and dense ids, in passes over the event log.

void check_filter_options(const PrepareOptions& o) {
  if (o.min_item_interactions < 0) {
    throw ConfigError("prepare.min_item_interactions",
                      "expected a count >= 0, got " + std::to_string(o.min_item_interactions));
  }
  if (o.min_user_interactions < 0) {
    throw ConfigError("prepare.min_user_interactions",
                      "expected a count >= 0, got " + std::to_string(o.min_user_interactions));
  }
  if (o.threads < 0) {
    throw ConfigError("prepare.threads", "expected 0 (all cores) or a count, got " +
                                             std::to_string(o.threads));
  }
  if (o.memory_limit_mb < 0) {
    throw ConfigError("prepare.memory_limit_mb", "expected 0 (no limit) or megabytes, got " +
                                                     std::to_string(o.memory_limit_mb));
  }
}

/// Per compact index counts of the kept events (keep empty = all).
struct Counts {
  std::vector<uint32_t> user;
  std::vector<uint32_t> item;
};

Counts count_events(const Ingest& in, const std::vector<uint8_t>& keep, int threads) {
  const size_t nu = in.users.index_size();
  const size_t ni = in.items.index_size();
  std::vector<Counts> part(static_cast<size_t>(threads));
  for (auto& c : part) {
    c.user.assign(nu, 0);
    c.item.assign(ni, 0);
  }
  in.log->for_each_block([&](const Event* ev, size_t n, size_t first) {
    parallel_tasks(threads, threads, [&](int64_t t) {
      Counts& c = part[static_cast<size_t>(t)];
      const size_t b = static_cast<size_t>(split_bound(static_cast<int64_t>(n), threads, t));
      const size_t e = static_cast<size_t>(split_bound(static_cast<int64_t>(n), threads, t + 1));
      for (size_t k = b; k < e; ++k) {
        if (!keep.empty() && !keep[first + k]) continue;
        ++c.user[in.users.index(ev[k].user)];
        ++c.item[in.items.index(ev[k].item)];
      }
    });
  });
  for (size_t t = 1; t < part.size(); ++t) {
    for (size_t i = 0; i < nu; ++i) part[0].user[i] += part[t].user[i];
    for (size_t i = 0; i < ni; ++i) part[0].item[i] += part[t].item[i];
  }
  return std::move(part[0]);
}

/// Drops the events whose user (or item) count is below `min`; returns whether any was dropped.
bool drop_below(const Ingest& in, const std::vector<uint32_t>& count, bool by_user, int64_t min,
                std::vector<uint8_t>* keep, int threads) {
  std::atomic<bool> changed{false};
  in.log->for_each_block([&](const Event* ev, size_t n, size_t first) {
    parallel_tasks(threads, threads, [&](int64_t t) {
      const size_t b = static_cast<size_t>(split_bound(static_cast<int64_t>(n), threads, t));
      const size_t e = static_cast<size_t>(split_bound(static_cast<int64_t>(n), threads, t + 1));
      bool any = false;
      for (size_t k = b; k < e; ++k) {
        uint8_t& kk = (*keep)[first + k];
        if (!kk) continue;
        const size_t idx = by_user ? in.users.index(ev[k].user) : in.items.index(ev[k].item);
        if (count[idx] < static_cast<uint64_t>(min)) {
          kk = 0;
          any = true;
        }
      }
      if (any) changed = true;
    });
  });
  return changed;
}

/// Item filter on the raw counts, then the user filter; with kcore, repeat until nothing changes.
/// Returns the keep mask (empty when no filter is set) and the final counts.
std::vector<uint8_t> apply_filters(const Ingest& in, const PrepareOptions& o, int threads,
                                   Counts* counts) {
  std::vector<uint8_t> keep;
  *counts = count_events(in, keep, threads);
  if (o.min_item_interactions <= 0 && o.min_user_interactions <= 0) return keep;
  keep.assign(in.log->size(), 1);
  int passes = 0;
  bool fresh = true;  // counts match keep
  while (true) {
    ++passes;
    bool changed = false;
    if (o.min_item_interactions > 0) {
      if (!fresh) *counts = count_events(in, keep, threads);
      const bool c = drop_below(in, counts->item, false, o.min_item_interactions, &keep, threads);
      fresh = !c;
      changed = changed || c;
    }
    if (o.min_user_interactions > 0) {
      if (!fresh) *counts = count_events(in, keep, threads);
      const bool c = drop_below(in, counts->user, true, o.min_user_interactions, &keep, threads);
      fresh = !c;
      changed = changed || c;
    }
    if (!o.kcore || !changed) break;
  }
  if (!fresh) *counts = count_events(in, keep, threads);
  if (o.kcore) log_info("k-core filter converged after %d passes", passes);
  return keep;
}

/// Dense order of the ids with a kept event: increasing numeric value (ties by text) when every
/// raw id is an integer, else first appearance among the kept events.
std::vector<uint32_t> dense_order(const Ingest& in, const IdTable& table,
                                  const std::vector<uint32_t>& count,
                                  const std::vector<uint8_t>& keep, bool users) {
  std::vector<uint32_t> order;
  if (table.all_integers()) {
    for (size_t i = 0; i < count.size(); ++i) {
      if (count[i] > 0) order.push_back(static_cast<uint32_t>(i));
    }
    if (table.num_strings() > 0) {
      std::stable_sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) {
        const int64_t va = table.value(a), vb = table.value(b);
        if (va != vb) return va < vb;
        return table.name(a) < table.name(b);
      });
    }
    return order;
  }
  std::vector<uint8_t> seen(count.size(), 0);
  in.log->for_each_block([&](const Event* ev, size_t n, size_t first) {
    for (size_t k = 0; k < n; ++k) {
      if (!keep.empty() && !keep[first + k]) continue;
      const size_t idx = users ? table.index(ev[k].user) : table.index(ev[k].item);
      if (!seen[idx]) {
        seen[idx] = 1;
        order.push_back(static_cast<uint32_t>(idx));
      }
    }
  });
  return order;
}

/// Writes the CSR store: events placed by dense user in buckets of users whose events fit
/// `bucket_events`, each user's events stably sorted by time, streamed to the file in order.
void write_csr(const Ingest& in, const std::vector<uint8_t>& keep,
               const std::vector<int32_t>& dense_user, const std::vector<int32_t>& dense_item,
               const std::vector<uint64_t>& offsets, int64_t num_items, size_t bucket_events,
               int threads, const std::string& path) {
  const size_t num_users = offsets.size() - 1;
  const uint64_t num_events = offsets[num_users];
  const bool ts = in.has_timestamps;
  StoreWriter writer(path, num_users, static_cast<uint64_t>(num_items), num_events, ts);
  writer.write_offsets(offsets.data());
  std::vector<int32_t> items;
  std::vector<int64_t> times;
  size_t ub = 0;
  int buckets = 0;
  double t_place = 0, t_sort = 0, t_write = 0;
  auto now = [] { return std::chrono::steady_clock::now(); };
  auto secs = [](auto a, auto b) { return std::chrono::duration<double>(b - a).count(); };
  while (ub < num_users) {
    const auto t0 = now();
    size_t ue = ub + 1;
    while (ue < num_users && offsets[ue + 1] - offsets[ub] <= bucket_events) ++ue;
    const uint64_t base = offsets[ub];
    const size_t n = static_cast<size_t>(offsets[ue] - base);
    items.resize(n);
    if (ts) times.resize(n);
    std::vector<uint64_t> fill(offsets.begin() + static_cast<std::ptrdiff_t>(ub),
                               offsets.begin() + static_cast<std::ptrdiff_t>(ue));
    in.log->for_each_block([&](const Event* ev, size_t cnt, size_t first) {
      for (size_t k = 0; k < cnt; ++k) {
        if (!keep.empty() && !keep[first + k]) continue;
        const int32_t du = dense_user[in.users.index(ev[k].user)];
        if (du < static_cast<int32_t>(ub) || du >= static_cast<int32_t>(ue)) continue;
        const size_t pos = static_cast<size_t>(fill[static_cast<size_t>(du) - ub]++ - base);
        items[pos] = dense_item[in.items.index(ev[k].item)];
        if (ts) times[pos] = ev[k].timestamp;
      }
    });
    const auto t1 = now();
    t_place += secs(t0, t1);
    if (ts) {
      // Stable sort by time inside each user: equal timestamps keep file order.
      const int64_t tasks = std::min<int64_t>(static_cast<int64_t>(ue - ub), threads * 8);
      parallel_tasks(tasks, threads, [&](int64_t t) {
        const size_t a = ub + static_cast<size_t>(split_bound(static_cast<int64_t>(ue - ub), tasks, t));
        const size_t b = ub + static_cast<size_t>(split_bound(static_cast<int64_t>(ue - ub), tasks, t + 1));
        std::vector<std::pair<int64_t, int32_t>> tmp;
        for (size_t u = a; u < b; ++u) {
          const size_t s = static_cast<size_t>(offsets[u] - base);
          const size_t e = static_cast<size_t>(offsets[u + 1] - base);
          if (std::is_sorted(times.begin() + static_cast<std::ptrdiff_t>(s),
                             times.begin() + static_cast<std::ptrdiff_t>(e))) {
            continue;
          }
          tmp.clear();
          for (size_t k = s; k < e; ++k) tmp.emplace_back(times[k], items[k]);
          std::stable_sort(tmp.begin(), tmp.end(),
                           [](const auto& x, const auto& y) { return x.first < y.first; });
          for (size_t k = s; k < e; ++k) {
            times[k] = tmp[k - s].first;
            items[k] = tmp[k - s].second;
          }
        }
      });
    }
    const auto t2 = now();
    t_sort += secs(t1, t2);
    writer.write_events(items.data(), ts ? times.data() : nullptr, n);
    t_write += secs(t2, now());
    ++buckets;
    ub = ue;
  }
  const auto t3 = now();
  writer.commit();
  t_write += secs(t3, now());
  log_info("prepare: store: placing %.2f s, sorting %.2f s, writing %.2f s, %d user bucket%s", t_place,
           t_sort, t_write, buckets, buckets > 1 ? "s" : "");
}

// ---------------------------------------------------------------------------------------------
// Item side tables.

/// Whether `s` is valid UTF-8 (common/utf8.h) and contains at least one multi-byte sequence.
bool looks_like_utf8(const std::string& s) {
  const bool multibyte = std::any_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) >= 0x80; });
  return multibyte && is_valid_utf8(s);
}

std::string latin1_to_utf8(const std::string& s) {
  std::string out;
  out.reserve(s.size() + s.size() / 16);
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c < 0x80) {
      out += ch;
    } else {
      out += static_cast<char>(0xC0 | (c >> 6));
      out += static_cast<char>(0x80 | (c & 0x3F));
    }
  }
  return out;
}

struct ItemTable {
  std::vector<std::string> columns;
  std::vector<std::vector<std::string>> fields;  // [V+1]; empty vector = no row for the item
  int64_t matched = 0;
  int64_t skipped = 0;
};

/// Reads the item side table and keeps the rows of items that `dense_of_raw` (raw id -> 1..V,
/// 0 = not an item of the interactions) knows.
template <typename Lookup>
ItemTable read_item_table(const PrepareOptions& o, const Lookup& dense_of_raw, int64_t num_items) {
  ItemTable table;
  table.fields.resize(static_cast<size_t>(num_items) + 1);
  const std::string& path = o.items;
  std::string buf = o.items_format == ItemFormat::kParquet ? std::string() : read_file(path);
  RowErrors errors(o.skip_bad_rows, path);
  int64_t duplicates = 0;
  auto store_row = [&](std::string_view raw, std::vector<std::string> values) {
    const int32_t dense = dense_of_raw(raw);
    if (dense <= 0) return;  // item not in the interactions
    auto& slot = table.fields[static_cast<size_t>(dense)];
    if (!slot.empty()) {
      ++duplicates;  // the first row wins
      return;
    }
    slot = std::move(values);
    ++table.matched;
  };
  std::string_view line;
  std::vector<std::string_view> f;

  if (o.items_format == ItemFormat::kParquet) {
    // The id column (integer or string) and every other flat column, as text.
    const parquet::File file = parquet::File::open(path);
    if (file.find_column(o.item_id_col) < 0) {
      throw DataError(path + ": expected a column named '" + o.item_id_col + "' (prepare.item_id_col)");
    }
    std::vector<std::string> keep;
    for (const auto& c : file.columns()) {
      if (c.path == o.item_id_col || c.name == o.item_id_col) continue;
      if (c.is_list || !c.unsupported.empty()) {
        log_warn("%s: item column '%s' skipped (%s)", path.c_str(), c.path.c_str(),
                 c.is_list ? "a list" : c.unsupported.c_str());
        continue;
      }
      keep.push_back(c.path);
      table.columns.push_back(sanitize(c.path));
    }
    int64_t row = 0;
    for (int g = 0; g < file.num_row_groups(); ++g) {
      const parquet::Column ids = file.read(g, o.item_id_col);
      std::vector<parquet::Column> cols;
      for (const auto& k : keep) cols.push_back(file.read(g, k));
      for (int64_t r = 0; r < ids.num_rows; ++r) {
        ++row;
        const std::string id = parquet::format_slot(ids, r);
        if (id.empty()) {
          errors.bad(path + ": row " + std::to_string(row) + ": expected a non-empty item id, got null or ''");
          continue;
        }
        if (dense_of_raw(id) <= 0) continue;
        std::vector<std::string> values;
        values.reserve(cols.size());
        for (const auto& c : cols) values.push_back(sanitize(parquet::format_slot(c, r)));
        store_row(id, std::move(values));
      }
    }
  } else if (o.items_format == ItemFormat::kMovieLensDat) {
    if (!looks_like_utf8(buf)) buf = latin1_to_utf8(buf);
    table.columns = {"title", "genres"};
    LineReader dat_lines(buf, true);
    while (dat_lines.next(&line)) {
      if (is_blank(line)) continue;
      // Split at the first and last "::" so a title containing "::" survives.
      const size_t a = line.find("::");
      const size_t b = line.rfind("::");
      if (a == std::string_view::npos || a == b) {
        const size_t got = a == std::string_view::npos ? 1 : 2;
        errors.bad(loc(path, dat_lines.line_no()) + ": " + expected_fields(3, got) +
                   " (MovieID::Title::Genres)");
        continue;
      }
      const std::string_view id = trim(line.substr(0, a));
      if (id.empty()) {
        errors.bad(loc(path, dat_lines.line_no()) + ": expected a non-empty movie id, got ''");
        continue;
      }
      store_row(id, {sanitize(line.substr(a + 2, b - a - 2)), sanitize(line.substr(b + 2))});
    }
  } else {
    const std::string sep = normalize_sep(o.items_sep, "prepare.items_sep");
    FieldSplitter splitter(sep, sep.size() == 1 && sep != "\t");
    LineReader lines(buf, true);
    if (!lines.next(&line)) throw DataError(path + ": empty file: expected a header line");
    splitter.split(line, &f);
    std::vector<std::string> header;
    for (auto h : f) header.emplace_back(trim(h));
    const size_t idc = find_column(header, o.item_id_col, "item id column", path, sep);
    for (size_t c = 0; c < header.size(); ++c) {
      if (c != idc) table.columns.push_back(sanitize(header[c]));
    }
    while (lines.next(&line)) {
      if (is_blank(line)) continue;
      splitter.split(line, &f);
      if (f.size() != header.size()) {
        errors.bad(loc(path, lines.line_no()) + ": " + expected_fields(header.size(), f.size()));
        continue;
      }
      const std::string_view id = trim(f[idc]);
      if (id.empty()) {
        errors.bad(loc(path, lines.line_no()) + ": expected a non-empty item id, got ''");
        continue;
      }
      if (dense_of_raw(id) <= 0) continue;
      std::vector<std::string> values;
      values.reserve(header.size() - 1);
      for (size_t c = 0; c < f.size(); ++c) {
        if (c != idc) values.push_back(sanitize(f[c]));
      }
      store_row(id, std::move(values));
    }
  }
  errors.warn_if_any();
  if (duplicates > 0) {
    log_warn("%s: %lld duplicate item rows ignored (the first row of an id is kept)",
             path.c_str(), static_cast<long long>(duplicates));
  }
  table.skipped = errors.skipped();
  return table;
}

// ---------------------------------------------------------------------------------------------
// Output directory handling.

std::string strip_trailing_slashes(std::string p) {
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  return p;
}

/// The kind of folder prepare writes, in its ownership marker.
constexpr const char* kPreparedKind = "prepared-store";


/// An id as it goes into users.tsv / items.tsv. Ids with a tab or a line break are refused: written
/// as they are they would break the line, and replaced by a space two ids could read back the same.
std::string_view tsv_id(std::string_view id, const char* what, const std::string& input) {
  if (id.find_first_of("\t\n\r") != std::string_view::npos) {
    std::string shown;
    for (char c : id.substr(0, 60)) shown += c == '\t' ? "\\t" : c == '\n' ? "\\n" : c == '\r' ? "\\r" : std::string(1, c);
    throw DataError(input + ": " + what + " id '" + shown + "' contains a tab or a line break, which the id tables "
                    "(tab-separated, one id a line) cannot hold; remove them from the ids");
  }
  return id;
}

std::string users_tsv(const std::vector<uint32_t>& order, const IdTable& users, const std::string& input) {
  std::string out;
  out.reserve(order.size() * 16);
  for (size_t k = 0; k < order.size(); ++k) {
    out += std::to_string(k);
    out += '\t';
    out += tsv_id(users.name(order[k]), "user", input);
    out += '\n';
  }
  return out;
}

std::string items_tsv(const std::vector<uint32_t>& order, const IdTable& items,
                      const ItemTable* table, const std::string& input) {
  std::string out = "item_id\traw_id";
  if (table) {
    for (const auto& c : table->columns) out += "\t" + c;
  }
  out += '\n';
  for (size_t k = 0; k < order.size(); ++k) {
    out += std::to_string(k + 1);
    out += '\t';
    out += tsv_id(items.name(order[k]), "item", input);
    if (table) {
      const auto& row = table->fields[k + 1];
      for (size_t c = 0; c < table->columns.size(); ++c) {
        out += '\t';
        if (c < row.size()) out += row[c];
      }
    }
    out += '\n';
  }
  return out;
}

std::string meta_json(const PrepareOptions& o, const PrepareReport& r) {
  nlohmann::ordered_json j;
  j["format_version"] = 1;
  j["num_users"] = r.num_users;
  j["num_items"] = r.num_items;
  j["num_events"] = r.num_events;
  j["has_timestamps"] = r.has_timestamps;
  j["rows_read"] = r.rows_read;
  j["rows_skipped"] = r.rows_skipped;
  j["items_with_text"] = r.items_with_text;
  nlohmann::ordered_json opts;
  opts["input"] = o.input;
  opts["format"] = format_name(o.format);
  if (o.format == InputFormat::kCsv || o.format == InputFormat::kParquet) {
    if (o.format == InputFormat::kCsv) opts["sep"] = o.sep;
    opts["user_col"] = o.user_col;
    opts["item_col"] = o.item_col;
    opts["time_col"] = o.time_col;
  }
  opts["items"] = o.items;
  opts["items_format"] = item_format_name(o.items_format);
  if (o.items_format == ItemFormat::kTable) {
    opts["items_sep"] = o.items_sep;
    opts["item_id_col"] = o.item_id_col;
  }
  opts["min_user_interactions"] = o.min_user_interactions;
  opts["min_item_interactions"] = o.min_item_interactions;
  opts["kcore"] = o.kcore;
  opts["skip_bad_rows"] = o.skip_bad_rows;
  j["options"] = opts;
  // Paths need not be UTF-8 (JSON text must be): such bytes are written as U+FFFD.
  return j.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n";
}

}  // namespace

InputFormat parse_input_format(const std::string& name, const std::string& path) {
  if (name == "csv") return InputFormat::kCsv;
  if (name == "parquet") return InputFormat::kParquet;
  if (name == "movielens_dat") return InputFormat::kMovieLensDat;
  if (name == "movielens_csv") return InputFormat::kMovieLensCsv;
  if (name == "sasrec_pairs") return InputFormat::kSasrecPairs;
  if (name == "user_sequences") return InputFormat::kUserSequences;
  throw ConfigError(path,
                    "expected one of csv, parquet, movielens_dat, movielens_csv, sasrec_pairs, "
                    "user_sequences, got '" + name + "'");
}

ItemFormat parse_item_format(const std::string& name, const std::string& path) {
  if (name == "none") return ItemFormat::kNone;
  if (name == "table") return ItemFormat::kTable;
  if (name == "movielens_dat") return ItemFormat::kMovieLensDat;
  if (name == "parquet") return ItemFormat::kParquet;
  throw ConfigError(path, "expected one of none, table, movielens_dat, parquet, got '" + name + "'");
}

namespace {

/// The events of an ingest as raw strings (tests only: small inputs).
std::vector<RawEvent> raw_events(const Ingest& in, const std::vector<uint8_t>& keep) {
  std::vector<RawEvent> out;
  in.log->for_each_block([&](const Event* ev, size_t n, size_t first) {
    for (size_t k = 0; k < n; ++k) {
      if (!keep.empty() && !keep[first + k]) continue;
      out.push_back(RawEvent{in.users.name(in.users.index(ev[k].user)),
                             in.items.name(in.items.index(ev[k].item)), ev[k].timestamp,
                             static_cast<int64_t>(first + k)});
    }
  });
  return out;
}

}  // namespace

std::vector<RawEvent> read_events(const PrepareOptions& options, PrepareReport* report) {
  const Ingest in = ingest(options, 0, "");
  if (report != nullptr) {
    report->rows_read = in.rows;
    report->rows_skipped = in.skipped;
    report->has_timestamps = in.has_timestamps;
  }
  return raw_events(in, {});
}

std::vector<RawEvent> parse_events(std::string_view text, const PrepareOptions& options, PrepareReport* report) {
  if (options.format == InputFormat::kParquet) {
    throw ConfigError("prepare.format", "parse_events reads text formats only, got parquet");
  }
  Ingest in;
  in.log = std::make_unique<EventLog>(0, "");
  in.has_timestamps = format_has_timestamps(options);
  TextBlockReader reader(text);
  ingest_text(options, resolve_threads(options.threads), reader, &in);
  if (report != nullptr) {
    report->rows_read = in.rows;
    report->rows_skipped = in.skipped;
    report->has_timestamps = in.has_timestamps;
  }
  return raw_events(in, {});
}

std::vector<RawEvent> filter_events(std::vector<RawEvent> events, const PrepareOptions& options) {
  check_filter_options(options);
  Ingest in;
  in.log = std::make_unique<EventLog>(0, "");
  Piece p;
  for (const RawEvent& e : events) {
    p.events.push_back(Event{p.users.intern(e.user), p.items.intern(e.item), e.timestamp});
  }
  const std::string where = "events";
  PieceMerger(&in, where, false).merge(p);
  Counts counts;
  const std::vector<uint8_t> keep = apply_filters(in, options, 1, &counts);
  std::vector<RawEvent> out;
  for (size_t e = 0; e < events.size(); ++e) {
    if (keep.empty() || keep[e]) out.push_back(std::move(events[e]));
  }
  return out;
}

PrepareReport prepare(const PrepareOptions& options) {
  PrepareOptions o = options;
  if (o.output.empty()) throw ConfigError("prepare.output", "expected a directory path, got ''");
  o.output = strip_trailing_slashes(o.output);
  check_filter_options(o);
  if (o.items_format == ItemFormat::kNone && !o.items.empty()) {
    // An item file without a format would otherwise be ignored silently.
    auto ends_with = [&](const char* ext) {
      const size_t n = std::strlen(ext);
      return o.items.size() >= n && o.items.compare(o.items.size() - n, n, ext) == 0;
    };
    o.items_format = ends_with(".dat")       ? ItemFormat::kMovieLensDat
                     : ends_with(".parquet") ? ItemFormat::kParquet
                                             : ItemFormat::kTable;
    log_info("prepare.items_format not set: reading %s as %s", o.items.c_str(),
             item_format_name(o.items_format));
  }
  if (o.items_format != ItemFormat::kNone && o.items.empty()) {
    throw ConfigError("prepare.items", std::string("expected an item table path for items_format ") +
                                           item_format_name(o.items_format) + ", got ''");
  }
  // Only a folder prepare wrote is replaced (so "." or $HOME, or a store with a user's notes added,
  // are kept).
  require_replaceable(o.output, kPreparedKind, "prepare.output", "prepare output");
  const int threads = resolve_threads(o.threads);
  // Memory cap: parsed events stay in RAM up to a third of it (then spill to disk), and the CSR
  // is built in user buckets of at most a third of it (12 bytes per event).
  const size_t cap = static_cast<size_t>(o.memory_limit_mb) << 20;
  const size_t event_budget = cap / 3;
  const size_t bucket_events = cap == 0 ? SIZE_MAX : std::max<size_t>(cap / 3 / 12, 1);

  // Everything is written under a temp dir next to the output, then swapped in.
  PrepareReport report;
  const auto t0 = std::chrono::steady_clock::now();
  auto seconds_since = [](std::chrono::steady_clock::time_point t) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
  };
  double t_parse = 0, t_ids = 0, t_store = 0;
  bool spilled = false;
  try {
    write_owned_dir(o.output, kPreparedKind, [&](const std::string& tmp) {
      std::error_code ec;
      const Ingest in = ingest(o, event_budget, tmp + "/events.spill");
      report.rows_read = in.rows;
      report.rows_skipped = in.skipped;
      report.has_timestamps = in.has_timestamps;
      t_parse = seconds_since(t0);
      if (in.log->size() == 0) {
        throw DataError(o.input + ": no interactions read: expected at least 1 valid row, got 0");
      }
      const auto t1 = std::chrono::steady_clock::now();
      Counts counts;
      const std::vector<uint8_t> keep = apply_filters(in, o, threads, &counts);
      const std::vector<uint32_t> user_order = dense_order(in, in.users, counts.user, keep, true);
      const std::vector<uint32_t> item_order = dense_order(in, in.items, counts.item, keep, false);
      if (user_order.empty()) {
        throw DataError(o.input + ": no interactions left after filtering (min_item_interactions=" +
                        std::to_string(o.min_item_interactions) + ", min_user_interactions=" +
                        std::to_string(o.min_user_interactions) +
                        ", kcore=" + (o.kcore ? "true" : "false") + "): expected at least 1, got 0");
      }
      if (item_order.size() >= static_cast<size_t>(INT32_MAX) ||
          user_order.size() >= static_cast<size_t>(INT32_MAX)) {
        throw DataError(o.input + ": expected fewer than 2^31 users and items, got " +
                        std::to_string(user_order.size()) + " users and " +
                        std::to_string(item_order.size()) + " items");
      }
      std::vector<int32_t> dense_user(in.users.index_size(), -1);
      std::vector<int32_t> dense_item(in.items.index_size(), 0);
      for (size_t k = 0; k < user_order.size(); ++k) dense_user[user_order[k]] = static_cast<int32_t>(k);
      for (size_t k = 0; k < item_order.size(); ++k) dense_item[item_order[k]] = static_cast<int32_t>(k + 1);
      std::vector<uint64_t> offsets(user_order.size() + 1, 0);
      for (size_t k = 0; k < user_order.size(); ++k) offsets[k + 1] = offsets[k] + counts.user[user_order[k]];
      report.num_users = static_cast<int64_t>(user_order.size());
      report.num_items = static_cast<int64_t>(item_order.size());
      report.num_events = static_cast<int64_t>(offsets.back());
      t_ids = seconds_since(t1);

      const auto t2 = std::chrono::steady_clock::now();
      write_csr(in, keep, dense_user, dense_item, offsets, report.num_items, bucket_events, threads,
                tmp + "/interactions.bin");
      t_store = seconds_since(t2);

      // Item table.
      ItemTable table;
      const bool with_table = o.items_format != ItemFormat::kNone;
      if (with_table) {
        table = read_item_table(o, [&](std::string_view raw) -> int32_t {
          const int64_t idx = in.items.find(raw);
          return idx < 0 ? 0 : dense_item[static_cast<size_t>(idx)];
        }, report.num_items);
        report.items_with_text = table.matched;
        report.rows_skipped += table.skipped;
        if (table.matched < report.num_items) {
          log_warn("%s: %lld of %lld items have no row in the item table", o.items.c_str(),
                   static_cast<long long>(report.num_items - table.matched),
                   static_cast<long long>(report.num_items));
        }
      }
      write_file_atomic(tmp + "/users.tsv", users_tsv(user_order, in.users, o.input));
      write_file_atomic(tmp + "/items.tsv", items_tsv(item_order, in.items, with_table ? &table : nullptr, o.input));
      write_file_atomic(tmp + "/meta.json", meta_json(o, report));
      fs::remove(tmp + "/events.spill", ec);
      spilled = in.log->spilled();
      if (o.finish) o.finish(tmp);
    });
  } catch (const fs::filesystem_error& err) {
    throw DataError("cannot write " + o.output + ": " + err.what());
  }
  const double total = seconds_since(t0);
  log_info("prepare: %.2f s (parse %.2f s, filters + ids %.2f s, store %.2f s): %.2fM rows/s, "
           "%d threads%s",
           total, t_parse, t_ids, t_store, report.rows_read / total / 1e6, threads,
           spilled ? ", events spilled to disk" : "");
  log_info("prepared %s: %lld users, %lld items, %lld events%s -> %s", o.input.c_str(),
           static_cast<long long>(report.num_users), static_cast<long long>(report.num_items),
           static_cast<long long>(report.num_events),
           report.has_timestamps ? "" : " (no timestamps)", o.output.c_str());
  return report;
}

}  // namespace seqrec::data
