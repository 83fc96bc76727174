// The only place that converts between JSON bodies and the serving types, validating every field:
// a request that is not exactly what the API documents is refused with ApiError (400) naming the
// field ("requests[2].k: must be an integer in [1, 1000], got -3").
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "seqrec/serve/request.h"

namespace seqrec::serve {

/// Limits a request must respect (from ServeOptions).
struct RequestLimits {
  int64_t max_k = 1000;
  int64_t max_history = 10000;
  int64_t max_list = 10000;
  int64_t max_batch_requests = 256;
};

/// Parses the body of POST /v1/recommend: {"user": "u1"} or {"history": ["i1", ...]}, optional "k"
/// (default 10), "exclude_history" (default true), "allow", "deny". Ids are strings or non-negative
/// integers. Unknown keys, wrong types, both or neither of user/history, an empty or too long
/// history, k outside [1, max_k] throw ApiError 400.
RecommendRequest parse_recommend_request(const std::string& body, const RequestLimits& limits);

/// Parses the body of POST /v1/recommend/batch: {"requests": [<request>, ...]} (1..max_batch_requests).
std::vector<RecommendRequest> parse_batch_request(const std::string& body, const RequestLimits& limits);

/// Parses the body of POST /v1/comments (LSVCR): {"user": "u1"} or {"history": [...]} and/or
/// {"comment_history": [...]}, a required "video", optional "k" and "exclude_history".
CommentRequest parse_comments_request(const std::string& body, const RequestLimits& limits);

/// Parses the optional body of POST /admin/reload: {"checkpoint": "path"} ("" when absent).
std::string parse_reload_request(const std::string& body);

/// {"items": [{"id": "..", "score": ..}, ...], "model_version": N}
std::string encode_result(const RecommendResult& result);
/// {"results": [<result>, ...], "model_version": N}
std::string encode_batch_result(const std::vector<RecommendResult>& results);
/// {"error": {"code": status, "type": type, "message": message}}
std::string encode_error(int status, const std::string& type, const std::string& message);
/// A JSON object of string fields (GET /v1/items/{id}, /healthz, /admin/reload): values are JSON
/// text already (numbers, quoted strings, objects) when `raw` is true for them.
std::string encode_object(const std::vector<std::pair<std::string, std::string>>& string_fields,
                          const std::vector<std::pair<std::string, std::string>>& raw_fields = {});

}  // namespace seqrec::serve
