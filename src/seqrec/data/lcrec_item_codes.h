// A minimal reader of an LC-Rec index.json for `seqrec lcrec-data` (a stand-in: the full reader with
// token-syntax and duplicate checks belongs to semantic_id/index.h, which replaces this one).
//
// index.json: {"0": ["<a_12>", "<b_3>", "<c_0>", "<d_77>"], "1": [...], ...}, keyed by the 0-based
// item row r, which is dense item r + 1 of the prepared store.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace seqrec::data {

/// The code string of every item, [V + 1] (index 0 empty): the item's tokens concatenated, as
/// upstream's "".join(indices[str(i)]). Throws DataError naming the file and the key when the file
/// is not a JSON object of non-empty string lists, a key is not a row 0..V-1, or a row is missing.
std::vector<std::string> read_lcrec_item_codes(const std::string& path, int64_t num_items);

}  // namespace seqrec::data
