// Helpers for tests that run ranks of a process group as threads of the test process.
#pragma once

#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "seqrec/dist/process_group.h"

namespace seqrec::testing {

/// `world` Gloo groups inside this process, or none and the reason the test must skip (this build
/// has no Gloo, or the host has no loopback device for it):
///   std::string skip; auto groups = local_groups(2, &skip); if (groups.empty()) GTEST_SKIP() << skip;
inline std::vector<std::shared_ptr<dist::ProcessGroup>> local_groups(int64_t world, std::string* skip) {
  if (!dist::have_gloo()) {
    *skip = "this build has no Gloo (libgloo-dev missing at configure time)";
    return {};
  }
  try {
    return dist::make_local_groups(world);
  } catch (const std::exception& e) {
    *skip = std::string("Gloo cannot create a loopback device on this host: ") + e.what();
    return {};
  }
}

/// Runs body(rank) on one thread per rank; rethrows the first failure.
inline void on_each_rank(int64_t world, const std::function<void(int64_t)>& body) {
  std::vector<std::exception_ptr> errors(static_cast<size_t>(world));
  std::vector<std::thread> threads;
  for (int64_t r = 0; r < world; ++r)
    threads.emplace_back([&, r] {
      try {
        body(r);
      } catch (...) {
        errors[static_cast<size_t>(r)] = std::current_exception();
      }
    });
  for (auto& t : threads) t.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

}  // namespace seqrec::testing
