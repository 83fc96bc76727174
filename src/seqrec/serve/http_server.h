// The HTTP layer of seqrec serve (cpp-httplib behind a pimpl; the only file that includes it):
// routes, limits, auth, metrics, request log, reload and graceful stop. All recommending is the
// RecommenderService's, all JSON the codec's.
//
//   POST /v1/recommend         one request           GET /healthz    status, model, index
//   POST /v1/recommend/batch   {"requests": [...]}   GET /metrics    Prometheus text
//   GET  /v1/items/{id}        an item's fields      POST /admin/reload  {"checkpoint": path} (optional)
//   POST /v1/comments          LSVCR: a video's comments ranked for a user
#pragma once

#include <memory>
#include <string>

#include "seqrec/serve/recommender_service.h"
#include "seqrec/serve/serve_options.h"

namespace seqrec::serve {

class ServeMetrics;

/// An HTTP server over a RecommenderService (which must outlive it).
class HttpServer {
 public:
  /// `token`: when not empty, requests must carry "Authorization: Bearer <token>" (every route, or
  /// only /admin/* with options.auth = admin).
  HttpServer(RecommenderService& service, const ServeOptions& options, std::string token = "");
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  /// Binds options.host:options.port (0: an ephemeral port); returns the bound port. Throws Error
  /// when the address cannot be bound.
  int bind();
  /// Serves until stop() (blocking); bind() first.
  void listen();
  /// Stops accepting connections; in-flight requests finish and listen() returns. Safe from any
  /// thread, repeatable.
  void stop();
  /// Loads a new checkpoint ("" = the same file again) and swaps it in (what POST /admin/reload
  /// and SIGHUP do); the metrics record the result.
  ReloadReport reload(const std::string& checkpoint = "");
  const ServeMetrics& metrics() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace seqrec::serve
