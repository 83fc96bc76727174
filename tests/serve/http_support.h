// HTTP fixtures of the serving tests: a service's server in-process on an ephemeral loopback port,
// `seqrec serve` as a child process, and `seqrec recommend`'s output parsed. Includers compile with
// the cpp-httplib flags.
#pragma once

#include <fcntl.h>
#include <httplib.h>
#include <nlohmann/json.hpp>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "cli/cli_support.h"
#include "seqrec/serve/http_server.h"
#include "serve/serve_support.h"

namespace seqrec::testing::serve {

/// A service and its HTTP server listening on a background thread.
class RunningServer {
 public:
  explicit RunningServer(seqrec::serve::ServeOptions options, const std::string& token = "",
                         const std::string& checkpoint = ServeData::get().sasrec())
      : RunningServer(make_service(checkpoint), std::move(options), token) {}
  /// Serves `service`.
  RunningServer(std::unique_ptr<seqrec::serve::RecommenderService> service, seqrec::serve::ServeOptions options,
                const std::string& token = "")
      : service_(std::move(service)) {
    options.host = "127.0.0.1";
    options.port = 0;
    options.log_requests = false;
    server_ = std::make_unique<seqrec::serve::HttpServer>(*service_, options, token);
    port_ = server_->bind();
    thread_ = std::thread([this] { server_->listen(); });
    httplib::Client c("127.0.0.1", port_);
    for (int i = 0; i < 200; ++i) {  // until it answers
      if (auto r = c.Get("/healthz"); r && (r->status == 200 || r->status == 401)) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
  ~RunningServer() { stop(); }
  void stop() {
    if (!thread_.joinable()) return;
    server_->stop();
    thread_.join();
  }
  int port() const { return port_; }
  httplib::Client client() const {
    httplib::Client c("127.0.0.1", port_);
    c.set_read_timeout(30, 0);
    return c;
  }
  seqrec::serve::RecommenderService& service() { return *service_; }
  seqrec::serve::HttpServer& server() { return *server_; }

 private:
  std::unique_ptr<seqrec::serve::RecommenderService> service_;
  std::unique_ptr<seqrec::serve::HttpServer> server_;
  int port_ = 0;
  std::thread thread_;
};

/// POSTs a JSON body; the parsed answer (null when none came) and its status (-1 when none came).
inline std::pair<int, nlohmann::json> post_json(int port, const std::string& path, const nlohmann::json& body) {
  httplib::Client c("127.0.0.1", port);
  c.set_read_timeout(30, 0);
  auto r = c.Post(path.c_str(), body.dump(), "application/json");
  if (!r) return {-1, nlohmann::json()};
  return {r->status, nlohmann::json::parse(r->body, nullptr, false)};
}

/// (item id, score) rows of `seqrec recommend ARGS`'s output (ARGS with --checkpoint etc.).
inline std::vector<std::pair<std::string, double>> recommend_rows(const std::string& args) {
  TempDir tmp;
  const auto r = cli::run_seqrec("recommend " + args, tmp);
  EXPECT_EQ(r.code, 0) << r.err;
  std::vector<std::pair<std::string, double>> out;
  const auto lines = cli::lines_of(r.out);
  for (size_t i = 1; i < lines.size(); ++i) {
    const auto f = cli::split_tabs(lines[i]);
    out.emplace_back(f.at(1), std::stod(f.at(2)));
  }
  return out;
}

/// An answer's items equal recommend_rows (the CLI prints scores with 4 decimals).
inline void expect_items_equal(const nlohmann::json& body, const std::vector<std::pair<std::string, double>>& rows,
                               const std::string& what) {
  ASSERT_TRUE(body.contains("items")) << what << ": " << body.dump();
  ASSERT_EQ(body.at("items").size(), rows.size()) << what << ": " << body.dump();
  for (size_t i = 0; i < rows.size(); ++i) {
    EXPECT_EQ(body["items"][i].at("id").get<std::string>(), rows[i].first) << what << " rank " << i;
    EXPECT_NEAR(body["items"][i].at("score").get<double>(), rows[i].second, 6e-5) << what << " rank " << i;
  }
}

/// `seqrec serve ARGS --port 0` as a child process; the port read from its first stdout line.
class ServeProcess {
 public:
  /// Starts the binary with `args` (each one argument); stderr goes to `err_file`.
  ServeProcess(const std::vector<std::string>& args, const std::string& err_file) : err_file_(err_file) {
    int out[2];
    if (::pipe(out) != 0) return;
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(out[1], 1);
      const int e = ::open(err_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      ::dup2(e, 2);
      ::setenv("OMP_NUM_THREADS", "1", 1);
      std::vector<std::string> all = {"seqrec", "serve"};
      all.insert(all.end(), args.begin(), args.end());
      for (const char* a : {"--port", "0", "--threads", "2"}) all.emplace_back(a);
      std::vector<char*> argv;
      for (auto& a : all) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(SEQREC_BINARY, argv.data());
      ::_exit(127);
    }
    ::close(out[1]);
    std::string line;
    pollfd p{out[0], POLLIN, 0};
    char ch = 0;
    while (line.find('\n') == std::string::npos && ::poll(&p, 1, 60000) > 0 && ::read(out[0], &ch, 1) == 1) line += ch;
    ::close(out[0]);
    const nlohmann::json started = nlohmann::json::parse(line, nullptr, false);
    if (started.is_object() && started.contains("port")) port_ = started.at("port").get<int>();
  }
  /// SIGTERM and wait.
  ~ServeProcess() { stop(); }
  /// SIGTERM; the exit status (-1 if it was not running).
  int stop() {
    if (pid_ <= 0) return -1;
    ::kill(pid_, SIGTERM);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }
  /// 0 when the server did not start.
  int port() const { return port_; }
  std::string err() const { return cli::slurp(err_file_); }

 private:
  std::string err_file_;
  pid_t pid_ = -1;
  int port_ = 0;
};

}  // namespace seqrec::testing::serve
