// Closed-loop HTTP load generator for `seqrec serve`: C connections, each sending the next
// POST /v1/recommend as soon as the last one is answered, for S seconds; bodies are histories of
// the last H items of real users of a prepared store, or the lines of --bodies FILE (one JSON body
// per line) sent to --path (default /v1/recommend). Optionally reloads the model mid-run, reads
// the server's RSS before and after, and samples it every --rss-every seconds (start, end, max and
// the samples in the output). Prints one JSON line.
//
//   bench_serve --port P (--data DIR [--history 200] [--k 10] | --bodies FILE [--path /v1/comments])
//               [--connections 8] [--seconds 10]
//               [--reload-at SECONDS --reload-checkpoint PATH] [--server-pid PID [--rss-every SECONDS]]
#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "seqrec/data/interaction_store.h"
#include "seqrec/data/item_catalog.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Args {
  int port = 8080;
  std::string data;
  std::string bodies;            // a file of JSON bodies, one per line (instead of --data)
  std::string path = "/v1/recommend";
  int connections = 8;
  double seconds = 10;
  int64_t history = 200;
  int64_t k = 10;
  double reload_at = -1;
  std::string reload_checkpoint;
  int server_pid = 0;
  double rss_every = 0;  // seconds between RSS samples (0 = before and after only)
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string key = argv[i], value = argv[i + 1];
    if (key == "--port") a.port = std::stoi(value);
    else if (key == "--data") a.data = value;
    else if (key == "--bodies") a.bodies = value;
    else if (key == "--path") a.path = value;
    else if (key == "--connections") a.connections = std::stoi(value);
    else if (key == "--seconds") a.seconds = std::stod(value);
    else if (key == "--history") a.history = std::stoll(value);
    else if (key == "--k") a.k = std::stoll(value);
    else if (key == "--reload-at") a.reload_at = std::stod(value);
    else if (key == "--reload-checkpoint") a.reload_checkpoint = value;
    else if (key == "--server-pid") a.server_pid = std::stoi(value);
    else if (key == "--rss-every") a.rss_every = std::stod(value);
    else throw std::runtime_error("unknown option " + key);
  }
  if (a.data.empty() == a.bodies.empty()) throw std::runtime_error("give one of --data DIR or --bodies FILE");
  if (a.rss_every > 0 && a.server_pid <= 0) throw std::runtime_error("--rss-every needs --server-pid");
  return a;
}

int64_t rss_kb(int pid) {
  if (pid <= 0) return -1;
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::stoll(line.substr(6));
  return -1;
}

// Bodies {"history": [last H raw ids], "k": K} of every user with at least H events.
std::vector<std::string> make_bodies(const Args& a) {
  if (!a.bodies.empty()) {
    std::ifstream in(a.bodies);
    if (!in) throw std::runtime_error("cannot open " + a.bodies);
    std::vector<std::string> out;
    for (std::string line; std::getline(in, line);)
      if (!line.empty()) out.push_back(line);
    if (out.empty()) throw std::runtime_error(a.bodies + ": no bodies");
    return out;
  }
  const auto catalog = seqrec::data::ItemCatalog::load(a.data);
  const auto store = seqrec::data::InteractionStore::open(a.data + "/interactions.bin");
  std::vector<std::string> out;
  for (int64_t u = 0; u < store.num_users(); ++u) {
    const auto items = store.items(u);
    if (items.size() < a.history) continue;
    nlohmann::json ids = nlohmann::json::array();
    for (int64_t i = items.size() - a.history; i < items.size(); ++i) ids.push_back(catalog.raw_id(items[i]));
    out.push_back(nlohmann::json{{"history", ids}, {"k", a.k}}.dump());
  }
  if (out.empty()) throw std::runtime_error("no user has " + std::to_string(a.history) + " events");
  return out;
}

double percentile(std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(p * (v.size() - 1) + 0.5));
  std::nth_element(v.begin(), v.begin() + i, v.end());
  return v[i];
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Args a = parse(argc, argv);
    const std::vector<std::string> bodies = make_bodies(a);
    const int64_t rss_before = rss_kb(a.server_pid);
    std::atomic<bool> stop{false};
    std::atomic<int64_t> errors{0};
    std::vector<std::vector<double>> latencies(a.connections);
    std::vector<std::thread> clients;
    const auto start = Clock::now();
    for (int c = 0; c < a.connections; ++c)
      clients.emplace_back([&, c] {
        httplib::Client cli("127.0.0.1", a.port);
        cli.set_keep_alive(true);
        cli.set_tcp_nodelay(true);  // headers and body go in two writes: Nagle would hold the second for the ACK
        cli.set_read_timeout(30, 0);
        size_t next = static_cast<size_t>(c) * 7919;
        while (!stop) {
          const std::string& body = bodies[next++ % bodies.size()];
          const auto t = Clock::now();
          auto r = cli.Post(a.path.c_str(), body, "application/json");
          const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t).count();
          if (!r || r->status != 200) {
            ++errors;
            if (errors <= 3) std::fprintf(stderr, "error: %s\n", r ? (std::to_string(r->status) + " " + r->body).c_str() : httplib::to_string(r.error()).c_str());
            continue;
          }
          latencies[c].push_back(ms);
        }
      });
    // RSS samples (seconds since start, kB), taken on their own thread so that a slow reload does
    // not delay them.
    std::vector<std::pair<double, int64_t>> rss_samples;
    std::thread sampler;
    if (a.rss_every > 0)
      sampler = std::thread([&] {
        for (int64_t n = 0;; ++n) {
          const auto at = start + std::chrono::duration<double>(a.rss_every * static_cast<double>(n));
          if (at > start + std::chrono::duration<double>(a.seconds)) break;
          std::this_thread::sleep_until(at);
          rss_samples.emplace_back(std::chrono::duration<double>(Clock::now() - start).count(), rss_kb(a.server_pid));
        }
      });
    std::string reload = "none";
    if (a.reload_at >= 0) {
      std::this_thread::sleep_for(std::chrono::duration<double>(a.reload_at));
      httplib::Client admin("127.0.0.1", a.port);
      admin.set_read_timeout(120, 0);
      auto r = admin.Post("/admin/reload", nlohmann::json{{"checkpoint", a.reload_checkpoint}}.dump(), "application/json");
      reload = r ? std::to_string(r->status) : "no response";
    }
    std::this_thread::sleep_until(start + std::chrono::duration<double>(a.seconds));
    stop = true;
    for (auto& t : clients) t.join();
    if (sampler.joinable()) sampler.join();
    const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
    std::vector<double> all;
    for (const auto& v : latencies) all.insert(all.end(), v.begin(), v.end());
    nlohmann::json out = {{"path", a.path}, {"connections", a.connections}, {"seconds", elapsed},  {"history", a.history},
                          {"requests", all.size()},       {"errors", errors.load()}, {"rps", all.size() / elapsed}};
    out["p50_ms"] = percentile(all, 0.50);
    out["p90_ms"] = percentile(all, 0.90);
    out["p99_ms"] = percentile(all, 0.99);
    out["max_ms"] = all.empty() ? 0 : *std::max_element(all.begin(), all.end());
    if (a.server_pid > 0) {
      out["rss_before_kb"] = rss_before;
      out["rss_after_kb"] = rss_kb(a.server_pid);
    }
    if (!rss_samples.empty()) {
      int64_t max_kb = 0;
      nlohmann::json samples = nlohmann::json::array();
      for (const auto& [t, kb] : rss_samples) {
        samples.push_back({std::round(t * 10) / 10, kb});
        max_kb = std::max(max_kb, kb);
      }
      out["rss_start_kb"] = rss_samples.front().second;
      out["rss_end_kb"] = rss_samples.back().second;
      out["rss_max_kb"] = max_kb;
      out["rss_samples"] = samples;
    }
    if (a.reload_at >= 0) out["reload_status"] = reload;
    std::printf("%s\n", out.dump().c_str());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_serve: %s\n", e.what());
    return 1;
  }
}
