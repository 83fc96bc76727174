// cpp-httplib server: routing, auth, limits, request log and metrics around the service.
#include "seqrec/serve/http_server.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <chrono>
#include <thread>

#include "seqrec/common/error.h"
#include "seqrec/common/log.h"
#include "seqrec/serve/json_codec.h"
#include "seqrec/serve/metrics.h"
#include "seqrec/serve/micro_batcher.h"

namespace seqrec::serve {
namespace {

using Clock = std::chrono::steady_clock;

// When the request now handled by this thread was read (set before routing, read by the logger).
thread_local Clock::time_point t_request_start;
thread_local bool t_request_timed = false;
// The connection of the request now handled by this thread is to be dropped once answered.
thread_local bool t_drop_connection = false;

// The metrics label of a path: the route pattern, so that ids do not blow up the label set.
std::string route_of(const std::string& path) {
  for (const char* r : {"/v1/recommend/batch", "/v1/recommend", "/v1/comments", "/healthz", "/metrics", "/admin/reload"})
    if (path == r) return r;
  if (path.rfind("/v1/items/", 0) == 0) return "/v1/items/{id}";
  return "other";
}

const char* type_of(int status) {
  switch (status) {
    case 400: return "invalid_request";
    case 401: return "unauthorized";
    case 404: return "not_found";
    case 405: return "method_not_allowed";
    case 408: return "timeout";
    case 413: return "payload_too_large";
    case 414: return "uri_too_long";
    case 503: return "unavailable";
    case 504: return "timeout";
    default: return status >= 500 ? "internal" : "error";
  }
}

void send_json(httplib::Response& res, int status, const std::string& body) {
  res.status = status;
  res.set_content(body, "application/json");
}

void send_error(httplib::Response& res, int status, const std::string& type, const std::string& message) {
  send_json(res, status, encode_error(status, type, message));
}

// Equal-time comparison: the token must not leak through response timing.
bool same_secret(const std::string& a, const std::string& b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

// Ends the connection from remote addr:port after the response now being written. httplib 0.11
// keeps a connection open after a request it failed to read (its thread then waits keep_alive_s
// for the next one) and lets no handler close it; shutting the socket down (not closing it:
// httplib still owns the descriptor) makes that wait end at once. The descriptor is found by its
// peer address, unique among the live connections.
void shutdown_connection(const std::string& addr, int port) {
  DIR* dir = ::opendir("/proc/self/fd");
  if (dir == nullptr) return;
  while (const dirent* e = ::readdir(dir)) {
    const int fd = std::atoi(e->d_name);
    if (fd <= 2 || fd == ::dirfd(dir)) continue;
    sockaddr_storage peer{};
    socklen_t len = sizeof peer;
    if (::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &len) != 0) continue;
    char host[INET6_ADDRSTRLEN] = {};
    int peer_port = -1;
    if (peer.ss_family == AF_INET) {
      const auto* in = reinterpret_cast<const sockaddr_in*>(&peer);
      ::inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
      peer_port = ntohs(in->sin_port);
    } else if (peer.ss_family == AF_INET6) {
      const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&peer);
      ::inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
      peer_port = ntohs(in6->sin6_port);
    }
    if (peer_port == port && addr == host) {
      ::shutdown(fd, SHUT_RD);
      break;
    }
  }
  ::closedir(dir);
}

// httplib::Server with its listening socket's backlog raised: httplib 0.11 listens with a backlog
// of 5, so a burst of new connections (64 clients connecting at once) overflows the accept queue
// and the kernel drops handshakes, which clients see as 1 s stalls and broken connections.
class Listener : public httplib::Server {
 public:
  void raise_backlog() { ::listen(svr_sock_, SOMAXCONN); }  // listen() again only resizes the queue
};

}  // namespace

struct HttpServer::Impl {
  RecommenderService& service;
  ServeOptions options;
  std::string token;
  ServeMetrics metrics;
  RequestLimits limits;
  MicroBatcher batcher;
  // LSVCR's /v1/comments: one forward per batch of comment queries (null for other models: an LSVCR
  // server reloads LSVCR checkpoints only, and no other server ever serves one).
  std::unique_ptr<MicroBatcher> comment_batcher;
  Listener http;
  std::mutex stop_mutex;
  bool stopped = false;

  Impl(RecommenderService& s, const ServeOptions& o, std::string t)
      : service(s),
        options(o),
        token(std::move(t)),
        limits{o.max_k, o.max_history, o.max_list, o.max_batch_requests},
        batcher([this](const std::vector<const Query*>& q) { return service.rank(q); },
                BatcherOptions{o.max_batch, o.max_wait_us, o.workers, o.queue_limit},
                [this](int64_t size) { metrics.observe_batch(size); }) {
    const auto snap = service.snapshot();
    if (snap->lsvcr)
      comment_batcher = std::make_unique<MicroBatcher>(
          [this](const std::vector<const Query*>& q) { return service.rank_comments(q); },
          BatcherOptions{o.max_batch, o.max_wait_us, o.workers, o.queue_limit},
          [this](int64_t size) { metrics.observe_batch(size); });
    metrics.set_model(snap->version, snap->checkpoint);
    configure();
    routes();
  }

  Clock::time_point deadline() const { return Clock::now() + std::chrono::milliseconds(options.timeout_ms); }

  void configure() {
    const size_t threads = static_cast<size_t>(options.threads);
    http.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
    http.set_payload_max_length(static_cast<size_t>(options.max_body_bytes));
    http.set_read_timeout(options.read_timeout_ms / 1000, (options.read_timeout_ms % 1000) * 1000);
    http.set_write_timeout(options.write_timeout_ms / 1000, (options.write_timeout_ms % 1000) * 1000);
    http.set_keep_alive_timeout(options.keep_alive_s);
    http.set_keep_alive_max_count(100000);
    http.set_tcp_nodelay(true);
    http.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
      t_request_start = Clock::now();
      t_request_timed = true;
      if (!authorized(req)) {
        res.set_header("WWW-Authenticate", "Bearer");
        send_error(res, 401, "unauthorized", "missing or wrong bearer token (Authorization: Bearer <token>)");
        return httplib::Server::HandlerResponse::Handled;
      }
      return httplib::Server::HandlerResponse::Unhandled;
    });
    // Errors httplib answers itself (413, 404 of unknown routes, 400 of broken HTTP) get our JSON body.
    http.set_error_handler(httplib::Server::HandlerWithResponse([](const httplib::Request& req, httplib::Response& res) {
      if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
      // httplib failed to read the request (a stalled or broken client): drop the connection rather
      // than keep a thread waiting on it for keep_alive_s.
      if (res.status == 400 || res.status == 408 || res.status == 413) {
        res.set_header("Connection", "close");
        t_drop_connection = true;  // after the response is written (the logger)
      }
      std::string message = "HTTP " + std::to_string(res.status);
      if (res.status == 400) message = "the request could not be read (malformed HTTP, or the client stalled past the read timeout)";
      if (res.status == 404) message = "no route " + req.method + " " + req.path;
      if (res.status == 413) message = "body: larger than the server's limit";
      send_error(res, res.status, type_of(res.status), message);
      return httplib::Server::HandlerResponse::Handled;
    }));
    http.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
      std::string message = "internal error";
      try {
        if (ep) std::rethrow_exception(ep);
      } catch (const std::exception& e) {
        message = e.what();
      } catch (...) {
      }
      send_error(res, 500, "internal", message);
    });
    http.set_logger([this](const httplib::Request& req, const httplib::Response& res) {
      const double seconds = t_request_timed ? std::chrono::duration<double>(Clock::now() - t_request_start).count() : 0.0;
      t_request_timed = false;
      if (t_drop_connection) {
        t_drop_connection = false;
        shutdown_connection(req.remote_addr, req.remote_port);
      }
      metrics.observe_request(route_of(req.path), res.status, seconds);
      if (options.log_requests) log_info("%s %s %d %.2fms", req.method.c_str(), req.path.c_str(), res.status, seconds * 1000);
    });
  }

  bool authorized(const httplib::Request& req) const {
    if (token.empty()) return true;
    if (options.auth == "admin" && req.path.rfind("/admin/", 0) != 0) return true;
    const std::string header = req.get_header_value("Authorization");
    const std::string prefix = "Bearer ";
    return header.rfind(prefix, 0) == 0 && same_secret(header.substr(prefix.size()), token);
  }

  // Runs a handler body, turning its exceptions into the one error shape.
  template <typename F>
  void guarded(httplib::Response& res, F&& body) {
    try {
      body();
    } catch (const ApiError& e) {
      send_error(res, e.status(), e.type(), e.what());
    } catch (const RequestError& e) {
      send_error(res, 400, "invalid_request", e.what());
    } catch (const std::exception& e) {
      log_error("serve: %s", e.what());
      send_error(res, 500, "internal", e.what());
    }
  }

  std::vector<RecommendResult> answer(const std::vector<RecommendRequest>& requests) {
    std::vector<Query> queries;
    queries.reserve(requests.size());
    for (const RecommendRequest& r : requests) queries.push_back(service.resolve(r));
    std::vector<RecommendResult> out;
    for (const Ranked& r : batcher.run(std::move(queries), deadline())) out.push_back(service.render(r));
    return out;
  }

  void routes() {
    http.Post("/v1/recommend", [this](const httplib::Request& req, httplib::Response& res) {
      guarded(res, [&] { send_json(res, 200, encode_result(answer({parse_recommend_request(req.body, limits)}).front())); });
    });
    http.Post("/v1/recommend/batch", [this](const httplib::Request& req, httplib::Response& res) {
      guarded(res, [&] { send_json(res, 200, encode_batch_result(answer(parse_batch_request(req.body, limits)))); });
    });
    http.Post("/v1/comments", [this](const httplib::Request& req, httplib::Response& res) {
      guarded(res, [&] {
        std::vector<Query> query;  // resolving refuses a model without comments (400) before the batcher
        query.push_back(service.resolve_comments(parse_comments_request(req.body, limits)));
        const std::vector<Ranked> ranked = comment_batcher->run(std::move(query), deadline());
        send_json(res, 200, encode_result(service.render_comments(ranked.front())));
      });
    });
    http.Get(R"(/v1/items/(.+))", [this](const httplib::Request& req, httplib::Response& res) {
      guarded(res, [&] { item(req.matches[1].str(), res); });
    });
    http.Get("/healthz", [this](const httplib::Request&, httplib::Response& res) { guarded(res, [&] { health(res); }); });
    http.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
      res.set_content(metrics.render(), "text/plain; version=0.0.4");
    });
    http.Post("/admin/reload", [this](const httplib::Request& req, httplib::Response& res) {
      guarded(res, [&] { reload_route(req, res); });
    });
    for (const char* post_only : {"/v1/recommend", "/v1/recommend/batch", "/v1/comments", "/admin/reload"})
      http.Get(post_only, [](const httplib::Request& req, httplib::Response& res) {
        res.set_header("Allow", "POST");
        send_error(res, 405, "method_not_allowed", req.path + ": use POST");
      });
  }

  void item(const std::string& raw, httplib::Response& res) {
    const data::ItemCatalog& catalog = service.data().catalog;
    const int64_t id = catalog.find(raw);
    if (id < 0) throw not_found("id: unknown item id '" + raw + "'");
    std::vector<std::pair<std::string, std::string>> fields = {{"id", raw}};
    for (const std::string& column : catalog.columns()) fields.emplace_back(column, catalog.field(id, column));
    send_json(res, 200, encode_object(fields, {{"index", std::to_string(id)}}));
  }

  void health(httplib::Response& res) {
    const auto snap = service.snapshot();
    send_json(res, 200,
              encode_object({{"status", "ok"}, {"checkpoint", snap->checkpoint}, {"index", snap->index_description}},
                            {{"model_version", std::to_string(snap->version)},
                             {"items", std::to_string(snap->context.num_items)},
                             {"users", std::to_string(service.data().users.num_users())},
                             {"index_recall", snap->index_recall >= 0 ? std::to_string(snap->index_recall) : "null"},
                             {"queued", std::to_string(batcher.queued())}}));
  }

  void reload_route(const httplib::Request& req, httplib::Response& res) {
    const std::string checkpoint = req.body.empty() ? "" : parse_reload_request(req.body);
    const ReloadReport r = reload(checkpoint);
    if (!r.ok) {
      send_error(res, 500, "reload_failed", "reload failed, version " + std::to_string(r.version) + " (" + r.checkpoint +
                                                ") keeps serving: " + r.error);
      return;
    }
    send_json(res, 200,
              encode_object({{"status", "reloaded"}, {"checkpoint", r.checkpoint}},
                            {{"model_version", std::to_string(r.version)}, {"seconds", std::to_string(r.seconds)}}));
  }

  ReloadReport reload(const std::string& checkpoint) {
    const ReloadReport r = service.reload(checkpoint);
    if (r.ok) {
      metrics.set_model(r.version, r.checkpoint);
      log_info("serve: reloaded %s as version %ld in %.2fs", r.checkpoint.c_str(), long(r.version), r.seconds);
    } else {
      metrics.count_failed_reload();
      log_error("serve: reload failed, version %ld keeps serving: %s", long(r.version), r.error.c_str());
    }
    return r;
  }
};

HttpServer::HttpServer(RecommenderService& service, const ServeOptions& options, std::string token)
    : impl_(std::make_unique<Impl>(service, options, std::move(token))) {}

HttpServer::~HttpServer() {
  stop();
}

int HttpServer::bind() {
  const std::string& host = impl_->options.host;
  const int port = static_cast<int>(impl_->options.port);
  const int bound = port == 0 ? impl_->http.bind_to_any_port(host) : (impl_->http.bind_to_port(host, port) ? port : -1);
  if (bound < 0) throw Error("serve: cannot bind " + host + ":" + std::to_string(port) + " (address in use, or not an address of this machine?)");
  impl_->http.raise_backlog();
  return bound;
}

void HttpServer::listen() {
  impl_->http.listen_after_bind();
  impl_->batcher.stop();  // the connections are done: finish what is queued
  if (impl_->comment_batcher) impl_->comment_batcher->stop();
}

void HttpServer::stop() {
  std::lock_guard<std::mutex> lock(impl_->stop_mutex);
  impl_->http.stop();
}

ReloadReport HttpServer::reload(const std::string& checkpoint) { return impl_->reload(checkpoint); }

const ServeMetrics& HttpServer::metrics() const { return impl_->metrics; }

}  // namespace seqrec::serve
