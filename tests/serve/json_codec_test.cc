// The request codec: what it accepts, and a 400 naming the field for everything else.
#include "seqrec/serve/json_codec.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "support.h"

namespace {

using namespace seqrec::serve;

const RequestLimits kLimits{100, 5, 3, 2};

void expect_invalid(const std::string& body, const std::string& sub) {
  try {
    parse_recommend_request(body, kLimits);
    ADD_FAILURE() << body << ": expected a 400 containing '" << sub << "'";
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status(), 400) << body;
    EXPECT_EQ(e.type(), "invalid_request");
    EXPECT_NE(std::string(e.what()).find(sub), std::string::npos) << body << " -> " << e.what();
  }
}

TEST(JsonCodecTest, ParsesEveryField) {
  const RecommendRequest r = parse_recommend_request(
      R"({"history": ["a", 12, "c"], "k": 7, "exclude_history": false, "allow": ["x", 3], "deny": []})", kLimits);
  EXPECT_EQ(r.user, "");
  EXPECT_EQ(r.history, (std::vector<std::string>{"a", "12", "c"}));
  EXPECT_EQ(r.k, 7);
  EXPECT_FALSE(r.exclude_history);
  EXPECT_EQ(r.allow, (std::vector<std::string>{"x", "3"}));
  EXPECT_TRUE(r.deny.empty());
  const RecommendRequest u = parse_recommend_request(R"({"user": "u9"})", kLimits);
  EXPECT_EQ(u.user, "u9");
  EXPECT_EQ(u.k, 10);
  EXPECT_TRUE(u.exclude_history);
  EXPECT_EQ(parse_recommend_request(R"({"user": 5, "k": 3.0})", kLimits).k, 3);
}

TEST(JsonCodecTest, RefusesMalformedBodiesNamingTheField) {
  expect_invalid("", "body: empty");
  expect_invalid("{\"user\": ", "body: malformed JSON");
  expect_invalid("[1, 2]", "body: expected a JSON object, got array");
  expect_invalid(R"({"k": 3})", "give exactly one of \"user\"");
  expect_invalid(R"({"user": "a", "history": ["b"]})", "give exactly one of");
  expect_invalid(R"({"history": []})", "history: must not be empty");
  expect_invalid(R"({"history": "abc"})", "history: expected an array of ids, got string");
  expect_invalid(R"({"history": ["a", "b", "c", "d", "e", "f"]})", "history: 6 ids, more than the limit of 5");
  expect_invalid(R"({"history": ["a", null]})", "history[1]: an id must be a string or a non-negative integer, got null");
  expect_invalid(R"({"history": ["a", -4]})", "history[1]: an id must be a string or a non-negative integer, got -4");
  expect_invalid(R"({"history": [""]})", "history[0]: an id must not be empty");
  expect_invalid(R"({"user": true})", "user: an id must be a string");
  expect_invalid(R"({"user": "u", "k": 0})", "k: must be an integer in [1, 100], got 0");
  expect_invalid(R"({"user": "u", "k": -3})", "k: must be an integer in [1, 100], got -3");
  expect_invalid(R"({"user": "u", "k": 101})", "got 101");
  expect_invalid(R"({"user": "u", "k": 18446744073709551615})", "got 18446744073709551615");
  expect_invalid(R"({"user": "u", "k": 1e300})", "k: must be an integer");
  expect_invalid(R"({"user": "u", "k": 2.5})", "got 2.5");
  expect_invalid(R"({"user": "u", "k": "10"})", "k: must be an integer in [1, 100], got string");
  expect_invalid(R"({"user": "u", "exclude_history": 1})", "exclude_history: expected true or false, got number");
  expect_invalid(R"({"user": "u", "allow": []})", "allow: must not be empty");
  expect_invalid(R"({"user": "u", "deny": ["a", "b", "c", "d"]})", "deny: 4 ids, more than the limit of 3");
  expect_invalid(R"({"user": "u", "top_k": 3})", "top_k: unknown field");
}

// POST /v1/comments (LSVCR): the user or the histories, a required video.
TEST(JsonCodecTest, CommentRequestsNeedAVideoAndOneKindOfHistory) {
  const CommentRequest r = parse_comments_request(
      R"({"history": ["v1", 2], "comment_history": ["c3"], "video": "v9", "k": 4, "exclude_history": false})", kLimits);
  EXPECT_EQ(r.history, (std::vector<std::string>{"v1", "2"}));
  EXPECT_EQ(r.comment_history, (std::vector<std::string>{"c3"}));
  EXPECT_EQ(r.video, "v9");
  EXPECT_EQ(r.k, 4);
  EXPECT_FALSE(r.exclude_history);
  EXPECT_EQ(parse_comments_request(R"({"comment_history": ["c1"], "video": 7})", kLimits).video, "7");
  EXPECT_EQ(parse_comments_request(R"({"user": "u1", "video": "v"})", kLimits).k, 10);
  for (const auto& [body, sub] : std::vector<std::pair<std::string, std::string>>{
           {R"({"user": "u1"})", "video: required field is missing"},
           {R"({"video": "v"})", "give exactly one of \"user\""},
           {R"({"user": "u1", "history": ["v2"], "video": "v"})", "give exactly one of"},
           {R"({"user": "u1", "video": "v", "allow": ["c1"]})", "allow: unknown field"},
           {R"({"user": "u1", "video": "v", "k": 0})", "k: must be an integer in [1, 100], got 0"},
           {R"({"comment_history": ["a", "b", "c", "d", "e", "f"], "video": "v"})", "6 ids, more than the limit of 5"}}) {
    try {
      parse_comments_request(body, kLimits);
      ADD_FAILURE() << body;
    } catch (const ApiError& e) {
      EXPECT_EQ(e.status(), 400);
      EXPECT_NE(std::string(e.what()).find(sub), std::string::npos) << body << " -> " << e.what();
    }
  }
}

// Found by fuzz/fuzz_request_json: nlohmann's out_of_range (406) for a number that overflows a
// double escaped parse_body, which caught parse_error only.
TEST(JsonCodecTest, NumberOverflowIsAMalformedBody) {
  expect_invalid("99e9999}", "body: malformed JSON");
  expect_invalid(R"({"user": "u", "k": 1e99999})", "body: malformed JSON");
  ASSERT_THROWS_WITH(parse_reload_request("{\"checkpoint\": -1e400}"), "body: malformed JSON");
}

TEST(JsonCodecTest, BatchRequestsNameTheirIndex) {
  const auto batch = parse_batch_request(R"({"requests": [{"user": "a"}, {"history": ["b"], "k": 2}]})", kLimits);
  ASSERT_EQ(batch.size(), 2u);
  EXPECT_EQ(batch[1].field, "requests[1]");
  EXPECT_EQ(batch[1].k, 2);
  ASSERT_THROWS_WITH(parse_batch_request(R"({"requests": [{"user": "a"}, {"user": "b", "k": 0}]})", kLimits), "requests[1].k: must be");
  ASSERT_THROWS_WITH(parse_batch_request(R"({"requests": []})", kLimits), "requests: must hold 1 to 2 requests, got 0");
  ASSERT_THROWS_WITH(parse_batch_request(R"({"requests": [{}, {}, {}]})", kLimits), "got 3");
  ASSERT_THROWS_WITH(parse_batch_request(R"({"requests": {}})", kLimits), "requests: expected an array, got object");
  ASSERT_THROWS_WITH(parse_batch_request(R"({})", kLimits), "requests: required field is missing");
  ASSERT_THROWS_WITH(parse_batch_request(R"({"requests": [5]})", kLimits), "requests[0]: expected a JSON object, got number");
}

TEST(JsonCodecTest, EncodesResultsAndErrors) {
  RecommendResult r;
  r.items = {{"i3", 1.5f}, {"i\"7", -0.25f}};
  r.model_version = 4;
  const auto j = nlohmann::json::parse(encode_result(r));
  EXPECT_EQ(j.at("model_version"), 4);
  ASSERT_EQ(j.at("items").size(), 2u);
  EXPECT_EQ(j.at("items")[1].at("id"), "i\"7");
  EXPECT_DOUBLE_EQ(j.at("items")[0].at("score").get<double>(), 1.5);
  const auto e = nlohmann::json::parse(encode_error(400, "invalid_request", "k: bad \xff byte"));
  EXPECT_EQ(e.at("error").at("code"), 400);
  EXPECT_EQ(e.at("error").at("type"), "invalid_request");
  EXPECT_EQ(e.at("error").at("message").get<std::string>().rfind("k: bad ", 0), 0u);
  EXPECT_EQ(parse_reload_request(R"({"checkpoint": "a/b.safetensors"})"), "a/b.safetensors");
  ASSERT_THROWS_WITH(parse_reload_request(R"({"path": "x"})"), "path: unknown field");
}

}  // namespace
