// The minimal index.json reader of lcrec-data (see the header: replaced by semantic_id/index.h).
#include "seqrec/data/lcrec_item_codes.h"

#include <nlohmann/json.hpp>

#include <charconv>

#include "seqrec/common/error.h"
#include "seqrec/common/fs.h"

namespace seqrec::data {

std::vector<std::string> read_lcrec_item_codes(const std::string& path, int64_t num_items) {
  nlohmann::json root;
  try {
    root = nlohmann::json::parse(read_file(path));
  } catch (const nlohmann::json::parse_error& e) {
    throw DataError(path + ": not valid JSON: " + e.what());
  }
  if (!root.is_object()) throw DataError(path + ": expected an object {\"<row>\": [tokens...]}");
  std::vector<std::string> codes(static_cast<size_t>(num_items) + 1);
  for (auto it = root.begin(); it != root.end(); ++it) {
    const std::string& key = it.key();
    int64_t row = -1;
    auto [p, ec] = std::from_chars(key.data(), key.data() + key.size(), row);
    if (ec != std::errc() || p != key.data() + key.size() || row < 0 || row >= num_items)
      throw DataError(path + ": key \"" + key + "\": expected an item row 0.." + std::to_string(num_items - 1) +
                      " (row r = dense item r + 1)");
    if (!it->is_array() || it->empty())
      throw DataError(path + ": key \"" + key + "\": expected a non-empty list of code tokens");
    std::string code;
    for (const auto& token : *it) {
      if (!token.is_string() || token.get<std::string>().empty())
        throw DataError(path + ": key \"" + key + "\": code tokens must be non-empty strings");
      code += token.get<std::string>();
    }
    codes[static_cast<size_t>(row) + 1] = std::move(code);
  }
  for (int64_t r = 0; r < num_items; ++r)
    if (codes[static_cast<size_t>(r) + 1].empty())
      throw DataError(path + ": no code for item row " + std::to_string(r) + " (dense item " + std::to_string(r + 1) +
                      "): the index must cover all " + std::to_string(num_items) + " items of the store");
  return codes;
}

}  // namespace seqrec::data
