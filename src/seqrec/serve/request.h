// The value types of the serving API, free of JSON and HTTP: what a client asks (external ids) and
// what it gets back, and the one error type every layer throws for a request it must refuse.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "seqrec/common/error.h"

namespace seqrec::serve {

/// One recommendation request, with the client's (external, prepare-time raw) ids.
struct RecommendRequest {
  std::string user;                  ///< raw user id: recommend after the user's whole history ("" = use `history`)
  std::vector<std::string> history;  ///< raw item ids, oldest first (when `user` is "")
  int64_t k = 10;                    ///< items wanted
  bool exclude_history = true;       ///< never return an item of the history (as `seqrec recommend`)
  std::vector<std::string> allow;    ///< only these items (empty = every item)
  std::vector<std::string> deny;     ///< never these items
  std::string field;                 ///< where the request sits in the body ("" or "requests[3]"), for messages
};

/// One comment-ranking request (LSVCR): the user's histories and the video being watched.
struct CommentRequest {
  std::string user;                          ///< raw user id: both of the user's histories ("" = the two below)
  std::vector<std::string> history;          ///< raw video ids, oldest first
  std::vector<std::string> comment_history;  ///< raw comment ids, oldest first
  std::string video;                         ///< raw id of the video whose comment section is ranked
  int64_t k = 10;                            ///< comments wanted
  bool exclude_history = true;               ///< never return a comment of the user's comment history
};

/// One recommended item.
struct ScoredItem {
  std::string id;  ///< raw item id
  float score = 0; ///< the model's score (dot product of user state and item embedding)
};

/// The answer to one request.
struct RecommendResult {
  std::vector<ScoredItem> items;  ///< best first; fewer than k when the allowed catalogue is smaller
  int64_t model_version = 0;      ///< the model that answered (1 at start, +1 per reload)
};

/// A request the server refuses: HTTP status, a short type and a message naming the field.
class ApiError : public RequestError {
 public:
  ApiError(int status, std::string type, const std::string& message)
      : RequestError(message), status_(status), type_(std::move(type)) {}
  int status() const { return status_; }
  const std::string& type() const { return type_; }

 private:
  int status_;
  std::string type_;
};

/// 400 invalid_request: a malformed or out-of-limit field.
inline ApiError invalid_request(const std::string& message) { return ApiError(400, "invalid_request", message); }
/// 404 not_found: an unknown user or item id.
inline ApiError not_found(const std::string& message) { return ApiError(404, "not_found", message); }

}  // namespace seqrec::serve
