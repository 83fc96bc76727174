// libFuzzer target: the serving API's request bodies (POST /v1/recommend, /v1/recommend/batch,
// /v1/comments, /admin/reload). The first input byte picks the endpoint; the rest is the body. ApiError (a
// RequestError) is expected; anything else is a finding, as is an accepted request outside the
// documented limits.
#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "fuzz_support.h"
#include "seqrec/serve/json_codec.h"

namespace {

void check(const seqrec::serve::RecommendRequest& r, const seqrec::serve::RequestLimits& limits) {
  if (r.k < 1 || r.k > limits.max_k) seqrec::fuzz::finding("accepted k " + std::to_string(r.k));
  if (r.user.empty() == r.history.empty()) seqrec::fuzz::finding("accepted both or neither of user and history");
  if (static_cast<int64_t>(r.history.size()) > limits.max_history) seqrec::fuzz::finding("history over the limit");
  if (static_cast<int64_t>(r.allow.size()) > limits.max_list || static_cast<int64_t>(r.deny.size()) > limits.max_list) {
    seqrec::fuzz::finding("allow/deny over the limit");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  seqrec::serve::RequestLimits limits;
  limits.max_k = 50;
  limits.max_history = 20;
  limits.max_list = 8;
  limits.max_batch_requests = 4;
  const std::string body(reinterpret_cast<const char*>(data) + 1, size - 1);
  seqrec::fuzz::expect_ok_or_error([&] {
    switch (data[0] % 4) {
      case 0: {
        const auto r = seqrec::serve::parse_recommend_request(body, limits);
        check(r, limits);
        break;
      }
      case 1: {
        const auto rs = seqrec::serve::parse_batch_request(body, limits);
        if (rs.empty() || static_cast<int64_t>(rs.size()) > limits.max_batch_requests) {
          seqrec::fuzz::finding("batch size " + std::to_string(rs.size()));
        }
        for (const auto& r : rs) check(r, limits);
        break;
      }
      case 2: {
        const auto c = seqrec::serve::parse_comments_request(body, limits);
        if (c.k < 1 || c.k > limits.max_k) seqrec::fuzz::finding("accepted k " + std::to_string(c.k));
        if (c.video.empty()) seqrec::fuzz::finding("accepted a comment request without a video");
        if (c.user.empty() == (c.history.empty() && c.comment_history.empty()))
          seqrec::fuzz::finding("accepted both or neither of user and histories");
        if (static_cast<int64_t>(std::max(c.history.size(), c.comment_history.size())) > limits.max_history)
          seqrec::fuzz::finding("comment request history over the limit");
        break;
      }
      default:
        seqrec::serve::parse_reload_request(body);
    }
  });
  return 0;
}
