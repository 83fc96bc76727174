// prepare: raw interaction files -> filters -> dense ids -> InteractionStore + id maps + item table.
#include "seqrec/data/prepare.h"

#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <deque>
#include <filesystem>
#include <numeric>
#include <string_view>
#include <unordered_map>
#include <utility>

#include <nlohmann/json.hpp>

#include "seqrec/common/error.h"
#include "seqrec/common/fs.h"
#include "seqrec/common/log.h"
#include "seqrec/data/interaction_store.h"

namespace seqrec::data {
namespace {

namespace fs = std::filesystem;

// ---------------------------------------------------------------------------------------------
// Small text helpers (string_view based so that parsing a million rows allocates little).

/// Iterates the lines of a buffer; strips a UTF-8 BOM at the start and '\r' at line ends.
class LineReader {
 public:
  explicit LineReader(const std::string& buf) : buf_(buf) {
    if (buf_.size() >= 3 && std::memcmp(buf_.data(), "\xEF\xBB\xBF", 3) == 0) pos_ = 3;
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

 private:
  const std::string& buf_;
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
    scratch_.clear();
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

bool parse_int(std::string_view s, int64_t* value) {
  if (s.empty()) return false;
  const char* b = s.data();
  const char* e = s.data() + s.size();
  if (*b == '+') ++b;  // from_chars rejects '+'
  if (b == e) return false;
  auto [p, ec] = std::from_chars(b, e, *value);
  return ec == std::errc() && p == e;
}

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

// ---------------------------------------------------------------------------------------------
// Interaction readers. Each appends events in file order and returns the number of data rows.

struct ReadState {
  std::vector<RawEvent>* events;
  RowErrors* errors;
  int64_t rows = 0;
};

void add_event(ReadState* st, std::string_view user, std::string_view item, int64_t ts) {
  const int64_t order = static_cast<int64_t>(st->events->size());
  RawEvent& e = st->events->emplace_back();
  e.user.assign(user.data(), user.size());
  e.item.assign(item.data(), item.size());
  e.timestamp = ts;
  e.order = order;
}

/// Checks ids of one row; returns false (after reporting) when one is empty.
bool check_ids(ReadState* st, const std::string& path, int64_t line, std::string_view user,
               std::string_view item) {
  if (user.empty()) {
    st->errors->bad(loc(path, line) + ": expected a non-empty user id, got ''");
    return false;
  }
  if (item.empty()) {
    st->errors->bad(loc(path, line) + ": expected a non-empty item id, got ''");
    return false;
  }
  return true;
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

void read_csv(const std::string& path, const std::string& buf, const std::string& sep_in,
              const std::string& user_col, const std::string& item_col,
              const std::string& time_col, ReadState* st) {
  const std::string sep = normalize_sep(sep_in, "prepare.sep");
  FieldSplitter splitter(sep, sep.size() == 1 && sep != "\t");
  LineReader lines(buf);
  std::string_view line;
  std::vector<std::string_view> f;
  if (!lines.next(&line)) throw DataError(path + ": empty file: expected a header line");
  splitter.split(line, &f);
  std::vector<std::string> header;
  for (auto h : f) header.emplace_back(trim(h));
  const size_t uc = find_column(header, user_col, "user column", path, sep);
  const size_t ic = find_column(header, item_col, "item column", path, sep);
  const bool has_ts = !time_col.empty();
  const size_t tc = has_ts ? find_column(header, time_col, "timestamp column", path, sep) : 0;
  const size_t nf = header.size();
  while (lines.next(&line)) {
    if (is_blank(line)) continue;
    splitter.split(line, &f);
    if (f.size() != nf) {
      st->errors->bad(loc(path, lines.line_no()) + ": " + expected_fields(nf, f.size()));
      continue;
    }
    const std::string_view user = trim(f[uc]);
    const std::string_view item = trim(f[ic]);
    if (!check_ids(st, path, lines.line_no(), user, item)) continue;
    int64_t ts = 0;
    if (has_ts && !parse_int(trim(f[tc]), &ts)) {
      st->errors->bad(loc(path, lines.line_no()) + ": expected integer timestamp, got " + quote(trim(f[tc])));
      continue;
    }
    add_event(st, user, item, ts);
    ++st->rows;
  }
}

void read_movielens_dat(const std::string& path, const std::string& buf, ReadState* st) {
  FieldSplitter splitter("::", false);
  LineReader lines(buf);
  std::string_view line;
  std::vector<std::string_view> f;
  while (lines.next(&line)) {
    if (is_blank(line)) continue;
    splitter.split(line, &f);
    if (f.size() != 4) {
      st->errors->bad(loc(path, lines.line_no()) + ": " + expected_fields(4, f.size()) +
                      " (user::item::rating::timestamp)");
      continue;
    }
    const std::string_view user = trim(f[0]);
    const std::string_view item = trim(f[1]);
    if (!check_ids(st, path, lines.line_no(), user, item)) continue;
    int64_t ts = 0;
    if (!parse_int(trim(f[3]), &ts)) {
      st->errors->bad(loc(path, lines.line_no()) + ": expected integer timestamp, got " +
                      quote(trim(f[3])));
      continue;
    }
    add_event(st, user, item, ts);
    ++st->rows;
  }
}

void read_sasrec_pairs(const std::string& path, const std::string& buf, ReadState* st) {
  LineReader lines(buf);
  std::string_view line;
  std::vector<std::string_view> f;
  while (lines.next(&line)) {
    if (is_blank(line)) continue;
    split_ws(line, &f);
    if (f.size() != 2) {
      st->errors->bad(loc(path, lines.line_no()) + ": " + expected_fields(2, f.size()) +
                      " (user item)");
      continue;
    }
    add_event(st, f[0], f[1], 0);
    ++st->rows;
  }
}

void read_user_sequences(const std::string& path, const std::string& buf, ReadState* st) {
  LineReader lines(buf);
  std::string_view line;
  std::vector<std::string_view> f;
  bool first = true;
  while (lines.next(&line)) {
    if (is_blank(line)) continue;
    split_ws(line, &f);
    if (first) {
      first = false;
      // A header is recognised by its second field (e.g. "movie_ids_in_time_order").
      const bool header = f.size() >= 2 ? !is_int(f[1]) : (f.size() == 1 && !is_int(f[0]));
      if (header) continue;
    }
    if (f.size() < 2) {
      st->errors->bad(loc(path, lines.line_no()) + ": expected at least 2 fields (user item...), got " +
                      std::to_string(f.size()));
      continue;
    }
    for (size_t k = 1; k < f.size(); ++k) add_event(st, f[0], f[k], 0);
    ++st->rows;
  }
}

const char* format_name(InputFormat f) {
  switch (f) {
    case InputFormat::kCsv: return "csv";
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
  }
  return "?";
}

bool format_has_timestamps(const PrepareOptions& o) {
  switch (o.format) {
    case InputFormat::kCsv: return !o.time_col.empty();
    case InputFormat::kMovieLensDat:
    case InputFormat::kMovieLensCsv: return true;
    case InputFormat::kSasrecPairs:
    case InputFormat::kUserSequences: return false;
  }
  return false;
}

// ---------------------------------------------------------------------------------------------
// Filtering on interned ids (hashing strings once per event, not once per pass).

struct Interned {
  std::vector<int32_t> user;                // per event
  std::vector<int32_t> item;                // per event
  std::vector<std::string_view> user_names; // by interned id (first appearance)
  std::vector<std::string_view> item_names;
};

/// Views point into `events`, which must outlive the result and not be modified.
Interned intern(const std::vector<RawEvent>& events) {
  Interned in;
  in.user.resize(events.size());
  in.item.resize(events.size());
  std::unordered_map<std::string_view, int32_t> users;
  std::unordered_map<std::string_view, int32_t> items;
  users.reserve(1024);
  items.reserve(1024);
  // Consecutive rows often share the user: remember the last lookup.
  std::string_view last_user;
  int32_t last_uid = -1;
  for (size_t e = 0; e < events.size(); ++e) {
    const std::string_view u = events[e].user;
    if (last_uid < 0 || u != last_user) {
      auto [it, added] = users.try_emplace(u, static_cast<int32_t>(in.user_names.size()));
      if (added) in.user_names.push_back(u);
      last_user = u;
      last_uid = it->second;
    }
    in.user[e] = last_uid;
    const std::string_view i = events[e].item;
    auto [it, added] = items.try_emplace(i, static_cast<int32_t>(in.item_names.size()));
    if (added) in.item_names.push_back(i);
    in.item[e] = it->second;
  }
  return in;
}

/// Item filter on the raw counts, then the user filter; with kcore, repeat until nothing changes.
std::vector<uint8_t> compute_keep(const Interned& in, const PrepareOptions& o) {
  const size_t n = in.user.size();
  std::vector<uint8_t> keep(n, 1);
  if (o.min_item_interactions <= 0 && o.min_user_interactions <= 0) return keep;
  std::vector<int64_t> item_count(in.item_names.size());
  std::vector<int64_t> user_count(in.user_names.size());
  int passes = 0;
  while (true) {
    ++passes;
    bool changed = false;
    if (o.min_item_interactions > 0) {
      std::fill(item_count.begin(), item_count.end(), 0);
      for (size_t e = 0; e < n; ++e) item_count[in.item[e]] += keep[e];
      for (size_t e = 0; e < n; ++e) {
        if (keep[e] && item_count[in.item[e]] < o.min_item_interactions) {
          keep[e] = 0;
          changed = true;
        }
      }
    }
    if (o.min_user_interactions > 0) {
      std::fill(user_count.begin(), user_count.end(), 0);
      for (size_t e = 0; e < n; ++e) user_count[in.user[e]] += keep[e];
      for (size_t e = 0; e < n; ++e) {
        if (keep[e] && user_count[in.user[e]] < o.min_user_interactions) {
          keep[e] = 0;
          changed = true;
        }
      }
    }
    if (!o.kcore || !changed) break;
  }
  if (o.kcore) log_info("k-core filter converged after %d passes", passes);
  return keep;
}

void check_filter_options(const PrepareOptions& o) {
  if (o.min_item_interactions < 0) {
    throw ConfigError("prepare.min_item_interactions",
                      "expected a count >= 0, got " + std::to_string(o.min_item_interactions));
  }
  if (o.min_user_interactions < 0) {
    throw ConfigError("prepare.min_user_interactions",
                      "expected a count >= 0, got " + std::to_string(o.min_user_interactions));
  }
}

/// Dense order of the interned ids present in `kept` (event indices): first appearance, or
/// increasing numeric value when every raw id is an integer.
std::vector<int32_t> dense_order(const std::vector<int32_t>& ids_per_event,
                                 const std::vector<std::string_view>& names,
                                 const std::vector<size_t>& kept) {
  std::vector<uint8_t> seen(names.size(), 0);
  std::vector<int32_t> order;
  for (size_t e : kept) {
    const int32_t id = ids_per_event[e];
    if (!seen[id]) {
      seen[id] = 1;
      order.push_back(id);
    }
  }
  std::vector<int64_t> value(names.size(), 0);
  for (int32_t id : order) {
    if (!parse_int(names[id], &value[id])) return order;
  }
  // Ties ("7" vs "007") fall back to the text so the order is total and deterministic.
  std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
    if (value[a] != value[b]) return value[a] < value[b];
    return names[a] < names[b];
  });
  return order;
}

// ---------------------------------------------------------------------------------------------
// Item side tables.

/// Whether `s` is valid UTF-8 and contains at least one multi-byte sequence.
bool looks_like_utf8(const std::string& s) {
  bool multibyte = false;
  size_t i = 0;
  const size_t n = s.size();
  while (i < n) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len = 0;
    if ((c & 0xE0) == 0xC0 && c >= 0xC2) len = 2;
    else if ((c & 0xF0) == 0xE0) len = 3;
    else if ((c & 0xF8) == 0xF0 && c <= 0xF4) len = 4;
    else return false;
    if (i + len > n) return false;
    for (size_t k = 1; k < len; ++k) {
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
    }
    multibyte = true;
    i += len;
  }
  return multibyte;
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

/// Reads the item side table and keeps the rows of items in `dense_of_raw` (raw id -> 1..V).
ItemTable read_item_table(const PrepareOptions& o,
                          const std::unordered_map<std::string_view, int32_t>& dense_of_raw,
                          int64_t num_items) {
  ItemTable table;
  table.fields.resize(static_cast<size_t>(num_items) + 1);
  const std::string& path = o.items;
  std::string buf = read_file(path);
  RowErrors errors(o.skip_bad_rows, path);
  int64_t duplicates = 0;
  auto store_row = [&](std::string_view raw, std::vector<std::string> values) {
    auto it = dense_of_raw.find(raw);
    if (it == dense_of_raw.end()) return;  // item not in the interactions
    auto& slot = table.fields[static_cast<size_t>(it->second)];
    if (!slot.empty()) {
      ++duplicates;  // the first row wins
      return;
    }
    slot = std::move(values);
    ++table.matched;
  };
  std::string_view line;
  std::vector<std::string_view> f;

  if (o.items_format == ItemFormat::kMovieLensDat) {
    if (!looks_like_utf8(buf)) buf = latin1_to_utf8(buf);
    table.columns = {"title", "genres"};
    LineReader dat_lines(buf);
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
    LineReader lines(buf);
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
      if (dense_of_raw.find(id) == dense_of_raw.end()) continue;
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

/// Refuses to replace an existing directory that is not a prepared dataset (e.g. "." or $HOME).
void check_output_replaceable(const std::string& output) {
  std::error_code ec;
  if (!fs::exists(output, ec)) return;
  if (!fs::is_directory(output, ec)) {
    throw ConfigError("prepare.output",
                      "expected a directory path, got existing non-directory " + quote(output));
  }
  const bool empty = fs::is_empty(output, ec);
  const bool prepared = fs::exists(fs::path(output) / "interactions.bin", ec) ||
                        fs::exists(fs::path(output) / "meta.json", ec);
  if (!empty && !prepared) {
    throw ConfigError("prepare.output",
                      "expected a new directory or an earlier prepare output, got " +
                          quote(output) + " (non-empty, no interactions.bin); not replacing it");
  }
}

std::string users_tsv(const std::vector<int32_t>& order, const Interned& in) {
  std::string out;
  out.reserve(order.size() * 12);
  for (size_t k = 0; k < order.size(); ++k) {
    out += std::to_string(k);
    out += '\t';
    out += sanitize(in.user_names[order[k]]);
    out += '\n';
  }
  return out;
}

std::string items_tsv(const std::vector<int32_t>& order, const Interned& in,
                      const ItemTable* table) {
  std::string out = "item_id\traw_id";
  if (table) {
    for (const auto& c : table->columns) out += "\t" + c;
  }
  out += '\n';
  for (size_t k = 0; k < order.size(); ++k) {
    out += std::to_string(k + 1);
    out += '\t';
    out += sanitize(in.item_names[order[k]]);
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
  if (o.format == InputFormat::kCsv) {
    opts["sep"] = o.sep;
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
  return j.dump(2) + "\n";
}

}  // namespace

InputFormat parse_input_format(const std::string& name, const std::string& path) {
  if (name == "csv") return InputFormat::kCsv;
  if (name == "movielens_dat") return InputFormat::kMovieLensDat;
  if (name == "movielens_csv") return InputFormat::kMovieLensCsv;
  if (name == "sasrec_pairs") return InputFormat::kSasrecPairs;
  if (name == "user_sequences") return InputFormat::kUserSequences;
  throw ConfigError(path,
                    "expected one of csv, movielens_dat, movielens_csv, sasrec_pairs, "
                    "user_sequences, got '" + name + "'");
}

ItemFormat parse_item_format(const std::string& name, const std::string& path) {
  if (name == "none") return ItemFormat::kNone;
  if (name == "table") return ItemFormat::kTable;
  if (name == "movielens_dat") return ItemFormat::kMovieLensDat;
  throw ConfigError(path, "expected one of none, table, movielens_dat, got '" + name + "'");
}

std::vector<RawEvent> read_events(const PrepareOptions& options, PrepareReport* report) {
  if (options.input.empty()) throw ConfigError("prepare.input", "expected a file path, got ''");
  const std::string& path = options.input;
  const std::string buf = read_file(path);
  std::vector<RawEvent> events;
  // Reserving an upper bound avoids regrowing (and copying) a vector of a million events:
  // one per line, or one per whitespace-separated token for per-user sequences.
  size_t bound = static_cast<size_t>(std::count(buf.begin(), buf.end(), '\n')) + 1;
  if (options.format == InputFormat::kUserSequences) {
    bound += static_cast<size_t>(std::count(buf.begin(), buf.end(), ' ')) +
             static_cast<size_t>(std::count(buf.begin(), buf.end(), '\t'));
  }
  events.reserve(bound);
  RowErrors errors(options.skip_bad_rows, path);
  ReadState st{&events, &errors};
  switch (options.format) {
    case InputFormat::kCsv:
      read_csv(path, buf, options.sep, options.user_col, options.item_col, options.time_col, &st);
      break;
    case InputFormat::kMovieLensDat:
      read_movielens_dat(path, buf, &st);
      break;
    case InputFormat::kMovieLensCsv:
      read_csv(path, buf, ",", "userId", "movieId", "timestamp", &st);
      break;
    case InputFormat::kSasrecPairs:
      read_sasrec_pairs(path, buf, &st);
      break;
    case InputFormat::kUserSequences:
      read_user_sequences(path, buf, &st);
      break;
  }
  errors.warn_if_any();
  if (report != nullptr) {
    report->rows_read = st.rows;
    report->rows_skipped = errors.skipped();
    report->has_timestamps = format_has_timestamps(options);
  }
  return events;
}

std::vector<RawEvent> filter_events(std::vector<RawEvent> events, const PrepareOptions& options) {
  check_filter_options(options);
  std::vector<uint8_t> keep;
  {
    const Interned in = intern(events);
    keep = compute_keep(in, options);
  }  // the views into `events` die here, before events are moved around
  size_t w = 0;
  for (size_t e = 0; e < events.size(); ++e) {
    if (!keep[e]) continue;
    if (w != e) events[w] = std::move(events[e]);
    ++w;
  }
  events.resize(w);
  return events;
}

PrepareReport prepare(const PrepareOptions& options) {
  PrepareOptions o = options;
  if (o.output.empty()) throw ConfigError("prepare.output", "expected a directory path, got ''");
  o.output = strip_trailing_slashes(o.output);
  check_filter_options(o);
  if (o.items_format == ItemFormat::kNone && !o.items.empty()) {
    // An item file without a format would otherwise be ignored silently.
    const bool dat = o.items.size() >= 4 && o.items.compare(o.items.size() - 4, 4, ".dat") == 0;
    o.items_format = dat ? ItemFormat::kMovieLensDat : ItemFormat::kTable;
    log_info("prepare.items_format not set: reading %s as %s", o.items.c_str(),
             item_format_name(o.items_format));
  }
  if (o.items_format != ItemFormat::kNone && o.items.empty()) {
    throw ConfigError("prepare.items", std::string("expected an item table path for items_format ") +
                                           item_format_name(o.items_format) + ", got ''");
  }
  check_output_replaceable(o.output);

  PrepareReport report;
  const std::vector<RawEvent> events = read_events(o, &report);
  if (events.empty()) {
    throw DataError(o.input + ": no interactions read: expected at least 1 valid row, got 0");
  }
  const Interned in = intern(events);
  const std::vector<uint8_t> keep = compute_keep(in, o);
  std::vector<size_t> kept;
  kept.reserve(events.size());
  for (size_t e = 0; e < events.size(); ++e) {
    if (keep[e]) kept.push_back(e);
  }
  if (kept.empty()) {
    throw DataError(o.input + ": no interactions left after filtering (min_item_interactions=" +
                    std::to_string(o.min_item_interactions) + ", min_user_interactions=" +
                    std::to_string(o.min_user_interactions) +
                    ", kcore=" + (o.kcore ? "true" : "false") + "): expected at least 1, got 0");
  }

  // Dense ids.
  const std::vector<int32_t> user_order = dense_order(in.user, in.user_names, kept);
  const std::vector<int32_t> item_order = dense_order(in.item, in.item_names, kept);
  if (item_order.size() >= static_cast<size_t>(INT32_MAX)) {
    throw DataError(o.input + ": expected fewer than 2^31 items, got " +
                    std::to_string(item_order.size()));
  }
  std::vector<int32_t> dense_user(in.user_names.size(), -1);
  std::vector<int32_t> dense_item(in.item_names.size(), 0);
  for (size_t k = 0; k < user_order.size(); ++k) dense_user[user_order[k]] = static_cast<int32_t>(k);
  for (size_t k = 0; k < item_order.size(); ++k) dense_item[item_order[k]] = static_cast<int32_t>(k + 1);

  // CSR by user: bucket events in file order, then sort each user's events by (time, order).
  const size_t num_users = user_order.size();
  const size_t num_events = kept.size();
  StoreData data;
  data.num_items = static_cast<int64_t>(item_order.size());
  data.has_timestamps = report.has_timestamps;
  data.user_offsets.assign(num_users + 1, 0);
  for (size_t e : kept) ++data.user_offsets[dense_user[in.user[e]] + 1];
  for (size_t u = 0; u < num_users; ++u) data.user_offsets[u + 1] += data.user_offsets[u];
  std::vector<size_t> slots(num_events);
  {
    std::vector<uint64_t> fill(data.user_offsets.begin(), data.user_offsets.end() - 1);
    for (size_t e : kept) slots[fill[dense_user[in.user[e]]]++] = e;
  }
  auto earlier = [&](size_t a, size_t b) {
    if (events[a].timestamp != events[b].timestamp) return events[a].timestamp < events[b].timestamp;
    return events[a].order < events[b].order;
  };
  for (size_t u = 0; u < num_users; ++u) {
    auto b = slots.begin() + static_cast<std::ptrdiff_t>(data.user_offsets[u]);
    auto e = slots.begin() + static_cast<std::ptrdiff_t>(data.user_offsets[u + 1]);
    if (!std::is_sorted(b, e, earlier)) std::stable_sort(b, e, earlier);
  }
  data.item_ids.resize(num_events);
  if (data.has_timestamps) data.timestamps.resize(num_events);
  for (size_t k = 0; k < num_events; ++k) {
    data.item_ids[k] = dense_item[in.item[slots[k]]];
    if (data.has_timestamps) data.timestamps[k] = events[slots[k]].timestamp;
  }

  report.num_users = static_cast<int64_t>(num_users);
  report.num_items = data.num_items;
  report.num_events = static_cast<int64_t>(num_events);

  // Item table.
  ItemTable table;
  const bool with_table = o.items_format != ItemFormat::kNone;
  if (with_table) {
    std::unordered_map<std::string_view, int32_t> dense_of_raw;
    dense_of_raw.reserve(item_order.size() * 2);
    for (size_t k = 0; k < item_order.size(); ++k) {
      dense_of_raw.emplace(in.item_names[item_order[k]], static_cast<int32_t>(k + 1));
    }
    table = read_item_table(o, dense_of_raw, data.num_items);
    report.items_with_text = table.matched;
    report.rows_skipped += table.skipped;
    if (table.matched < data.num_items) {
      log_warn("%s: %lld of %lld items have no row in the item table", o.items.c_str(),
               static_cast<long long>(data.num_items - table.matched),
               static_cast<long long>(data.num_items));
    }
  }

  // Write everything into a temp dir next to the output, then swap it in.
  const std::string tmp = o.output + ".tmp." + std::to_string(::getpid());
  std::error_code ec;
  try {
    const fs::path parent = fs::path(o.output).parent_path();
    if (!parent.empty()) make_dirs(parent.string());
    fs::remove_all(tmp, ec);  // a stale temp dir of a crashed run with our pid
    make_dirs(tmp);
    write_store(data, tmp + "/interactions.bin");
    write_file_atomic(tmp + "/users.tsv", users_tsv(user_order, in));
    write_file_atomic(tmp + "/items.tsv", items_tsv(item_order, in, with_table ? &table : nullptr));
    write_file_atomic(tmp + "/meta.json", meta_json(o, report));
    if (fs::exists(o.output, ec)) {
      check_output_replaceable(o.output);  // it may have appeared meanwhile
      fs::remove_all(o.output);
    }
    fs::rename(tmp, o.output);
  } catch (const fs::filesystem_error& err) {
    fs::remove_all(tmp, ec);
    throw DataError("cannot write " + o.output + ": " + err.what());
  } catch (...) {
    fs::remove_all(tmp, ec);
    throw;
  }
  log_info("prepared %s: %lld users, %lld items, %lld events%s -> %s", o.input.c_str(),
           static_cast<long long>(report.num_users), static_cast<long long>(report.num_items),
           static_cast<long long>(report.num_events),
           report.has_timestamps ? "" : " (no timestamps)", o.output.c_str());
  return report;
}

}  // namespace seqrec::data
