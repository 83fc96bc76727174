// Reading LC-Rec's <D>.user.json (preferences and intentions) with raw ids mapped to dense ones.
#include "seqrec/data/lcrec_user_texts.h"

#include <nlohmann/json.hpp>

#include <algorithm>

#include "seqrec/common/error.h"
#include "seqrec/common/fs.h"

namespace seqrec::data {
namespace {

using nlohmann::json;

/// Reads one file and turns JSON values into dense ids / strings, with errors naming the JSON path.
class Reader {
 public:
  Reader(std::string path, const RawIdLookup& user_of, const RawIdLookup& item_of)
      : path_(std::move(path)), user_of_(user_of), item_of_(item_of) {}

  [[noreturn]] void fail(const std::string& where, const std::string& what) const {
    throw DataError(path_ + ": " + where + ": " + what);
  }

  const json& object_at(const json& parent, const std::string& key, const std::string& where) const {
    auto it = parent.find(key);
    if (it == parent.end()) fail(where, "missing key \"" + key + "\"");
    if (!it->is_object()) fail(where + "." + key, std::string("expected an object, got ") + it->type_name());
    return *it;
  }

  std::string string_of(const json& v, const std::string& where) const {
    if (!v.is_string()) fail(where, std::string("expected a string, got ") + v.type_name());
    return v.get<std::string>();
  }

  /// An id given as a string or an integer (upstream writes item ids as numbers).
  std::string raw_id(const json& v, const std::string& where) const {
    if (v.is_string()) return v.get<std::string>();
    if (v.is_number_integer()) return v.dump();
    fail(where, std::string("expected an id (string or integer), got ") + v.type_name());
  }

  int64_t user(const std::string& raw, const std::string& where) const {
    const int64_t u = user_of_(raw);
    if (u < 0) fail(where, "unknown user id '" + raw + "' (not in the prepared store's users.tsv)");
    return u;
  }

  int32_t item(const json& v, const std::string& where) const {
    const std::string raw = raw_id(v, where);
    const int64_t i = item_of_(raw);
    if (i <= 0) fail(where, "unknown item id '" + raw + "' (not in the prepared store's items.tsv)");
    return static_cast<int32_t>(i);
  }

  std::vector<UserPreferences> preferences(const json& node) const {
    const std::string where = "user_explicit_preference";
    std::vector<UserPreferences> out;
    for (auto it = node.begin(); it != node.end(); ++it) {
      const std::string at = where + ".\"" + it.key() + "\"";
      UserPreferences p;
      p.user = user(it.key(), at);
      if (!it->is_array() || it->empty()) fail(at, "expected a non-empty list of preference texts");
      for (size_t k = 0; k < it->size(); ++k) p.texts.push_back(string_of((*it)[k], at + "[" + std::to_string(k) + "]"));
      out.push_back(std::move(p));
    }
    return out;
  }

  std::vector<UserIntention> intentions(const json& node, const std::string& where) const {
    std::vector<UserIntention> out;
    for (auto it = node.begin(); it != node.end(); ++it) {
      const std::string at = where + ".\"" + it.key() + "\"";
      if (!it->is_object()) fail(at, std::string("expected an object, got ") + it->type_name());
      UserIntention u;
      u.user = user(it.key(), at);
      for (const char* key : {"item", "inters", "querys"})
        if (!it->contains(key)) fail(at, std::string("missing key \"") + key + "\"");
      u.item = item((*it)["item"], at + ".item");
      const json& inters = (*it)["inters"];
      if (!inters.is_array()) fail(at + ".inters", std::string("expected a list of item ids, got ") + inters.type_name());
      for (size_t k = 0; k < inters.size(); ++k) u.history.push_back(item(inters[k], at + ".inters[" + std::to_string(k) + "]"));
      const json& querys = (*it)["querys"];
      if (!querys.is_array() || querys.size() != 2)
        fail(at + ".querys", "expected [user-related intention, item-related intention]");
      u.user_related_intention = string_of(querys[0], at + ".querys[0]");
      u.item_related_intention = string_of(querys[1], at + ".querys[1]");
      out.push_back(std::move(u));
    }
    return out;
  }

 private:
  std::string path_;
  const RawIdLookup& user_of_;
  const RawIdLookup& item_of_;
};

template <typename T>
void sort_by_user(std::vector<T>& v) {
  std::stable_sort(v.begin(), v.end(), [](const T& a, const T& b) { return a.user < b.user; });
}

}  // namespace

LcRecUserTexts read_lcrec_user_texts(const std::string& path, const RawIdLookup& user_of, const RawIdLookup& item_of) {
  const std::string text = read_file(path);
  json root;
  try {
    root = json::parse(text);
  } catch (const json::exception& e) {  // parse_error, and out_of_range for a number like 1e9999
    throw DataError(path + ": not valid JSON: " + e.what());
  }
  Reader r(path, user_of, item_of);
  if (!root.is_object()) r.fail("top level", std::string("expected an object, got ") + root.type_name());
  LcRecUserTexts out;
  if (root.contains("user_explicit_preference"))
    out.preferences = r.preferences(r.object_at(root, "user_explicit_preference", "top level"));
  if (root.contains("user_vague_intention")) {
    const json& vague = r.object_at(root, "user_vague_intention", "top level");
    if (vague.contains("train"))
      out.train_intentions =
          r.intentions(r.object_at(vague, "train", "user_vague_intention"), "user_vague_intention.train");
    if (vague.contains("test"))
      out.test_intentions = r.intentions(r.object_at(vague, "test", "user_vague_intention"), "user_vague_intention.test");
  }
  sort_by_user(out.preferences);
  sort_by_user(out.train_intentions);
  sort_by_user(out.test_intentions);
  return out;
}

}  // namespace seqrec::data
