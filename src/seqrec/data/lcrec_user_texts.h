// LC-Rec's per-user texts (upstream `<D>.user.json`, made by data_process/get_llm_output.py): the
// explicit preferences (preferenceobtain, itemsearch) and the vague intentions (itemsearch).
//
// Layout (upstream's, read as is; ids are the raw ids of the prepared store, as strings or numbers):
//   {
//     "user_explicit_preference": { "<user>": ["<preference>", ...], ... },
//     "user_vague_intention": {
//       "train": { "<user>": {"item": <item>, "inters": [<item>, ...],
//                             "querys": ["<user-related intention>", "<item-related intention>"]}, ... },
//       "test":  { same as train }
//     }
//   }
// Both top-level keys are optional (a file with only preferences serves preferenceobtain), as are
// "train" / "test". Upstream's intentions target items[-3] with history items[:-3] (train) and
// items[-1] with items[:-1] (test); the file's own item and inters are used as they are.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace seqrec::data {

/// A user's vague intention about one target item (upstream `user_vague_intention[mode][user]`).
struct UserIntention {
  int64_t user = 0;                     ///< dense user index
  int32_t item = 0;                     ///< dense target item
  std::vector<int32_t> history;         ///< dense items before it, oldest first (not truncated)
  std::string user_related_intention;   ///< querys[0]
  std::string item_related_intention;   ///< querys[1]
};

/// A user's explicit preference texts (upstream keeps three: a general one, long- and short-term).
struct UserPreferences {
  int64_t user = 0;                     ///< dense user index
  std::vector<std::string> texts;       ///< at least one
};

/// Everything read from a user.json, each list sorted by dense user index.
struct LcRecUserTexts {
  std::vector<UserPreferences> preferences;       ///< user_explicit_preference
  std::vector<UserIntention> train_intentions;    ///< user_vague_intention.train
  std::vector<UserIntention> test_intentions;     ///< user_vague_intention.test
};

/// Maps a raw id to a dense one; returns -1 when unknown.
using RawIdLookup = std::function<int64_t(const std::string&)>;

/// Reads `path` (layout above). Raw ids go through `user_of` / `item_of`; an unknown id, a missing
/// field, a wrong type or a querys list not of length 2 throws DataError naming the file and the
/// JSON path (e.g. "Games.user.json: user_vague_intention.train.\"12\".item: unknown item id '907'").
LcRecUserTexts read_lcrec_user_texts(const std::string& path, const RawIdLookup& user_of,
                                     const RawIdLookup& item_of);

}  // namespace seqrec::data
