#include <outgrow/queue/bounded_queue.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include "catch.hpp"

using namespace std::chrono_literals;
using outgrow::bounded_queue;

TEST_CASE("bounded_queue is FIFO and holds exactly its capacity", "[bounded_queue]") {
  bounded_queue<int> q({.capacity = 3});  // not a power of two
  CHECK(q.capacity() == 3);
  CHECK(q.empty());
  CHECK(q.try_push(1));
  CHECK(q.try_push(2));
  CHECK(q.try_push(3));
  CHECK_FALSE(q.try_push(4));
  CHECK(q.size() == 3);
  CHECK(q.try_pop() == 1);
  CHECK(q.try_push(4));
  CHECK(q.try_pop() == 2);
  CHECK(q.try_pop() == 3);
  CHECK(q.try_pop() == 4);
  CHECK_FALSE(q.try_pop().has_value());
  // Many laps around the ring.
  for (int lap = 0; lap < 1000; ++lap) {
    REQUIRE(q.try_push(lap));
    REQUIRE(q.try_push(lap + 1));
    REQUIRE(q.try_pop() == lap);
    REQUIRE(q.try_pop() == lap + 1);
  }
}

TEST_CASE("bounded_queue moves move-only values and destroys what is left",
          "[bounded_queue]") {
  auto alive = std::make_shared<int>(0);
  struct tracked {
    std::shared_ptr<int> counter;
    std::unique_ptr<std::string> payload;
    explicit tracked(std::shared_ptr<int> c, std::string s)
        : counter(std::move(c)), payload(std::make_unique<std::string>(std::move(s))) {
      ++*counter;
    }
    tracked(tracked&& o) noexcept : counter(o.counter), payload(std::move(o.payload)) {
      ++*counter;
    }
    tracked& operator=(tracked&&) = delete;
    ~tracked() { --*counter; }
  };
  {
    bounded_queue<tracked> q({.capacity = 4});
    tracked a(alive, "a");
    CHECK(q.try_push(std::move(a)));
    CHECK(q.try_push(tracked(alive, "b")));
    CHECK(q.try_push(tracked(alive, "c")));
    auto first = q.try_pop();
    REQUIRE(first);
    CHECK(*first->payload == "a");
    CHECK(*alive == 4);  // a (moved-from), first, b and c in the queue
  }
  CHECK(*alive == 0);  // the queue destroyed b and c
}

TEST_CASE("a full try_push leaves the value untouched", "[bounded_queue]") {
  bounded_queue<std::unique_ptr<int>> q({.capacity = 2});
  CHECK(q.try_push(std::make_unique<int>(1)));
  CHECK(q.try_push(std::make_unique<int>(1)));
  auto second = std::make_unique<int>(2);
  CHECK_FALSE(q.try_push(std::move(second)));
  REQUIRE(second != nullptr);
  CHECK(*second == 2);
}

TEST_CASE("blocking pop wakes on push and on close", "[bounded_queue]") {
  // Catch2 assertions are not thread-safe: threads record, the test thread checks.
  bounded_queue<int> q({.capacity = 8});
  std::optional<int> first, after_close = 0;
  std::thread consumer([&] {
    first = q.pop(std::stop_token{});
    after_close = q.pop(std::stop_token{});  // woken by close()
  });
  CHECK(q.push(42, 1s));
  while (!q.empty()) std::this_thread::yield();
  q.close();
  consumer.join();
  CHECK(first == 42);
  CHECK_FALSE(after_close.has_value());
  CHECK_FALSE(q.try_push(1));  // closed
}

TEST_CASE("close lets consumers drain what was queued", "[bounded_queue]") {
  bounded_queue<int> q({.capacity = 8});
  CHECK(q.try_push(1));
  CHECK(q.try_push(2));
  q.close();
  CHECK(q.pop(std::stop_token{}) == 1);
  CHECK(q.pop(10ms) == 2);
  CHECK_FALSE(q.pop(std::stop_token{}).has_value());
}

TEST_CASE("a stop request wakes a waiting pop and push", "[bounded_queue]") {
  bounded_queue<int> q({.capacity = 2});
  std::stop_source stop;
  std::optional<int> popped = 0;
  std::thread consumer([&] { popped = q.pop(stop.get_token()); });
  stop.request_stop();
  consumer.join();
  CHECK_FALSE(popped.has_value());

  CHECK(q.try_push(1));
  CHECK(q.try_push(1));  // full now
  std::stop_source stop_push;
  bool pushed = true;
  std::thread producer([&] { pushed = q.push(2, stop_push.get_token()); });
  stop_push.request_stop();
  producer.join();
  CHECK_FALSE(pushed);
}

TEST_CASE("timeouts give up with nothing changed", "[bounded_queue]") {
  bounded_queue<int> q({.capacity = 2});
  CHECK_FALSE(q.pop(2ms).has_value());
  CHECK(q.try_push(1));
  CHECK(q.try_push(1));
  CHECK_FALSE(q.push(2, 2ms));
  CHECK(q.size() == 2);
}

TEST_CASE("bad bounded_queue configuration throws config_error",
          "[bounded_queue][errors]") {
  CHECK_THROWS_WITH(bounded_queue<int>({.capacity = 0}),
                    "bounded_queue: capacity must be in [2, 1073741824], got 0");
  CHECK_THROWS_AS(bounded_queue<int>({.capacity = 1}), outgrow::config_error);
}

TEST_CASE("4 producers and 4 consumers deliver every item once in producer order",
          "[bounded_queue][stress]") {
  constexpr std::uint32_t producers = 4, consumers = 4, per_producer = 50'000;
  bounded_queue<std::uint64_t> q({.capacity = 256});
  std::vector<std::atomic<std::uint8_t>> seen(producers * per_producer);
  std::atomic<std::uint32_t> out_of_order{0}, duplicates{0};
  std::atomic<std::uint32_t> producers_done{0}, failed_pushes{0};
  std::vector<std::thread> threads;
  for (std::uint32_t p = 0; p < producers; ++p) {
    threads.emplace_back([&, p] {
      for (std::uint32_t i = 0; i < per_producer; ++i) {
        const std::uint64_t item = (std::uint64_t{p} << 32) | i;
        if (i % 2 == 0) {
          while (!q.try_push(std::uint64_t{item})) std::this_thread::yield();
        } else {
          if (!q.push(std::uint64_t{item}, std::stop_token{})) failed_pushes.fetch_add(1);
        }
      }
      if (producers_done.fetch_add(1) + 1 == producers) q.close();
    });
  }
  for (std::uint32_t c = 0; c < consumers; ++c) {
    threads.emplace_back([&] {
      std::vector<std::int64_t> last(producers, -1);  // per producer, in this consumer
      while (auto item = q.pop(std::stop_token{})) {
        const auto p = static_cast<std::uint32_t>(*item >> 32);
        const auto i = static_cast<std::int64_t>(*item & 0xffffffffU);
        if (i <= last[p]) out_of_order.fetch_add(1);
        last[p] = i;
        if (seen[p * per_producer + static_cast<std::uint32_t>(i)].fetch_add(1) != 0) {
          duplicates.fetch_add(1);
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  CHECK(failed_pushes.load() == 0);
  CHECK(out_of_order.load() == 0);
  CHECK(duplicates.load() == 0);
  std::uint32_t missing = 0;
  for (auto& s : seen) {
    if (s.load() == 0) ++missing;
  }
  CHECK(missing == 0);
  CHECK(q.empty());
}

TEST_CASE("bounded_queue try_pop_batch takes up to max oldest first across the wrap",
          "[bounded_queue]") {
  bounded_queue<std::unique_ptr<int>> q({.capacity = 5});
  std::vector<int> got;
  auto sink = [&](std::unique_ptr<int>&& p) noexcept { got.push_back(*p); };
  CHECK(q.try_pop_batch(4, sink) == 0);  // empty
  int next = 0;
  int expected = 0;
  // Rounds of 4 pushes and batches of 3 then the rest: the ring wraps many times.
  for (int round = 0; round < 10; ++round) {
    for (int i = 0; i < 4; ++i) REQUIRE(q.try_push(std::make_unique<int>(next++)));
    CHECK(q.try_pop_batch(0, sink) == 0);
    CHECK(q.try_pop_batch(3, sink) == 3);
    CHECK(q.size() == 1);
    CHECK(q.try_pop_batch(100, sink) == 1);  // at most what is there
    CHECK(q.empty());
    REQUIRE(got.size() == static_cast<std::size_t>(next));
    for (; expected < next; ++expected)
      CHECK(got[static_cast<std::size_t>(expected)] == expected);
  }
  // A full queue empties in one batch, and the room comes back.
  for (int i = 0; i < 5; ++i) REQUIRE(q.try_push(std::make_unique<int>(next++)));
  CHECK_FALSE(q.try_push(std::make_unique<int>(-1)));
  CHECK(q.try_pop_batch(5, sink) == 5);
  CHECK(q.try_push(std::make_unique<int>(next++)));
  CHECK(q.try_pop_batch(5, sink) == 1);
  for (std::size_t i = 0; i < got.size(); ++i) CHECK(got[i] == static_cast<int>(i));
}

TEST_CASE("bounded_queue try_pop_batch under concurrent producers and batch consumers",
          "[bounded_queue]") {
  constexpr int producers = 2;
  constexpr int per_producer = 50'000;
  bounded_queue<int> q({.capacity = 64});
  std::vector<std::atomic<int>> seen(producers * per_producer);
  std::atomic<int> taken{0};
  std::atomic<bool> ordered{true};
  std::vector<std::thread> threads;
  for (int p = 0; p < producers; ++p) {
    threads.emplace_back([&, p] {
      for (int i = 0; i < per_producer; ++i) {
        int v = p * per_producer + i;
        while (!q.try_push(std::move(v))) std::this_thread::yield();
      }
    });
  }
  for (int c = 0; c < 2; ++c) {
    threads.emplace_back([&] {
      std::vector<int> last(producers, -1);  // FIFO per producer within one consumer
      while (taken.load() < producers * per_producer) {
        const std::size_t n = q.try_pop_batch(8, [&](int&& v) noexcept {
          seen[static_cast<std::size_t>(v)].fetch_add(1);
          const int p = v / per_producer;
          if (v <= last[static_cast<std::size_t>(p)]) ordered.store(false);
          last[static_cast<std::size_t>(p)] = v;
        });
        if (n == 0) std::this_thread::yield();
        taken.fetch_add(static_cast<int>(n));
      }
    });
  }
  for (auto& t : threads) t.join();
  CHECK(ordered.load());
  std::size_t not_once = 0;
  for (auto& s : seen) not_once += s.load() != 1 ? 1U : 0U;
  CHECK(not_once == 0);
}
