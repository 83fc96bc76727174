// The micro-batching queue: concurrent queries meet in one call, deadlines and the queue limit.
#include "seqrec/serve/micro_batcher.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "seqrec/serve/request.h"
#include "support.h"

namespace {

using namespace seqrec::serve;
using Clock = std::chrono::steady_clock;

// Ranks a query as its k (so results can be checked), optionally slowly.
MicroBatcher::RankFn echo(std::atomic<int>* calls, std::chrono::milliseconds delay = {}) {
  return [calls, delay](const std::vector<const Query*>& qs) {
    ++*calls;
    std::this_thread::sleep_for(delay);
    std::vector<Ranked> out;
    for (const Query* q : qs) out.push_back(Ranked{{q->k}, {0.f}, 1});
    return out;
  };
}

Query query(int64_t k) {
  Query q;
  q.k = k;
  return q;
}

TEST(MicroBatcherTest, ConcurrentQueriesShareForwardsAndGetTheirOwnAnswers) {
  std::atomic<int> calls{0};
  std::vector<int64_t> sizes;
  std::mutex m;
  MicroBatcher batcher(echo(&calls, std::chrono::milliseconds(5)), BatcherOptions{8, 20000, 1, 100}, [&](int64_t s) {
    std::lock_guard<std::mutex> lock(m);
    sizes.push_back(s);
  });
  std::vector<std::thread> clients;
  std::atomic<int> wrong{0};
  for (int c = 0; c < 16; ++c)
    clients.emplace_back([&, c] {
      const auto r = batcher.run({query(c), query(100 + c)}, Clock::now() + std::chrono::seconds(10));
      if (r.size() != 2 || r[0].ids[0] != c || r[1].ids[0] != 100 + c) ++wrong;
    });
  for (auto& t : clients) t.join();
  EXPECT_EQ(wrong, 0);
  int64_t total = 0, largest = 0;
  for (int64_t s : sizes) {
    total += s;
    largest = std::max(largest, s);
  }
  EXPECT_EQ(total, 32);
  EXPECT_LE(largest, 8);
  EXPECT_GT(largest, 1) << "no two queries met in one call";
  EXPECT_LT(calls.load(), 32);
}

TEST(MicroBatcherTest, DeadlineGives504AndQueueLimit503) {
  std::atomic<int> calls{0};
  MicroBatcher batcher(echo(&calls, std::chrono::milliseconds(300)), BatcherOptions{1, 0, 1, 3});
  std::thread slow([&] { batcher.run({query(1)}, Clock::now() + std::chrono::seconds(10)); });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // the worker is busy with it
  try {
    batcher.run({query(2)}, Clock::now() + std::chrono::milliseconds(20));
    ADD_FAILURE() << "expected a timeout";
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status(), 504);
  }
  try {
    batcher.run({query(3), query(4), query(5), query(6)}, Clock::now() + std::chrono::seconds(1));
    ADD_FAILURE() << "expected the queue limit";
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status(), 503);
    EXPECT_NE(std::string(e.what()).find("limit 3"), std::string::npos) << e.what();
  }
  slow.join();
  EXPECT_EQ(batcher.run({query(9)}, Clock::now() + std::chrono::seconds(5)).front().ids[0], 9);
  EXPECT_EQ(calls.load(), 2) << "the timed-out query was dropped, not ranked";
  batcher.stop();
  try {
    batcher.run({query(1)}, Clock::now() + std::chrono::seconds(1));
    ADD_FAILURE() << "expected 503 after stop";
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status(), 503);
  }
}

TEST(MicroBatcherTest, ErrorsOfTheRankingFunctionReachTheCallers) {
  MicroBatcher batcher([](const std::vector<const Query*>&) -> std::vector<Ranked> { throw std::runtime_error("model broke"); },
                       BatcherOptions{4, 0, 2, 10});
  ASSERT_THROWS_WITH(batcher.run({query(1)}, Clock::now() + std::chrono::seconds(5)), "model broke");
}

}  // namespace
