// ItemCatalog: raw ids and text fields of the dense items of a prepared store (items.tsv).
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

namespace seqrec::data {

/// Dense item id <-> raw id, and text columns, loaded from <prepared>/items.tsv.
class ItemCatalog {
 public:
  /// Loads <dir>/items.tsv; throws DataError naming file:line on a malformed line.
  static ItemCatalog load(const std::string& dir);

  int64_t num_items() const { return static_cast<int64_t>(raw_ids_.size()) - 1; }
  /// Raw id of dense item `id` (1..V).
  const std::string& raw_id(int64_t id) const { return raw_ids_.at(id); }
  /// Dense id of a raw id, or -1 when unknown.
  int64_t find(const std::string& raw_id) const;
  /// Text column names in file order (e.g. "title", "genres").
  const std::vector<std::string>& columns() const { return columns_; }
  /// Throws ConfigError at `field` when `column` is not one of columns(), listing them ("none; give
  /// prepare.items" when the table has none).
  void require_column(const std::string& column, const std::string& field) const;
  /// Value of a text column for item `id`, "" when absent.
  std::string field(int64_t id, const std::string& column) const;
  /// Title (column "title") or "" when there is none.
  std::string title(int64_t id) const { return field(id, "title"); }

 private:
  std::vector<std::string> raw_ids_;                 // [V+1], index 0 unused
  std::vector<std::string> columns_;
  std::vector<std::vector<std::string>> fields_;     // [V+1][columns]
  std::unordered_map<std::string, int64_t> index_;
};

/// Raw user id <-> dense user index, from <prepared>/users.tsv.
class UserMap {
 public:
  static UserMap load(const std::string& dir);
  int64_t num_users() const { return static_cast<int64_t>(raw_ids_.size()); }
  const std::string& raw_id(int64_t user) const { return raw_ids_.at(user); }
  /// Dense index of a raw user id, or -1 when unknown.
  int64_t find(const std::string& raw_id) const;

 private:
  std::vector<std::string> raw_ids_;
  std::unordered_map<std::string, int64_t> index_;
};

}  // namespace seqrec::data
