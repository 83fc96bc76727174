// Semantic-id tokens, collision statistics and LC-Rec's index.json.
#include "seqrec/semantic_id/item_index.h"

#include <nlohmann/json.hpp>

#include <map>
#include <set>
#include <unordered_map>

#include "seqrec/common/error.h"
#include "seqrec/common/fs.h"

namespace seqrec::semantic_id {
namespace {

// FNV-1a over the codes of one row: a hash key for the tuple map.
struct TupleHash {
  int64_t num_levels;
  const std::vector<int64_t>* codes;
  size_t operator()(int64_t row) const {
    uint64_t h = 1469598103934665603ULL;
    for (int64_t l = 0; l < num_levels; ++l) {
      h ^= static_cast<uint64_t>((*codes)[row * num_levels + l]);
      h *= 1099511628211ULL;
    }
    return static_cast<size_t>(h);
  }
};

struct TupleEqual {
  int64_t num_levels;
  const std::vector<int64_t>* codes;
  bool operator()(int64_t a, int64_t b) const {
    for (int64_t l = 0; l < num_levels; ++l)
      if ((*codes)[a * num_levels + l] != (*codes)[b * num_levels + l]) return false;
    return true;
  }
};

// Rows grouped by tuple, groups in order of their first row.
std::vector<std::vector<int64_t>> group_rows(const std::vector<int64_t>& codes, int64_t num_levels) {
  const int64_t n = num_levels == 0 ? 0 : static_cast<int64_t>(codes.size()) / num_levels;
  std::unordered_map<int64_t, int64_t, TupleHash, TupleEqual> first(
      static_cast<size_t>(n), TupleHash{num_levels, &codes}, TupleEqual{num_levels, &codes});
  std::vector<std::vector<int64_t>> groups;
  for (int64_t r = 0; r < n; ++r) {
    auto [it, inserted] = first.emplace(r, static_cast<int64_t>(groups.size()));
    if (inserted) groups.emplace_back();
    groups[it->second].push_back(r);
  }
  return groups;
}

bool is_decimal(const std::string& s) {
  if (s.empty() || s.size() > 18) return false;
  for (char c : s)
    if (c < '0' || c > '9') return false;
  return s.size() == 1 || s[0] != '0';
}

std::string quoted_key(const std::string& key) { return "key \"" + key + "\""; }

}  // namespace

std::string code_token(int64_t level, int64_t code) {
  return "<" + std::string(1, static_cast<char>('a' + level)) + "_" + std::to_string(code) + ">";
}

int64_t parse_code_token(const std::string& token, int64_t level) {
  if (level < 0 || level >= kMaxLevels) return -1;
  if (token.size() < 5 || token[0] != '<' || token[1] != static_cast<char>('a' + level) || token[2] != '_' ||
      token.back() != '>')
    return -1;
  const std::string number = token.substr(3, token.size() - 4);
  return is_decimal(number) ? std::stoll(number) : -1;
}

std::vector<std::string> ItemIndex::row_tokens(int64_t row) const {
  std::vector<std::string> out;
  for (int64_t l = 0; l < num_levels; ++l) out.push_back(code_token(l, codes[row * num_levels + l]));
  return out;
}

std::string ItemIndex::row_text(int64_t row) const {
  std::string out;
  for (const auto& t : row_tokens(row)) out += t;
  return out;
}

std::vector<std::string> ItemIndex::item_texts() const {
  std::vector<std::string> out(static_cast<size_t>(num_items() + 1));
  for (int64_t row = 0; row < num_items(); ++row) out[static_cast<size_t>(row + 1)] = row_text(row);
  return out;
}

CollisionStats collision_stats(const std::vector<int64_t>& codes, int64_t num_levels) {
  CollisionStats s;
  s.num_items = num_levels == 0 ? 0 : static_cast<int64_t>(codes.size()) / num_levels;
  for (const auto& g : group_rows(codes, num_levels)) {
    const int64_t size = static_cast<int64_t>(g.size());
    ++s.num_distinct;
    if (size > 1) ++s.num_groups;
    s.max_group = std::max(s.max_group, size);
  }
  return s;
}

std::vector<std::vector<int64_t>> collision_groups(const std::vector<int64_t>& codes, int64_t num_levels) {
  std::vector<std::vector<int64_t>> out;
  for (auto& g : group_rows(codes, num_levels))
    if (g.size() > 1) out.push_back(std::move(g));
  return out;
}

std::vector<int64_t> used_codes_per_level(const std::vector<int64_t>& codes, int64_t num_levels) {
  std::vector<int64_t> out;
  for (int64_t l = 0; l < num_levels; ++l) {
    std::set<int64_t> seen;
    for (size_t i = static_cast<size_t>(l); i < codes.size(); i += static_cast<size_t>(num_levels)) seen.insert(codes[i]);
    out.push_back(static_cast<int64_t>(seen.size()));
  }
  return out;
}

void write_index_json(const std::string& path, const ItemIndex& index) {
  // The bytes of Python's json.dump(dict, fp): ", " and ": " separators, keys in row order.
  std::string out = "{";
  for (int64_t r = 0; r < index.num_items(); ++r) {
    out += (r == 0 ? "\"" : ", \"") + std::to_string(r) + "\": [";
    const auto tokens = index.row_tokens(r);
    for (size_t l = 0; l < tokens.size(); ++l) out += (l == 0 ? "\"" : ", \"") + tokens[l] + "\"";
    out += "]";
  }
  out += "}";
  write_file_atomic(path, out);
}

ItemIndex read_index_json(const std::string& path, int64_t expected_items, IndexFileReport* report) {
  const std::string text = read_file(path);
  // Repeated keys: nlohmann keeps the last value silently, so the parser callback watches the root's keys.
  std::set<std::string> seen;
  std::string repeated;
  auto watch = [&](int depth, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
    if (depth == 1 && event == nlohmann::json::parse_event_t::key && parsed.is_string()) {
      const std::string k = parsed.get<std::string>();
      if (!seen.insert(k).second && repeated.empty()) repeated = k;
    }
    return true;
  };
  nlohmann::json root;
  try {
    root = nlohmann::json::parse(text, watch);
  } catch (const nlohmann::json::exception& e) {
    throw DataError(path + ": not valid JSON: " + e.what());
  }
  if (!root.is_object()) throw DataError(path + ": expected a JSON object {\"0\": [\"<a_1>\", ...], ...}");
  if (!repeated.empty()) throw DataError(path + ": " + quoted_key(repeated) + " appears more than once");
  if (root.empty()) throw DataError(path + ": no items");
  const int64_t n = static_cast<int64_t>(root.size());
  if (expected_items >= 0 && n != expected_items) {
    std::string missing;  // the first row the prepared data needs and the file lacks
    for (int64_t r = 0; r < expected_items && missing.empty(); ++r)
      if (!root.contains(std::to_string(r)))
        missing = "; no code for item row " + std::to_string(r) + " (dense item " + std::to_string(r + 1) + ")";
    throw DataError(path + ": has " + std::to_string(n) + " items, the prepared data has " +
                    std::to_string(expected_items) + " (rows 0.." + std::to_string(expected_items - 1) + ")" +
                    missing);
  }
  ItemIndex index;
  for (auto it = root.begin(); it != root.end(); ++it) {
    const std::string& key = it.key();
    const std::string where = path + ": " + quoted_key(key);
    if (!is_decimal(key)) throw DataError(where + ": keys must be item rows 0.." + std::to_string(n - 1));
    const int64_t row = std::stoll(key);
    if (row >= n)
      throw DataError(where + ": row out of range; " + std::to_string(n) + " items need keys 0.." +
                      std::to_string(n - 1));
    const auto& value = it.value();
    if (!value.is_array() || value.empty() || static_cast<int64_t>(value.size()) > kMaxLevels)
      throw DataError(where + ": expected a list of 1.." + std::to_string(kMaxLevels) + " tokens like \"<a_12>\"");
    if (index.num_levels == 0) {
      index.num_levels = static_cast<int64_t>(value.size());
      index.codes.assign(static_cast<size_t>(n * index.num_levels), 0);
    } else if (static_cast<int64_t>(value.size()) != index.num_levels) {
      throw DataError(where + ": has " + std::to_string(value.size()) + " levels, earlier items have " +
                      std::to_string(index.num_levels));
    }
    for (int64_t l = 0; l < index.num_levels; ++l) {
      const auto& t = value[static_cast<size_t>(l)];
      const int64_t code = t.is_string() ? parse_code_token(t.get<std::string>(), l) : -1;
      if (code < 0)
        throw DataError(where + ": token " + std::to_string(l) + " is " + t.dump() + ", expected " +
                        code_token(l, 12) + "-style (prefix '" + std::string(1, char('a' + l)) + "' at level " +
                        std::to_string(l) + ")");
      index.codes[static_cast<size_t>(row * index.num_levels + l)] = code;
    }
  }
  // n distinct keys, all below n: every row 0..n-1 is present.
  if (report) report->collisions = collision_stats(index.codes, index.num_levels);
  return index;
}

}  // namespace seqrec::semantic_id
