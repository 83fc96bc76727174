// JSON <-> serving types with nlohmann-json; strict: every key, type and limit is checked.
#include "seqrec/serve/json_codec.h"

#include <nlohmann/json.hpp>

#include <cmath>

namespace seqrec::serve {
namespace {

using nlohmann::json;

std::string where(const std::string& prefix, const std::string& key) {
  return prefix.empty() ? key : prefix + "." + key;
}

const char* type_name(const json& v) { return v.type_name(); }

// A raw id: a non-empty string, or a non-negative integer written in decimal.
std::string read_id(const json& v, const std::string& field) {
  if (v.is_string()) {
    const std::string& s = v.get_ref<const std::string&>();
    if (s.empty()) throw invalid_request(field + ": an id must not be empty");
    return s;
  }
  if (v.is_number_unsigned()) return std::to_string(v.get<uint64_t>());
  if (v.is_number_integer()) throw invalid_request(field + ": an id must be a string or a non-negative integer, got " + v.dump());
  throw invalid_request(field + ": an id must be a string or a non-negative integer, got " + std::string(type_name(v)));
}

std::vector<std::string> read_ids(const json& v, const std::string& field, int64_t limit) {
  if (!v.is_array()) throw invalid_request(field + ": expected an array of ids, got " + std::string(type_name(v)));
  if (static_cast<int64_t>(v.size()) > limit)
    throw invalid_request(field + ": " + std::to_string(v.size()) + " ids, more than the limit of " + std::to_string(limit));
  std::vector<std::string> out;
  out.reserve(v.size());
  for (size_t i = 0; i < v.size(); ++i) out.push_back(read_id(v[i], field + "[" + std::to_string(i) + "]"));
  return out;
}

int64_t read_k(const json& v, const std::string& field, int64_t max_k) {
  const std::string range = "must be an integer in [1, " + std::to_string(max_k) + "]";
  if (v.is_number_float()) {
    const double d = v.get<double>();
    // 10.0 is an integer written as a float; 10.5 or 1e300 are not ks.
    if (!(std::floor(d) == d && d >= 1 && d <= static_cast<double>(max_k))) throw invalid_request(field + ": " + range + ", got " + v.dump());
    return static_cast<int64_t>(d);
  }
  if (!v.is_number_integer()) throw invalid_request(field + ": " + range + ", got " + std::string(type_name(v)));
  if (v.is_number_unsigned() ? (v.get<uint64_t>() < 1 || v.get<uint64_t>() > static_cast<uint64_t>(max_k))
                             : (v.get<int64_t>() < 1 || v.get<int64_t>() > max_k))
    throw invalid_request(field + ": " + range + ", got " + v.dump());
  return v.get<int64_t>();
}

RecommendRequest read_request(const json& j, const std::string& prefix, const RequestLimits& limits) {
  const std::string self = prefix.empty() ? "body" : prefix;
  if (!j.is_object()) throw invalid_request(self + ": expected a JSON object, got " + std::string(type_name(j)));
  RecommendRequest r;
  r.field = prefix;
  for (const auto& [key, value] : j.items()) {
    const std::string field = where(prefix, key);
    if (key == "user") {
      r.user = read_id(value, field);
    } else if (key == "history") {
      r.history = read_ids(value, field, limits.max_history);
      if (r.history.empty()) throw invalid_request(field + ": must not be empty (give the items the user interacted with, oldest first)");
    } else if (key == "k") {
      r.k = read_k(value, field, limits.max_k);
    } else if (key == "exclude_history") {
      if (!value.is_boolean()) throw invalid_request(field + ": expected true or false, got " + std::string(type_name(value)));
      r.exclude_history = value.get<bool>();
    } else if (key == "allow") {
      r.allow = read_ids(value, field, limits.max_list);
      if (r.allow.empty()) throw invalid_request(field + ": must not be empty (leave it out to allow every item)");
    } else if (key == "deny") {
      r.deny = read_ids(value, field, limits.max_list);
    } else {
      throw invalid_request(field + ": unknown field (expected user, history, k, exclude_history, allow, deny)");
    }
  }
  const bool has_user = j.contains("user"), has_history = j.contains("history");
  if (has_user == has_history)
    throw invalid_request(self + ": give exactly one of \"user\" (a user id) or \"history\" (item ids, oldest first)");
  return r;
}

json parse_body(const std::string& body) {
  if (body.empty()) throw invalid_request("body: empty; expected a JSON object");
  try {
    return json::parse(body);
  } catch (const json::exception& e) {  // parse_error, and out_of_range for a number like 1e9999
    throw invalid_request(std::string("body: malformed JSON: ") + e.what());
  }
}

json result_json(const RecommendResult& result) {
  json items = json::array();
  for (const ScoredItem& s : result.items) items.push_back({{"id", s.id}, {"score", s.score}});
  return {{"items", std::move(items)}};
}

}  // namespace

RecommendRequest parse_recommend_request(const std::string& body, const RequestLimits& limits) {
  return read_request(parse_body(body), "", limits);
}

std::vector<RecommendRequest> parse_batch_request(const std::string& body, const RequestLimits& limits) {
  const json j = parse_body(body);
  if (!j.is_object()) throw invalid_request("body: expected a JSON object {\"requests\": [...]}, got " + std::string(type_name(j)));
  for (const auto& [key, value] : j.items())
    if (key != "requests") throw invalid_request(key + ": unknown field (expected requests)");
  if (!j.contains("requests")) throw invalid_request("requests: required field is missing");
  const json& list = j.at("requests");
  if (!list.is_array()) throw invalid_request("requests: expected an array, got " + std::string(type_name(list)));
  if (list.empty() || static_cast<int64_t>(list.size()) > limits.max_batch_requests)
    throw invalid_request("requests: must hold 1 to " + std::to_string(limits.max_batch_requests) + " requests, got " +
                          std::to_string(list.size()));
  std::vector<RecommendRequest> out;
  out.reserve(list.size());
  for (size_t i = 0; i < list.size(); ++i) out.push_back(read_request(list[i], "requests[" + std::to_string(i) + "]", limits));
  return out;
}

CommentRequest parse_comments_request(const std::string& body, const RequestLimits& limits) {
  const json j = parse_body(body);
  if (!j.is_object()) throw invalid_request("body: expected a JSON object, got " + std::string(type_name(j)));
  CommentRequest r;
  for (const auto& [key, value] : j.items()) {
    if (key == "user") {
      r.user = read_id(value, key);
    } else if (key == "history") {
      r.history = read_ids(value, key, limits.max_history);
    } else if (key == "comment_history") {
      r.comment_history = read_ids(value, key, limits.max_history);
    } else if (key == "video") {
      r.video = read_id(value, key);
    } else if (key == "k") {
      r.k = read_k(value, key, limits.max_k);
    } else if (key == "exclude_history") {
      if (!value.is_boolean()) throw invalid_request(key + ": expected true or false, got " + std::string(type_name(value)));
      r.exclude_history = value.get<bool>();
    } else {
      throw invalid_request(key + ": unknown field (expected user, history, comment_history, video, k, exclude_history)");
    }
  }
  if (r.video.empty()) throw invalid_request("video: required field is missing (the video whose comments are ranked)");
  if (r.user.empty() == (r.history.empty() && r.comment_history.empty()))
    throw invalid_request("body: give exactly one of \"user\" (a user id) or \"history\" / \"comment_history\" "
                          "(video and comment ids, oldest first; not both empty)");
  return r;
}

std::string parse_reload_request(const std::string& body) {
  const json j = parse_body(body);
  if (!j.is_object()) throw invalid_request("body: expected a JSON object {\"checkpoint\": \"path\"}, got " + std::string(type_name(j)));
  std::string checkpoint;
  for (const auto& [key, value] : j.items()) {
    if (key != "checkpoint") throw invalid_request(key + ": unknown field (expected checkpoint)");
    if (!value.is_string() || value.get_ref<const std::string&>().empty())
      throw invalid_request("checkpoint: expected a non-empty path string, got " + value.dump());
    checkpoint = value.get<std::string>();
  }
  return checkpoint;
}

std::string encode_result(const RecommendResult& result) {
  json j = result_json(result);
  j["model_version"] = result.model_version;
  return j.dump();
}

std::string encode_batch_result(const std::vector<RecommendResult>& results) {
  json list = json::array();
  int64_t version = 0;
  for (const RecommendResult& r : results) {
    list.push_back(result_json(r));
    version = std::max(version, r.model_version);
  }
  return json{{"results", std::move(list)}, {"model_version", version}}.dump();
}

std::string encode_error(int status, const std::string& type, const std::string& message) {
  // Messages may quote client bytes that are not UTF-8: replace them rather than fail to encode.
  return json{{"error", {{"code", status}, {"type", type}, {"message", message}}}}.dump(-1, ' ', false,
                                                                                       json::error_handler_t::replace);
}

std::string encode_object(const std::vector<std::pair<std::string, std::string>>& string_fields,
                          const std::vector<std::pair<std::string, std::string>>& raw_fields) {
  json j = json::object();
  for (const auto& [key, value] : string_fields) j[key] = value;
  for (const auto& [key, value] : raw_fields) j[key] = json::parse(value);
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace seqrec::serve
