// Semantic item ids (LC-Rec, systems.md §3.2): M code levels per item, their tokens "<a_12><b_3>..."
// and LC-Rec's `<dataset>.index.json` file, {"0": ["<a_12>", "<b_3>", "<c_0>", "<d_77>"], ...}.
//
// Rows: the file is keyed by the 0-based embedding row r; in seqrec, row r is the dense item id
// r + 1 of the prepared store (ItemCatalog, ids 1..V). Codes are 0-based within each level.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace seqrec::semantic_id {

/// Token prefixes exist for 5 levels (a..e), as in LC-Rec.
constexpr int64_t kMaxLevels = 5;

/// "<a_12>": the token of `code` at `level` (0-based; level 0 -> 'a').
std::string code_token(int64_t level, int64_t code);

/// The code of a token of `level` ("<b_3>" at level 1 -> 3), or -1 when the token is not exactly
/// '<' + prefix of the level + '_' + a decimal number without leading zeros + '>'.
int64_t parse_code_token(const std::string& token, int64_t level);

/// The semantic ids of all items: codes of row r (dense item r + 1) at level l = codes[r * M + l].
struct ItemIndex {
  int64_t num_levels = 0;      ///< M
  std::vector<int64_t> codes;  ///< [V * M] row-major

  /// V.
  int64_t num_items() const { return num_levels == 0 ? 0 : static_cast<int64_t>(codes.size()) / num_levels; }
  /// Codes of dense item `item_id` (1..V): a pointer to M values.
  const int64_t* item_codes(int64_t item_id) const { return codes.data() + (item_id - 1) * num_levels; }
  /// The M tokens of row `row` (0-based).
  std::vector<std::string> row_tokens(int64_t row) const;
  /// The tokens of row `row` joined ("<a_12><b_3><c_0><d_77>"), as LC-Rec writes an item in prompts.
  std::string row_text(int64_t row) const;
  /// row_text of every item by dense id: [V + 1], index 0 empty (what LC-Rec's prompts write).
  std::vector<std::string> item_texts() const;
};

/// How many items share their code tuple with another item.
struct CollisionStats {
  int64_t num_items = 0;      ///< V
  int64_t num_distinct = 0;   ///< distinct code tuples
  int64_t num_groups = 0;     ///< tuples held by more than one item
  int64_t max_group = 0;      ///< most items on one tuple (1 when there is no collision)
  /// LC-Rec's collision rate: (V - distinct) / V.
  double rate() const { return num_items == 0 ? 0.0 : double(num_items - num_distinct) / double(num_items); }
};

/// Collision statistics of `codes` ([V * M] row-major).
CollisionStats collision_stats(const std::vector<int64_t>& codes, int64_t num_levels);

/// Rows sharing a code tuple with at least one other row, one group per tuple, groups in order of
/// their first row, rows ascending (generate_indices.py's get_collision_item).
std::vector<std::vector<int64_t>> collision_groups(const std::vector<int64_t>& codes, int64_t num_levels);

/// Distinct codes used at each level: [M].
std::vector<int64_t> used_codes_per_level(const std::vector<int64_t>& codes, int64_t num_levels);

/// Writes LC-Rec's index.json for `index` (keys "0".."V-1" in order, json.dump's separators),
/// atomically (temp + rename). Throws Error naming the path.
void write_index_json(const std::string& path, const ItemIndex& index);

/// What read_index_json found besides the codes.
struct IndexFileReport {
  CollisionStats collisions;  ///< items sharing a tuple (tolerated, as in LC-Rec: duplicate items)
};

/// Reads an index.json. Checks: valid JSON object, keys are the decimal rows 0..V-1 with none
/// missing or repeated, every value a list of the same number of levels (1..5) of tokens whose
/// prefixes follow the level (a, b, ...). `expected_items` >= 0 also requires V to equal it (the
/// prepared store's item count). Throws DataError "<path>: key "12": ..." naming the file and key.
ItemIndex read_index_json(const std::string& path, int64_t expected_items = -1, IndexFileReport* report = nullptr);

}  // namespace seqrec::semantic_id
