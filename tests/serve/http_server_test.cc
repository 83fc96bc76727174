// seqrec serve over HTTP: a server in-process on an ephemeral loopback port, talked to with
// httplib's client (and a raw socket for the stalled client).
#include "seqrec/serve/http_server.h"

#include <algorithm>
#include <cmath>
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <nlohmann/json.hpp>
#include <sys/socket.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>

#include <atomic>
#include <chrono>
#include <random>
#include <thread>

#include "cli/cli_support.h"
#include "serve/http_support.h"
#include "serve/serve_support.h"

namespace {

using namespace seqrec;
using namespace seqrec::testing::serve;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

seqrec::serve::ServeOptions small_options() {
  seqrec::serve::ServeOptions o;
  o.threads = 4;
  o.max_wait_us = 200;
  o.read_timeout_ms = 500;
  o.max_body_bytes = 256 * 1024;
  return o;
}

class HttpServerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    torch::set_num_threads(1);
    server_ = new RunningServer(small_options());
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  static json post(const std::string& path, const std::string& body, int expect_status) {
    auto c = server_->client();
    auto r = c.Post(path.c_str(), body, "application/json");
    EXPECT_TRUE(r) << path << " " << body << ": no response (" << httplib::to_string(r.error()) << ")";
    if (!r) return json();
    EXPECT_EQ(r->status, expect_status) << path << " " << body << " -> " << r->body;
    return json::parse(r->body, nullptr, false);
  }
  static std::string user(int64_t u) { return server_->service().data().users.raw_id(u); }
  static std::string item(int64_t i) { return server_->service().data().catalog.raw_id(i); }
  static RunningServer* server_;
};

RunningServer* HttpServerTest::server_ = nullptr;

// (item id, score) lines of `seqrec recommend`'s output.
std::vector<std::pair<std::string, double>> recommend_cli(const std::string& args) {
  seqrec::testing::TempDir tmp;
  const auto r = seqrec::testing::cli::run_seqrec("recommend --checkpoint " + ServeData::get().sasrec() + " --data " +
                                                      ServeData::get().dir() + " " + args,
                                                  tmp);
  EXPECT_EQ(r.code, 0) << r.err;
  std::vector<std::pair<std::string, double>> out;
  const auto lines = seqrec::testing::cli::lines_of(r.out);
  for (size_t i = 1; i < lines.size(); ++i) {
    const auto f = seqrec::testing::cli::split_tabs(lines[i]);
    out.emplace_back(f.at(1), std::stod(f.at(2)));
  }
  return out;
}

void expect_same_as_cli(const json& body, const std::vector<std::pair<std::string, double>>& cli) {
  ASSERT_TRUE(body.contains("items")) << body.dump();
  ASSERT_EQ(body.at("items").size(), cli.size()) << body.dump();
  for (size_t i = 0; i < cli.size(); ++i) {
    EXPECT_EQ(body["items"][i].at("id").get<std::string>(), cli[i].first) << i;
    EXPECT_NEAR(body["items"][i].at("score").get<double>(), cli[i].second, 6e-5) << i;  // the CLI prints 4 decimals
  }
}

TEST_F(HttpServerTest, AnswersEqualSeqrecRecommend) {
  expect_same_as_cli(post("/v1/recommend", json{{"user", user(17)}, {"k", 5}}.dump(), 200), recommend_cli("--user " + user(17) + " --k 5"));
  const std::vector<std::string> history = {item(4), item(9), item(33)};
  expect_same_as_cli(post("/v1/recommend", json{{"history", history}, {"k", 8}}.dump(), 200),
                     recommend_cli("--history " + history[0] + "," + history[1] + "," + history[2] + " --k 8"));
}

TEST_F(HttpServerTest, BatchRouteAnswersEachRequestAsTheSingleRoute) {
  json requests = json::array();
  for (int u : {1, 50, 120}) requests.push_back({{"user", user(u)}, {"k", 4}});
  requests.push_back({{"history", {item(2), item(3)}}, {"deny", {item(5)}}});
  const json batch = post("/v1/recommend/batch", json{{"requests", requests}}.dump(), 200);
  ASSERT_EQ(batch.at("results").size(), 4u) << batch.dump();
  EXPECT_EQ(batch.at("model_version"), 1);
  // The same items in the same order, the same scores up to float rounding: the batch scores its
  // queries in one GEMM, the single route in a GEMV, and BLAS kernels may round them apart in the
  // last bit (seen on an AMD EPYC: 1.3144358 vs 1.3144360).
  for (size_t i = 0; i < requests.size(); ++i) {
    const json one = post("/v1/recommend", requests[i].dump(), 200);
    const json& many = batch["results"][i]["items"];
    ASSERT_EQ(many.size(), one["items"].size()) << i;
    for (size_t j = 0; j < many.size(); ++j) {
      EXPECT_EQ(many[j].at("id"), one["items"][j].at("id")) << i << " " << j;
      const double a = many[j].at("score").get<double>(), b = one["items"][j].at("score").get<double>();
      EXPECT_NEAR(a, b, 1e-6 * std::max(1.0, std::abs(b))) << i << " " << j;
    }
  }
}

TEST_F(HttpServerTest, ItemsHealthAndMetrics) {
  auto c = server_->client();
  auto it = c.Get(("/v1/items/" + item(3)).c_str());
  ASSERT_TRUE(it);
  EXPECT_EQ(it->status, 200);
  const json j = json::parse(it->body);
  EXPECT_EQ(j.at("id"), item(3));
  EXPECT_EQ(j.at("index"), 3);
  EXPECT_EQ(j.at("title"), server_->service().data().catalog.title(3));
  auto h = c.Get("/healthz");
  ASSERT_TRUE(h);
  const json health = json::parse(h->body);
  EXPECT_EQ(health.at("status"), "ok");
  EXPECT_EQ(health.at("items"), 80);
  EXPECT_EQ(health.at("index"), "exact");
  post("/v1/recommend", json{{"user", user(2)}}.dump(), 200);
  // cpp-httplib calls the logger, which counts the request, after the response is written: the
  // count may land a moment after the client has its answer (seen under load), so poll briefly.
  const std::string counted = "seqrec_requests_total{route=\"/v1/recommend\",status=\"200\"}";
  auto m = c.Get("/metrics");
  for (int tries = 0; m && m->body.find(counted) == std::string::npos && tries < 100; ++tries) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    m = c.Get("/metrics");
  }
  ASSERT_TRUE(m);
  EXPECT_EQ(m->get_header_value("Content-Type").rfind("text/plain", 0), 0u);
  for (const char* line : {"seqrec_requests_total{route=\"/v1/recommend\",status=\"200\"}", "seqrec_request_duration_seconds_bucket{le=\"+Inf\"}",
                           "seqrec_batch_size_count", "seqrec_model_version 1", "seqrec_model_info{checkpoint=\""})
    EXPECT_NE(m->body.find(line), std::string::npos) << line << "\n" << m->body;
}

TEST_F(HttpServerTest, BadRequestsGet4xxWithAMessageNamingTheField) {
  struct Case {
    std::string body;
    int status;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"{\"user\": ", 400, "body: malformed JSON"},
      {"not json at all", 400, "body: malformed JSON"},
      {"", 400, "body: empty"},
      {json{{"user", 12.5}}.dump(), 400, "user: an id must be a string"},
      {json{{"history", "i1"}}.dump(), 400, "history: expected an array of ids, got string"},
      {json{{"user", user(0)}, {"k", -1}}.dump(), 400, "k: must be an integer in [1, 1000], got -1"},
      {json{{"user", user(0)}, {"k", 0}}.dump(), 400, "k: must be an integer in [1, 1000], got 0"},
      {json{{"user", user(0)}, {"k", 1000000000000LL}}.dump(), 400, "got 1000000000000"},
      {json{{"user", user(0)}, {"k", "5"}}.dump(), 400, "k: must be an integer"},
      {json{{"history", json::array()}}.dump(), 400, "history: must not be empty"},
      {json{{"user", "no-such-user"}}.dump(), 404, "user: unknown user id 'no-such-user'"},
      {json{{"history", {item(1), "no-such-item"}}}.dump(), 404, "history[1]: unknown item id 'no-such-item'"},
      {json{{"user", user(0)}, {"colour", "red"}}.dump(), 400, "colour: unknown field"},
      {json{{"user", user(0)}, {"history", {item(1)}}}.dump(), 400, "give exactly one of"},
  };
  for (const Case& c : cases) {
    const json j = post("/v1/recommend", c.body, c.status);
    ASSERT_TRUE(j.contains("error")) << c.body << " -> " << j.dump();
    EXPECT_EQ(j["error"].at("code"), c.status);
    EXPECT_NE(j["error"].at("message").get<std::string>().find(c.message), std::string::npos) << c.body << " -> " << j.dump();
  }
  std::vector<std::string> long_history(10001, item(1));
  const json too_long = post("/v1/recommend", json{{"history", long_history}}.dump(), 400);
  EXPECT_NE(too_long["error"].at("message").get<std::string>().find("history: 10001 ids, more than the limit of 10000"), std::string::npos)
      << too_long.dump().substr(0, 300);
  const json ten_mb = post("/v1/recommend", std::string(10 << 20, 'x'), 413);
  EXPECT_NE(ten_mb["error"].at("message").get<std::string>().find("larger than the server's limit"), std::string::npos);
  const json batch = post("/v1/recommend/batch", json{{"requests", {{{"user", user(0)}}, {{"user", user(0)}, {"k", 0}}}}}.dump(), 400);
  EXPECT_NE(batch["error"].at("message").get<std::string>().find("requests[1].k"), std::string::npos) << batch.dump();
  auto c = server_->client();
  auto g = c.Get("/v1/recommend");
  ASSERT_TRUE(g);
  EXPECT_EQ(g->status, 405);
  auto unknown_route = c.Get("/v2/anything");
  ASSERT_TRUE(unknown_route);
  EXPECT_EQ(unknown_route->status, 404);
  EXPECT_NE(unknown_route->body.find("no route GET /v2/anything"), std::string::npos);
  auto unknown_item = c.Get("/v1/items/nope");
  ASSERT_TRUE(unknown_item);
  EXPECT_EQ(unknown_item->status, 404);
  EXPECT_NE(unknown_item->body.find("unknown item id 'nope'"), std::string::npos);
  // Comment ranking is LSVCR's: a SASRec server says so.
  const json comments = post("/v1/comments", json{{"user", user(0)}, {"video", item(1)}}.dump(), 400);
  EXPECT_NE(comments["error"].at("message").get<std::string>().find("ranks no comments (LSVCR checkpoints do"),
            std::string::npos) << comments.dump();
  // The server is still healthy.
  post("/v1/recommend", json{{"user", user(0)}}.dump(), 200);
}

// A client that sends half a request and stalls is dropped after the read timeout; the only
// connection thread then serves the next client.
TEST(HttpServerStallTest, AStalledHalfRequestDoesNotHoldAWorker) {
  seqrec::serve::ServeOptions o = small_options();
  o.threads = 1;
  o.read_timeout_ms = 300;
  RunningServer server(o);
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(server.port()));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  const std::string half = "POST /v1/recommend HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"hist";
  ASSERT_EQ(::send(fd, half.data(), half.size(), 0), static_cast<ssize_t>(half.size()));
  const auto start = Clock::now();
  char buf[4096];
  timeval tv{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  while (::recv(fd, buf, sizeof buf, 0) > 0) {
  }  // whatever the server says, it must close the connection
  const double held = std::chrono::duration<double>(Clock::now() - start).count();
  ::close(fd);
  EXPECT_LT(held, 2.0) << "the stalled connection was held " << held << "s (read timeout 0.3s)";
  auto c = server.client();
  auto r = c.Post("/v1/recommend", json{{"user", server.service().data().users.raw_id(0)}}.dump(), "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
}

// Thousands of random bodies (bytes, mutated requests, random JSON): every answer is a 2xx or
// 4xx, never a crash or a 5xx, and the server stays healthy.
TEST_F(HttpServerTest, RandomBodiesNeverCrashTheServer) {
  std::mt19937 rng(7);
  const std::vector<std::string> seeds = {json{{"user", user(3)}, {"k", 5}}.dump(),
                                          json{{"history", {item(1), item(2)}}, {"deny", {item(3)}}, {"allow", {item(4), item(5)}}}.dump(),
                                          json{{"requests", {{{"user", user(1)}}}}}.dump()};
  const std::string alphabet = "{}[]\":,0123456789-.eE truefalsnul\\\x01\xff" "abuserhistoykdnalw";
  auto c = server_->client();
  int failures = 0, ok = 0;
  for (int i = 0; i < 3000; ++i) {
    std::string body;
    const int kind = i % 3;
    if (kind == 0) {
      body.resize(rng() % 200);
      for (char& ch : body) ch = static_cast<char>(rng() % 256);
    } else if (kind == 1) {
      body = seeds[rng() % seeds.size()];
      for (int m = 1 + rng() % 4; m > 0 && !body.empty(); --m) {
        const size_t at = rng() % body.size();
        switch (rng() % 3) {
          case 0: body[at] = alphabet[rng() % alphabet.size()]; break;
          case 1: body.erase(at, 1 + rng() % 3); break;
          default: body.insert(at, 1, alphabet[rng() % alphabet.size()]);
        }
      }
    } else {
      for (int n = 1 + rng() % 30; n > 0; --n) body += alphabet[rng() % alphabet.size()];
    }
    const char* path = (i % 5 == 4) ? "/v1/recommend/batch" : "/v1/recommend";
    auto r = c.Post(path, body, "application/json");
    if (!r || r->status >= 500 || r->status < 200 || (r->status >= 400 && r->body.find("\"error\"") == std::string::npos)) {
      ++failures;
      if (failures < 5) ADD_FAILURE() << "body " << json(body).dump(-1, ' ', false, json::error_handler_t::replace) << " -> "
                                      << (r ? std::to_string(r->status) + " " + r->body : "no response");
    }
    ok += r && r->status == 200;
  }
  EXPECT_EQ(failures, 0);
  EXPECT_GT(ok, 0) << "some mutations are still valid requests";
  auto h = c.Get("/healthz");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->status, 200);
}

// Reloads while clients keep asking: no request fails, and answers move to the new versions.
TEST(HttpServerReloadTest, ReloadUnderConcurrentRequestsFailsNone) {
  RunningServer server(small_options());
  const std::string body = json{{"user", server.service().data().users.raw_id(9)}, {"k", 5}}.dump();
  std::atomic<bool> done{false};
  std::atomic<int> failed{0}, answered{0};
  std::atomic<int64_t> newest{0};
  std::vector<std::thread> clients;
  for (int t = 0; t < 4; ++t)
    clients.emplace_back([&] {
      auto c = server.client();
      while (!done) {
        auto r = c.Post("/v1/recommend", body, "application/json");
        if (!r || r->status != 200) {
          ++failed;
          continue;
        }
        ++answered;
        const int64_t v = json::parse(r->body).at("model_version").get<int64_t>();
        int64_t seen = newest.load();
        while (v > seen && !newest.compare_exchange_weak(seen, v)) {
        }
      }
    });
  auto admin = server.client();
  const std::vector<std::string> checkpoints = {ServeData::get().sasrec_other(), ServeData::get().sasrec(), ServeData::get().sasrec_other()};
  for (const std::string& ckpt : checkpoints) {
    std::this_thread::sleep_for(std::chrono::milliseconds(150));
    auto r = admin.Post("/admin/reload", json{{"checkpoint", ckpt}}.dump(), "application/json");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200) << r->body;
  }
  auto bad = admin.Post("/admin/reload", json{{"checkpoint", "/nonexistent/x.safetensors"}}.dump(), "application/json");
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->status, 500);
  EXPECT_NE(bad->body.find("version 4"), std::string::npos) << bad->body;
  EXPECT_NE(bad->body.find("keeps serving"), std::string::npos) << bad->body;
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  done = true;
  for (auto& t : clients) t.join();
  EXPECT_EQ(failed.load(), 0);
  EXPECT_GT(answered.load(), 20);
  EXPECT_EQ(newest.load(), 4);
  auto m = admin.Get("/metrics");
  ASSERT_TRUE(m);
  EXPECT_NE(m->body.find("seqrec_model_version 4"), std::string::npos);
  EXPECT_NE(m->body.find("seqrec_reload_failures_total 1"), std::string::npos);
}

TEST(HttpServerAuthTest, BearerTokenGuardsAllRoutesOrAdminOnly) {
  seqrec::serve::ServeOptions o = small_options();
  const std::string body = json{{"history", {ServeData::get().first_item()}}}.dump();
  {
    RunningServer server(o, "s3cret");
    auto c = server.client();
    auto no = c.Post("/v1/recommend", body, "application/json");
    ASSERT_TRUE(no);
    EXPECT_EQ(no->status, 401);
    EXPECT_NE(no->body.find("bearer token"), std::string::npos);
    auto wrong = c.Get("/healthz", {{"Authorization", "Bearer s3cre7"}});
    ASSERT_TRUE(wrong);
    EXPECT_EQ(wrong->status, 401);
    c.set_bearer_token_auth("s3cret");
    auto yes = c.Post("/v1/recommend", body, "application/json");
    ASSERT_TRUE(yes);
    EXPECT_EQ(yes->status, 200) << yes->body;
  }
  o.auth = "admin";
  RunningServer server(o, "s3cret");
  auto c = server.client();
  auto open = c.Post("/v1/recommend", body, "application/json");
  ASSERT_TRUE(open);
  EXPECT_EQ(open->status, 200);
  auto admin = c.Post("/admin/reload", "", "application/json");
  ASSERT_TRUE(admin);
  EXPECT_EQ(admin->status, 401);
}

// stop() lets a request already in the server finish: it waits in the batcher (max_wait 300 ms)
// when the server is told to stop, and still gets its answer.
TEST(HttpServerStopTest, StopFinishesInFlightRequests) {
  seqrec::serve::ServeOptions o = small_options();
  o.max_wait_us = 300000;
  RunningServer server(o);
  std::atomic<int> status{0};
  std::thread client([&] {
    auto c = server.client();
    auto r = c.Post("/v1/recommend", json{{"history", {ServeData::get().first_item()}}}.dump(), "application/json");
    status = r ? r->status : -1;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  server.stop();
  client.join();
  EXPECT_EQ(status.load(), 200);
  auto c = server.client();
  c.set_connection_timeout(0, 200000);
  EXPECT_FALSE(c.Get("/healthz")) << "a stopped server accepts no more connections";
}

}  // namespace

namespace {

// The binary: prints the bound port as a JSON line, reloads on SIGHUP, exits 0 on SIGTERM.
TEST(ServeCliTest, PrintsThePortReloadsOnSighupAndExitsOnSigterm) {
  const std::string ckpt = ServeData::get().sasrec(), dir = ServeData::get().dir();
  const std::string err = ServeData::get().temp().file("serve_cli.stderr");
  int out[2];
  ASSERT_EQ(::pipe(out), 0);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::dup2(out[1], 1);
    const int e = ::open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(e, 2);
    ::setenv("OMP_NUM_THREADS", "1", 1);
    ::execl(SEQREC_BINARY, "seqrec", "serve", "--checkpoint", ckpt.c_str(), "--data", dir.c_str(), "--port", "0",
            "--threads", "2", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ::close(out[1]);
  std::string line;
  pollfd p{out[0], POLLIN, 0};
  char ch = 0;
  while (line.find('\n') == std::string::npos && ::poll(&p, 1, 30000) > 0 && ::read(out[0], &ch, 1) == 1) line += ch;
  const json started = json::parse(line, nullptr, false);
  ASSERT_TRUE(started.contains("port")) << "stdout: " << line << "\nstderr: " << seqrec::testing::cli::slurp(err);
  EXPECT_EQ(started.at("host"), "127.0.0.1");
  httplib::Client c("127.0.0.1", started.at("port").get<int>());
  auto version = [&] {
    auto r = c.Get("/healthz");
    return r && r->status == 200 ? json::parse(r->body).at("model_version").get<int64_t>() : -1;
  };
  EXPECT_EQ(version(), 1);
  ::kill(pid, SIGHUP);
  int64_t v = -1;
  for (int i = 0; i < 300 && (v = version()) != 2; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_EQ(v, 2) << seqrec::testing::cli::slurp(err);
  ::kill(pid, SIGTERM);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ::close(out[0]);
  ASSERT_TRUE(WIFEXITED(status)) << seqrec::testing::cli::slurp(err);
  EXPECT_EQ(WEXITSTATUS(status), 0) << seqrec::testing::cli::slurp(err);
  EXPECT_NE(seqrec::testing::cli::slurp(err).find("SIGTERM: finishing in-flight requests"), std::string::npos);
}

}  // namespace
