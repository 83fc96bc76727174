// ItemCatalog / UserMap: loading the id maps that prepare writes (items.tsv, users.tsv).
#include "seqrec/data/item_catalog.h"

#include <algorithm>
#include <charconv>
#include <string_view>

#include "seqrec/common/error.h"
#include "seqrec/common/fs.h"
#include "seqrec/data/tsv.h"

namespace seqrec::data {
namespace {

bool parse_int(std::string_view s, int64_t* v) {
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *v);
  return ec == std::errc() && p == s.data() + s.size();
}

/// Calls fn(line_no, line) for each line, '\r' stripped; the final empty line is not reported.
template <typename Fn>
void for_each_line(const std::string& buf, Fn fn) {
  size_t pos = 0;
  int64_t line_no = 0;
  while (pos < buf.size()) {
    size_t nl = buf.find('\n', pos);
    if (nl == std::string::npos) nl = buf.size();
    std::string_view line(buf.data() + pos, nl - pos);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    fn(++line_no, line);
    pos = nl + 1;
  }
}

std::string loc(const std::string& path, int64_t line) {
  return path + ":" + std::to_string(line);
}

}  // namespace

ItemCatalog ItemCatalog::load(const std::string& dir) {
  const std::string path = dir + "/items.tsv";
  const std::string buf = read_file(path);
  ItemCatalog cat;
  cat.raw_ids_.emplace_back();  // index 0: padding
  cat.fields_.emplace_back();
  size_t num_fields = 0;
  bool saw_header = false;
  for_each_line(buf, [&](int64_t line_no, std::string_view line) {
    const auto f = split_tabs(line);
    if (!saw_header) {
      if (f.size() < 2 || f[0] != "item_id" || f[1] != "raw_id") {
        throw DataError(loc(path, line_no) +
                        ": expected header 'item_id<TAB>raw_id[<TAB>columns...]', got '" +
                        std::string(line.substr(0, 80)) + "'");
      }
      saw_header = true;
      num_fields = f.size();
      for (size_t c = 2; c < f.size(); ++c) cat.columns_.emplace_back(f[c]);
      return;
    }
    if (line.empty()) return;
    if (f.size() != num_fields) {
      throw DataError(loc(path, line_no) + ": expected " + std::to_string(num_fields) +
                      " fields, got " + std::to_string(f.size()));
    }
    const int64_t want = static_cast<int64_t>(cat.raw_ids_.size());
    int64_t id = 0;
    if (!parse_int(f[0], &id) || id != want) {
      throw DataError(loc(path, line_no) + ": expected item id " + std::to_string(want) +
                      ", got '" + std::string(f[0]) + "'");
    }
    cat.raw_ids_.emplace_back(f[1]);
    std::vector<std::string> values;
    values.reserve(f.size() - 2);
    for (size_t c = 2; c < f.size(); ++c) values.emplace_back(f[c]);
    cat.fields_.push_back(std::move(values));
    if (!cat.index_.emplace(cat.raw_ids_.back(), id).second) {
      throw DataError(loc(path, line_no) + ": expected unique raw ids, got duplicate '" +
                      cat.raw_ids_.back() + "'");
    }
  });
  if (!saw_header) throw DataError(path + ": empty file: expected a header line");
  return cat;
}

int64_t ItemCatalog::find(const std::string& raw_id) const {
  auto it = index_.find(raw_id);
  return it == index_.end() ? -1 : it->second;
}

void ItemCatalog::require_column(const std::string& column, const std::string& field) const {
  if (std::find(columns_.begin(), columns_.end(), column) != columns_.end()) return;
  std::string have;
  for (const auto& c : columns_) have += (have.empty() ? "" : ", ") + c;
  throw ConfigError(field, "'" + column + "' is not a column of the item table (columns: " +
                               (have.empty() ? "none; give prepare.items" : have) + ")");
}

std::string ItemCatalog::field(int64_t id, const std::string& column) const {
  if (id < 1 || id >= static_cast<int64_t>(fields_.size())) return "";
  const auto it = std::find(columns_.begin(), columns_.end(), column);
  if (it == columns_.end()) return "";
  const auto c = static_cast<size_t>(it - columns_.begin());
  const auto& row = fields_[static_cast<size_t>(id)];
  return c < row.size() ? row[c] : "";
}

UserMap UserMap::load(const std::string& dir) {
  const std::string path = dir + "/users.tsv";
  const std::string buf = read_file(path);
  UserMap map;
  for_each_line(buf, [&](int64_t line_no, std::string_view line) {
    if (line.empty()) return;
    if (line_no == 1 && line == "user\traw_id") return;  // the header LSVCR stores had before 2026-12-05
    const auto f = split_tabs(line);
    if (f.size() != 2) {
      throw DataError(loc(path, line_no) + ": expected 2 fields, got " + std::to_string(f.size()));
    }
    const int64_t want = static_cast<int64_t>(map.raw_ids_.size());
    int64_t idx = 0;
    if (!parse_int(f[0], &idx) || idx != want) {
      throw DataError(loc(path, line_no) + ": expected user index " + std::to_string(want) +
                      ", got '" + std::string(f[0]) + "'");
    }
    map.raw_ids_.emplace_back(f[1]);
    if (!map.index_.emplace(map.raw_ids_.back(), idx).second) {
      throw DataError(loc(path, line_no) + ": expected unique raw ids, got duplicate '" +
                      map.raw_ids_.back() + "'");
    }
  });
  return map;
}

int64_t UserMap::find(const std::string& raw_id) const {
  auto it = index_.find(raw_id);
  return it == index_.end() ? -1 : it->second;
}

}  // namespace seqrec::data
